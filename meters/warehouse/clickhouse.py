"""The production warehouse: a ClickHouse server over HTTP, through clickhouse-connect.

Same interface and same SQL as the embedded chDB backend. Where the connection comes from:

* inside an Airflow task, the Airflow Connection `clickhouse_default` (or the one named by
  `?airflow_conn_id=` in the URL), through apache-airflow-providers-clickhousedb's hook,
  when that Connection exists: host, port, login, password, schema (the database) and its
  extra (secure, verify, timeouts) come from Airflow, never from meterline's settings;
* everywhere else, the `clickhouse://user:pass@host:8123/db` URL (METERLINE_WAREHOUSE_URL),
  with the options of meters.warehouse.clickhouse_options.ServerOptions.

Statements are stateless: every request names its database, and the per-batch staging
tables of ingest and rollup are ordinary tables with unique names, so no server session
is needed (`?session=1` opts into one, for a proxy that routes by session id).

Failures and retries. A statement is sent again (up to `retries` times, backing off
exponentially, by tenacity) only when that is safe: the server certainly did not run it,
or running it twice has the effect of running it once (meters.warehouse.
clickhouse_failures). Anything else with an unknown outcome is reported, not repeated:
the caller's own step is idempotent and is retried as a whole (an Airflow task retry, a
re-run of the command). Every failure becomes a `WarehouseError` that says where, what
and why, and never carries a password.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import pyarrow as pa
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from meters.warehouse.base import (
    Warehouse,
    WarehouseError,
    WarehouseUnavailable,
    check_identifier,
    statement_note,
)
from meters.warehouse.chdb_params import format_value
from meters.warehouse.clickhouse_failures import UNKNOWN_DATABASE, classify, is_repeatable, message
from meters.warehouse.clickhouse_options import (
    DEFAULT_DATABASE,
    MAX_BACKOFF_S,
    Endpoint,
    ServerOptions,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_AIRFLOW_CONN_ID = "clickhouse_default"
_DEDUP_WINDOW = re.compile(r"non_replicated_deduplication_window\s*=\s*[1-9]")


def content_token(data: pa.Table) -> str:
    """An insert-deduplication token from a batch's content: the same rows in the same
    order (and schema) give the same token, so a retried insert is recognised."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


class ClickHouseWarehouse(Warehouse):
    """Warehouse backend on a ClickHouse server. All statements run in `database`."""

    # Other processes may use the same server at the same time.
    exclusive = False
    engine_name = "ClickHouse"

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

    def _command(
        self, sql: str, params: Mapping[str, Any] | None, settings: dict[str, str | int]
    ) -> None:
        repeatable = "insert_deduplication_token" in settings or is_repeatable(sql)
        self._attempts(
            "statement",
            sql,
            lambda: self._client.command(
                sql, parameters=_bindable(params), settings=settings or None
            ),
            repeatable=repeatable,
        )

    def _query_arrow(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        return self._attempts(
            "query",
            sql,
            lambda: self._client.query_arrow(sql, parameters=_bindable(params)),
            repeatable=True,
        )

    def _insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None) -> None:
        """Insert in the Arrow format with an insert-deduplication token (the caller's, or
        one derived from the content). A table that does not deduplicate inserts (Memory
        staging tables, MergeTree without a deduplication window) is guarded by its row
        count instead: before a retry, rows already there mean the first attempt landed."""
        deduplicates = self._deduplicates(table)
        rows_before = None if deduplicates else self._count(table)
        # The token only matters where the table deduplicates; hashing a batch's content
        # (0.25 s per 2M rows) is skipped where the row count guards the retry instead.
        settings: dict[str, str] = {}
        if dedup_token or deduplicates:
            settings["insert_deduplication_token"] = dedup_token or content_token(data)
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
            self._client.insert_arrow(table, data, settings=settings)

        self._attempts(
            "insert",
            f"INSERT INTO {table} FORMAT Arrow ({data.num_rows} rows)",
            call,
            repeatable=True,
        )

    def _close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing a pool that is already gone is not a failure
            log.debug("warehouse: closing the client failed", exc_info=True)

    def __repr__(self) -> str:
        return f"ClickHouseWarehouse({self.endpoint.label}, source={self.source})"

    # --- helpers ------------------------------------------------------------------------

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
        """`call()`, sent again while its failure may be retried (clickhouse_failures),
        at most `options.retries` more times, pausing `retry_backoff_s` doubling up to
        MAX_BACKOFF_S. Raises WarehouseUnavailable when a later attempt may succeed,
        WarehouseError otherwise."""
        retrying = Retrying(
            stop=stop_after_attempt(self.options.retries + 1),
            wait=wait_exponential(multiplier=self.options.retry_backoff_s, max=MAX_BACKOFF_S),
            retry=retry_if_exception(
                lambda exc: not isinstance(exc, _Partial) and classify(exc).may_retry(repeatable)
            ),
            before_sleep=lambda state: self._log_retry(what, state),
            reraise=True,
        )
        try:
            return retrying(call)
        except _Partial as partial:
            raise WarehouseError(
                f"an insert into {self.endpoint.label} was interrupted and left "
                f"{partial.rows} rows of a batch behind; the table must be rebuilt"
                + statement_note(sql)
            ) from None
        except Exception as exc:
            failure = classify(exc)
            kind = WarehouseUnavailable if failure.passing else WarehouseError
            text = message(
                failure,
                what,
                sql,
                retrying.statistics.get("attempt_number", 1),
                endpoint=self.endpoint,
                source=self.source,
                query_timeout_s=self.options.query_timeout_s,
            )
            raise kind(text) from None

    def _log_retry(self, what: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "warehouse %s: %s failed (%s); retrying in %.1fs, attempt %d of %d",
            self.endpoint.label,
            what,
            classify(exc).summary if exc else "?",
            state.upcoming_sleep,
            state.attempt_number + 1,
            self.options.retries + 1,
        )


class _Partial(Exception):
    def __init__(self, rows: int) -> None:
        super().__init__(rows)
        self.rows = rows


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
            settings=options.server_settings(),
            **options.client_kwargs(),
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
    client_kwargs = options.client_kwargs()

    def open_client(db: str | None) -> Any:
        hook = ClickHouseHook(
            clickhouse_conn_id=conn_id,
            database=db or "default",
            session_settings=options.server_settings(),
            client_kwargs=client_kwargs,
        )
        return hook.get_client()

    return ClickHouseWarehouse(
        open_client, endpoint=endpoint, options=options, source=f"airflow:{conn_id}"
    )
