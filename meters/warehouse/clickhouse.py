"""The production warehouse: a ClickHouse server over HTTP, through clickhouse-connect.

Same interface and same SQL as the embedded chDB backend. Where the connection comes from:

* inside an Airflow task, the Airflow Connection `clickhouse_default` (or the one named by
  `?airflow_conn_id=` in the URL), through apache-airflow-providers-clickhousedb's hook,
  when that Connection exists: host, port, login, password, schema (the database) and its
  extra (secure, verify, timeouts) come from Airflow, never from meterline's settings;
* everywhere else, the `clickhouse://user:pass@host:8123/db` URL (METERLINE_WAREHOUSE_URL).

Statements are stateless: every request names its database, and the per-batch staging
tables of ingest and rollup are ordinary tables with unique names, so no server session
is needed (`?session=1` opts into one, for a proxy that routes by session id).

Failures and retries. A statement is retried (up to `retries` times, backing off) when the
server certainly did not run it (connection refused, "too many simultaneous queries", a
locked session, a read-only replica), or when its outcome is unknown (a dropped
connection, a timeout, an HTTP 5xx from a proxy or a keeper hiccup) and running it twice
has the effect of running it once: reads, inserts carrying an insert-deduplication
token, `IF [NOT] EXISTS` DDL, `REPLACE`/`DROP PARTITION`. Anything else with an unknown
outcome is reported, not repeated: the caller's own step is idempotent and is retried as
a whole (an Airflow task retry, a re-run of the command). Every failure becomes a
`WarehouseError` that says where, what and why, and never carries a password.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import pyarrow as pa

from meters.sql_files import LEADING_COMMENTS
from meters.warehouse.base import (
    WarehouseError,
    WarehouseUnavailable,
    check_identifier,
    check_settings,
    check_token,
    table_rows,
)
from meters.warehouse.chdb_params import format_value

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_AIRFLOW_CONN_ID = "clickhouse_default"
DEFAULT_DATABASE = "meterline"

# ClickHouse error codes (src/Common/ErrorCodes.cpp) that this backend treats specially.
UNKNOWN_DATABASE = 81
# UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, AUTHENTICATION_FAILED
_AUTH_FAILED = {192, 193, 194, 516}
_READONLY = {164, 497}  # READONLY, ACCESS_DENIED
TIMEOUT_EXCEEDED = 159
# Refused before the statement ran: safe to send again whatever it is.
_NOT_EXECUTED = {
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    242,  # TABLE_IS_READ_ONLY (a replica lost its keeper session)
    252,  # TOO_MANY_PARTS (an insert refused before it wrote anything)
    373,  # SESSION_IS_LOCKED
}
# The server gave up part way: the statement may or may not have taken effect.
_OUTCOME_UNKNOWN = {
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    225,  # NO_ZOOKEEPER
    236,  # ABORTED
    319,  # UNKNOWN_STATUS_OF_INSERT
    999,  # KEEPER_EXCEPTION
}

# Statements whose repetition changes nothing after the first run.
_REPEATABLE = re.compile(
    r"""^\s*(?:
        SELECT | WITH | SHOW | DESCRIBE | DESC | EXISTS | EXPLAIN
      | CREATE \s+ (?:TABLE|DATABASE|VIEW|DICTIONARY) \s+ IF \s+ NOT \s+ EXISTS
      | DROP \s+ (?:TABLE|DATABASE|VIEW|DICTIONARY) \s+ IF \s+ EXISTS
      | TRUNCATE
      | DELETE \s+ FROM
      | ALTER \s+ TABLE \s+ [\w.`]+ (?:\s+ ON \s+ CLUSTER \s+ \S+)?
        \s+ (?:REPLACE|DROP) \s+ PARTITION
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)
_DEDUP_WINDOW = re.compile(r"non_replicated_deduplication_window\s*=\s*[1-9]")


# URL query keys -> ServerOptions fields.
_URL_OPTIONS = {
    "connect_timeout": "connect_timeout_s",
    "query_timeout": "query_timeout_s",
    "retries": "retries",
    "retry_backoff": "retry_backoff_s",
    "cluster": "cluster",
    "session": "session",
    "secure": "secure",
    "verify": "verify",
    "compress": "compress",
}


@dataclass(frozen=True)
class ServerOptions:
    """How to talk to the server. Each can be set in the URL's query string
    (`?query_timeout=600&retries=5&cluster=main`) or passed to `connect()`."""

    connect_timeout_s: float = 10.0
    """Seconds to establish a TCP/TLS connection."""
    query_timeout_s: float = 300.0
    """Seconds a statement may run: sent as max_execution_time, and the client waits this
    long plus a margin for the answer, so the server's own timeout error arrives first."""
    retries: int = 3
    """Extra attempts for a statement that may be retried (see the module docstring)."""
    retry_backoff_s: float = 0.5
    """First pause between attempts; doubles each time, at most 8 s."""
    cluster: str | None = None
    """Cluster mode: migrations use Replicated engines and `ON CLUSTER <cluster>`."""
    session: bool = False
    """Send a session id (one per connection) with every statement."""
    secure: bool = False
    verify: bool = True
    compress: bool = True

    @classmethod
    def from_query(
        cls, query: Mapping[str, str], base: ServerOptions | None = None
    ) -> ServerOptions:
        """Options from a URL's query string; unknown keys are an error (a typo would
        otherwise silently keep a default)."""
        values: dict[str, Any] = {}
        for key, raw in query.items():
            if key in ("database", "airflow_conn_id"):
                continue
            if key not in _URL_OPTIONS:
                raise WarehouseError(
                    f"unknown warehouse URL option {key!r}; known: "
                    + ", ".join(sorted([*_URL_OPTIONS, "database", "airflow_conn_id"]))
                )
            field_name = _URL_OPTIONS[key]
            try:
                values[field_name] = _coerce(field_name, raw)
            except ValueError:
                raise WarehouseError(f"warehouse URL option {key}={raw!r} is not valid") from None
        return replace(base or cls(), **values)

    def check(self) -> ServerOptions:
        if self.connect_timeout_s <= 0 or self.query_timeout_s <= 0:
            raise WarehouseError("warehouse timeouts must be positive")
        if self.retries < 0 or self.retry_backoff_s < 0:
            raise WarehouseError("warehouse retries and backoff must not be negative")
        if self.cluster is not None:
            try:
                check_identifier(self.cluster)
            except ValueError:
                raise WarehouseError(
                    f"warehouse URL option cluster={self.cluster!r} is not a cluster name"
                ) from None
        return self


def _coerce(field_name: str, raw: str) -> Any:
    if field_name in ("session", "secure", "verify", "compress"):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(raw)
    if field_name == "retries":
        return int(raw)
    if field_name == "cluster":
        return raw or None
    return float(raw)


@dataclass(frozen=True)
class Endpoint:
    """Where the server is, for messages and for opening clients. The password is kept
    out of repr() so that it cannot reach a log line or a traceback."""

    host: str
    port: int
    username: str
    password: str
    database: str
    secure: bool = False

    def __repr__(self) -> str:
        return f"Endpoint({self.label})"

    @property
    def label(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}"


def content_token(data: pa.Table) -> str:
    """An insert-deduplication token from a batch's content: the same rows in the same
    order (and schema) give the same token, so a retried insert is recognised."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


class ClickHouseWarehouse:
    """Warehouse backend on a ClickHouse server. All statements run in `database`."""

    # Other processes may use the same server at the same time.
    exclusive = False

    def __init__(
        self,
        open_client: Callable[[str | None], Any],
        *,
        endpoint: Endpoint,
        options: ServerOptions,
        source: str,
    ) -> None:
        self.database = check_identifier(endpoint.database)
        self.cluster = options.cluster
        self.options = options
        self.endpoint = endpoint
        self.source = source
        """Where the connection settings came from: 'url' or 'airflow:<conn_id>'."""
        self._open_client = open_client
        self._closed = False
        self._client = self._connect()

    # --- connecting ---------------------------------------------------------------------

    def _connect(self) -> Any:
        from clickhouse_connect.driver.exceptions import DatabaseError

        def open_database() -> Any:
            try:
                return self._open_client(self.database)
            except DatabaseError as exc:
                if getattr(exc, "code", None) != UNKNOWN_DATABASE:
                    raise
            # A first run: the database does not exist yet. Create it through a client on
            # the user's default database. (A read-only user whose database exists never
            # gets here: creating it would need a grant it does not have.)
            bootstrap = self._open_client(None)
            try:
                on_cluster = f" ON CLUSTER {self.cluster}" if self.cluster else ""
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {self.database}{on_cluster}")
            finally:
                bootstrap.close()
            return self._open_client(self.database)

        client = self._attempts("connect", None, open_database, repeatable=True)
        log.info(
            "warehouse: ClickHouse %s at %s (settings from %s)",
            getattr(client, "server_version", "?"),
            self.endpoint.label,
            self.source,
        )
        return client

    # --- the Warehouse interface ------------------------------------------------------

    def command(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        settings: Mapping[str, str | int] | None = None,
    ) -> None:
        checked = check_settings(settings)
        repeatable = "insert_deduplication_token" in checked or is_repeatable(sql)
        client = self._live()
        self._attempts(
            "statement",
            sql,
            lambda: client.command(sql, parameters=_bindable(params), settings=checked or None),
            repeatable=repeatable,
        )

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        client = self._live()
        result = self._attempts(
            "query",
            sql,
            lambda: client.query_arrow(sql, parameters=_bindable(params)),
            repeatable=True,
        )
        if not isinstance(result, pa.Table):
            raise WarehouseError(f"expected an Arrow table from ClickHouse, got {type(result)!r}")
        return result

    def query_rows(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        return table_rows(self.query_arrow(sql, params))

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str | None = None) -> None:
        """Insert in the Arrow format with an insert-deduplication token (the caller's, or
        one derived from the content). A table that does not deduplicate inserts (Memory
        staging tables, MergeTree without a deduplication window) is guarded by its row
        count instead: before a retry, rows already there mean the first attempt landed."""
        check_identifier(table)
        for name in data.column_names:
            check_identifier(name)
        client = self._live()
        deduplicates = self._deduplicates(table)
        rows_before = None if deduplicates else self._count(table)
        # The token only matters where the table deduplicates; hashing a batch's content
        # (0.25 s per 2M rows) is skipped where the row count guards the retry instead.
        settings: dict[str, str] = {}
        if dedup_token or deduplicates:
            token = check_token(dedup_token) if dedup_token else content_token(data)
            settings["insert_deduplication_token"] = token
        first = True

        def call() -> None:
            nonlocal first
            if not first and rows_before is not None:
                landed = self._count(table) - rows_before
                if landed == data.num_rows:
                    return  # an earlier attempt landed; only its answer was lost
                if landed:
                    raise _Partial(landed)
            first = False
            client.insert_arrow(table, data, settings=settings)

        self._attempts(
            "insert",
            f"INSERT INTO {table} FORMAT Arrow ({data.num_rows} rows)",
            call,
            repeatable=True,
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._client.close()
            except Exception:  # closing a pool that is already gone is not a failure
                log.debug("warehouse: closing the client failed", exc_info=True)

    def __enter__(self) -> ClickHouseWarehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ClickHouseWarehouse({self.endpoint.label}, source={self.source})"

    # --- helpers ------------------------------------------------------------------------

    def _live(self) -> Any:
        if self._closed:
            raise WarehouseError("warehouse connection is closed")
        return self._client

    def _deduplicates(self, table: str) -> bool:
        rows = self.query_rows(
            "SELECT engine, create_table_query FROM system.tables "
            "WHERE database = {database:String} AND name = {table:String}",
            {"database": self.database, "table": table},
        )
        if not rows:
            return True  # unknown here: let the insert itself report the missing table
        engine, create = str(rows[0][0]), str(rows[0][1])
        if engine.startswith("Replicated"):
            return True
        return engine.endswith("MergeTree") and bool(_DEDUP_WINDOW.search(create))

    def _count(self, table: str) -> int:
        return int(self.query_rows(f"SELECT count() FROM {check_identifier(table)}")[0][0])

    def _attempts(
        self, what: str, sql: str | None, call: Callable[[], T], *, repeatable: bool
    ) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except _Partial as partial:
                raise WarehouseError(
                    f"an insert into {self.endpoint.label} was interrupted and left "
                    f"{partial.rows} rows of a batch behind; the table must be rebuilt"
                    + _in(sql)
                ) from None
            except Exception as exc:
                failure = classify(exc)
                retry = attempt <= self.options.retries and (
                    failure.kind == "not_executed" or (failure.kind == "unknown" and repeatable)
                )
                if not retry:
                    # Unreachable, busy, timed out or cut off: a later attempt may succeed.
                    later = failure.kind in ("not_executed", "unknown") or failure.timeout
                    kind = WarehouseUnavailable if later else WarehouseError
                    raise kind(self._message(what, failure, sql, attempt)) from None
                pause = min(self.options.retry_backoff_s * 2 ** (attempt - 1), 8.0)
                log.warning(
                    "warehouse %s: %s failed (%s); retrying in %.1fs, attempt %d of %d",
                    self.endpoint.label,
                    what,
                    failure.summary,
                    pause,
                    attempt + 1,
                    self.options.retries + 1,
                )
                time.sleep(pause)

    def _message(self, what: str, failure: Failure, sql: str | None, attempts: int) -> str:
        where = self.endpoint.label
        tried = f" (after {attempts} attempts)" if attempts > 1 else ""
        if failure.code in _AUTH_FAILED:
            origin = (
                f"the Airflow Connection {self.source.split(':', 1)[1]}"
                if self.source.startswith("airflow:")
                else "METERLINE_WAREHOUSE_URL"
            )
            return (
                f"ClickHouse at {where} refused the login of user {self.endpoint.username!r}: "
                f"check the user and password in {origin}"
            )
        if failure.code in _READONLY:
            return (
                f"ClickHouse at {where} refused the {what}: user {self.endpoint.username!r} "
                f"may not write here ({failure.summary})" + _in(sql)
            )
        if failure.timeout:
            return (
                f"ClickHouse at {where} did not finish the {what} within "
                f"{self.options.query_timeout_s:g}s{tried}; raise the query timeout "
                "(?query_timeout=SECONDS in the warehouse URL) or look at the server's load. "
                "The statement may still have run: re-run the step, which is idempotent"
                + _in(sql)
            )
        if failure.unreachable:
            return (
                f"cannot reach ClickHouse at {where}{tried}: {failure.summary}. "
                "Is the server running, and are host and port right?"
            )
        if failure.kind == "unknown":
            return (
                f"the connection to ClickHouse at {where} failed during a {what}{tried}: "
                f"{failure.summary}. Whether it took effect is unknown; re-run the step, "
                "which is idempotent" + _in(sql)
            )
        return f"ClickHouse at {where} failed the {what}{tried}: {failure.summary}" + _in(sql)


class _Partial(Exception):
    def __init__(self, rows: int) -> None:
        super().__init__(rows)
        self.rows = rows


@dataclass(frozen=True)
class Failure:
    kind: str
    """'not_executed' (safe to send again), 'unknown' (it may have run) or 'permanent'."""
    summary: str
    code: int | None = None
    timeout: bool = False
    unreachable: bool = False


def classify(exc: BaseException) -> Failure:
    """What a clickhouse-connect exception says about whether the statement ran."""
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    code = getattr(exc, "code", None)
    text = _clean(str(exc))
    if isinstance(exc, DatabaseError) and code:
        if code in _NOT_EXECUTED:
            return Failure("not_executed", text, code)
        if code in _OUTCOME_UNKNOWN:
            return Failure("unknown", text, code)
        # The server cancelled it at max_execution_time: the same statement would too.
        return Failure("permanent", text, code, timeout=code == TIMEOUT_EXCEEDED)
    if isinstance(exc, OperationalError):
        cause = _root_cause(exc)
        name = type(cause).__name__
        if name in ("NewConnectionError", "ConnectionRefusedError", "NameResolutionError"):
            return Failure("not_executed", _transport(cause), unreachable=True)
        if name == "ConnectTimeoutError":
            return Failure("not_executed", "connection timed out", unreachable=True)
        if name in ("ReadTimeoutError", "TimeoutError", "timeout"):
            return Failure("unknown", "no answer before the timeout", timeout=True)
        return Failure("unknown", _transport(cause) if cause is not exc else text)
    return Failure("permanent", text or type(exc).__name__, code)


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost transport error (urllib3 wraps the socket's, MaxRetryError the rest)."""
    seen = exc
    for _ in range(8):
        reason = getattr(seen, "reason", None)
        nxt = reason if isinstance(reason, BaseException) else (seen.__cause__ or seen.__context__)
        if nxt is None:
            break
        seen = nxt
    return seen


def _transport(cause: BaseException) -> str:
    name = type(cause).__name__
    if name in ("NewConnectionError", "ConnectionRefusedError"):
        return "connection refused"
    if name in ("ProtocolError", "RemoteDisconnected", "ConnectionResetError", "BrokenPipeError"):
        return "the server closed the connection"
    return name


def _clean(message: str) -> str:
    """A ClickHouse error without the client's URL suffix, version trailer and the
    query the engine repeats."""
    message = re.sub(r"\s*\(for url [^)]*\)\s*$", "", message)
    message = re.sub(r"\s*\(version [^)]*(?:\([^)]*\))?[^)]*\)\s*$", "", message)
    message = message.split(" In scope ")[0]
    message = message.replace("Received ClickHouse exception, code: ", "code ")
    return " ".join(message.split())[:600]


def _in(sql: str | None) -> str:
    if not sql:
        return ""
    flat = " ".join(LEADING_COMMENTS.sub("", sql).split())
    return "\n  in: " + (flat if len(flat) <= 300 else flat[:300] + " ...")


def is_repeatable(sql: str) -> bool:
    """Whether running the statement twice has the effect of running it once."""
    return bool(_REPEATABLE.match(LEADING_COMMENTS.sub("", sql)))


class _ParamText:
    """A bound parameter already in ClickHouse's parameter text form. clickhouse-connect
    sends an object of a type it does not know as str(object), unchanged; so both
    backends send byte-for-byte the same parameter values (meters.warehouse.chdb_params)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def _bindable(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    return {name: _ParamText(format_value(value)) for name, value in params.items()}


# --- opening -------------------------------------------------------------------------------


def connect_server(
    url: str, *, database: str | None = None, overrides: Mapping[str, Any] | None = None
) -> ClickHouseWarehouse:
    """Open a ClickHouse-server warehouse from a settings URL (see the module docstring)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    secure_scheme = parts.scheme in ("clickhouses", "https")
    base = ServerOptions(secure=secure_scheme)
    options = ServerOptions.from_query(query, base)
    if overrides:
        options = replace(options, **{k: v for k, v in overrides.items() if v is not None})
    options.check()
    url_database = unquote(parts.path.lstrip("/").split("/")[0]) or query.get("database") or None

    conn_id = query.get("airflow_conn_id", DEFAULT_AIRFLOW_CONN_ID)
    if conn_id and inside_airflow_task():
        airflow_conn = _airflow_connection(conn_id)
        if airflow_conn is not None:
            # The Connection's schema names the database; an explicit `database` wins.
            return _from_airflow(
                conn_id, airflow_conn, database or airflow_conn.schema or url_database, options
            )
        log.info(
            "warehouse: no Airflow Connection %r; using METERLINE_WAREHOUSE_URL", conn_id
        )

    try:
        port = parts.port
    except ValueError:
        raise WarehouseError("the warehouse URL has an invalid port") from None
    endpoint = Endpoint(
        host=parts.hostname or "localhost",
        port=port or (8443 if options.secure else 8123),
        username=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        database=database or url_database or DEFAULT_DATABASE,
        secure=options.secure,
    )
    return ClickHouseWarehouse(
        _url_opener(endpoint, options), endpoint=endpoint, options=options, source="url"
    )


def _common_client_kwargs(options: ServerOptions) -> dict[str, Any]:
    # clickhouse-connect takes whole seconds. The server's max_execution_time fires first;
    # the margin lets its error arrive before the client gives up.
    margin = min(10.0, max(1.0, options.query_timeout_s / 4))
    kwargs: dict[str, Any] = {
        "connect_timeout": math.ceil(options.connect_timeout_s),
        "send_receive_timeout": math.ceil(options.query_timeout_s + margin),
        # Retries are this backend's decision (see the module docstring), not the driver's.
        "query_retries": 0,
        "autogenerate_session_id": False,
        "compress": options.compress,
    }
    if options.session:
        kwargs["session_id"] = f"meterline-{uuid.uuid4().hex}"
    return kwargs


def _server_settings(options: ServerOptions) -> dict[str, Any]:
    return {"max_execution_time": math.ceil(options.query_timeout_s)}


def _url_opener(endpoint: Endpoint, options: ServerOptions) -> Callable[[str | None], Any]:
    def open_client(database: str | None) -> Any:
        import clickhouse_connect

        return clickhouse_connect.get_client(
            host=endpoint.host,
            port=endpoint.port,
            username=endpoint.username,
            password=endpoint.password,
            database=database,
            secure=options.secure,
            verify=options.verify,
            client_name="meterline",
            settings=_server_settings(options),
            **_common_client_kwargs(options),
        )

    return open_client


def inside_airflow_task() -> bool:
    """True while an Airflow task is running in this process (never imports Airflow)."""
    if "airflow.sdk" not in sys.modules:
        return False
    try:
        from airflow.sdk import get_current_context

        get_current_context()
    except Exception:
        return False
    return True


def _airflow_connection(conn_id: str) -> Any | None:
    from airflow.providers.clickhousedb.hooks.clickhouse import ClickHouseHook

    try:
        return ClickHouseHook.get_connection(conn_id)
    except Exception as exc:
        if type(exc).__name__ == "AirflowNotFoundException":
            return None
        raise WarehouseError(f"cannot read the Airflow Connection {conn_id!r}: {exc}") from None


def _from_airflow(
    conn_id: str, conn: Any, database: str | None, options: ServerOptions
) -> ClickHouseWarehouse:
    from airflow.providers.clickhousedb.hooks.clickhouse import ClickHouseHook

    extra = conn.extra_dejson or {}
    secure = bool(extra.get("secure", options.secure))
    endpoint = Endpoint(
        host=conn.host or "localhost",
        port=int(conn.port) if conn.port else (8443 if secure else 8123),
        username=conn.login or "default",
        password="",  # held by Airflow, never by meterline
        database=database or DEFAULT_DATABASE,
        secure=secure,
    )
    client_kwargs = _common_client_kwargs(options)

    def open_client(db: str | None) -> Any:
        hook = ClickHouseHook(
            clickhouse_conn_id=conn_id,
            database=db or "default",
            session_settings=_server_settings(options),
            client_kwargs=client_kwargs,
        )
        return hook.get_client()

    return ClickHouseWarehouse(
        open_client, endpoint=endpoint, options=options, source=f"airflow:{conn_id}"
    )
