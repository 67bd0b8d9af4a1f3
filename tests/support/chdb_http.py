"""A ClickHouse HTTP server for the test suite, running every statement on chDB.

No ClickHouse server package exists on these machines, so the suite starts this server
on a free loopback port. It speaks the part of ClickHouse's HTTP interface that
clickhouse-connect uses, and runs everything on chDB, the real engine, in this process
(chDB allows one folder per process, so it shares the session's folder with the embedded
backend; each test has its own database):

* `GET /ping`; queries in the `query` URL parameter, in the POST body, or split between
  the two (the parameter, a newline, then the body), or as multipart form fields;
* bound parameters (`param_<name>`, text in ClickHouse's escaped format), `database`,
  `default_format`, `query_id`, output formats (whatever chDB writes: Native, Arrow,
  TabSeparated, JSON, ...), with `X-ClickHouse-Format`, `-Query-Id`, `-Timezone`,
  `-Summary` headers;
* inserts with data in any input format (`INSERT INTO t (a, b) FORMAT Arrow` + body),
  bodies with Content-Length or chunked transfer encoding, compressed with
  Content-Encoding gzip, deflate, lz4 (frame) or zstd; compressed answers when the client
  sends enable_http_compression=1;
* settings as URL parameters (applied with SET around the statement and reset after, so
  the shared engine is left as it was); sessions (`session_id`, `session_timeout`,
  `session_check`, `close_session`; a session used concurrently is refused with
  SESSION_IS_LOCKED, as ClickHouse does; SET and USE persist in a session);
* users with passwords (Basic auth, X-ClickHouse-User/-Key headers or user/password
  parameters) and read-only users (readonly=1 refuses writes and setting changes,
  readonly=2 only writes; GET requests are read-only, as in ClickHouse);
* errors as ClickHouse sends them: `X-ClickHouse-Exception-Code`, the HTTP status
  ClickHouse maps the code to (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp) and a
  "Code: N. DB::Exception: ... (NAME) (version ...)" body.

Faults, on demand (`server.inject(...)`), for the statements whose text matches a pattern:
drop the connection mid-body (before anything runs), drop it after the statement ran
(the answer is lost), answer with an error instead of running (a 500 by default), or
delay past the client's timeout.
"""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import gzip
import json
import re
import socket
import struct
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import lz4.frame
from backports import zstd

from meters.warehouse import chdb as chdb_backend

VERSION = "26.9.2.1"

# Parameters the HTTP layer consumes; everything else that is not param_* is a setting.
_TRANSPORT = {
    "query", "database", "default_format", "session_id", "session_timeout", "session_check",
    "close_session", "query_id", "user", "password", "quota_key", "compress", "decompress",
    "buffer_size", "wait_end_of_query", "client_protocol_version", "role", "stacktrace",
}
_HTTP_SETTINGS = {
    "enable_http_compression", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close",
    "http_zlib_compression_level", "http_response_buffer_size", "http_wait_end_of_query",
    "http_native_compression_disable_checksumming_on_decompress", "add_http_cors_header",
}

# src/Server/HTTP/exceptionCodeToHTTPStatus.cpp, by error name.
_STATUS_BY_NAME: dict[str, int] = {
    **dict.fromkeys(["REQUIRED_PASSWORD"], 401),
    **dict.fromkeys(
        ["UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE",
         "ACCESS_DENIED"], 403),
    **dict.fromkeys(
        ["BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "CANNOT_PARSE_TEXT",
         "CANNOT_PARSE_ESCAPE_SEQUENCE", "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE",
         "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER", "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
         "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6", "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
         "CANNOT_PARSE_UUID", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN", "UNKNOWN_ELEMENT_IN_AST",
         "UNKNOWN_TYPE_OF_AST_NODE", "THERE_IS_NO_COLUMN", "TOO_DEEP_AST", "TOO_BIG_AST",
         "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH",
         "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"], 400),
    **dict.fromkeys(
        ["UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE",
         "UNKNOWN_STORAGE", "UNKNOWN_DATABASE", "UNKNOWN_SETTING",
         "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION", "UNKNOWN_FORMAT",
         "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"], 404),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "CANNOT_SCHEDULE_TASK": 503,
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}

_READ_ONLY_STATEMENT = re.compile(
    r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN|SET|USE)\b", re.IGNORECASE
)
_FORMAT_INSERT = re.compile(
    r"""^\s*INSERT\s+INTO\s+(?:TABLE\s+)?
        (?P<table>(?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)\s*
        (?:\((?P<columns>[^)]*)\))?\s*
        FORMAT\s+(?P<format>\w+)[ \t]*(?:\r?\n)?""",
    re.IGNORECASE | re.VERBOSE,
)
_LEADING_COMMENTS = re.compile(r"\A(?:\s*(?:--[^\n]*(?:\n|\Z)|/\*.*?\*/))*\s*", re.DOTALL)
_OUTPUT_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_SET = re.compile(r"^\s*SET\s+(.*?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_USE = re.compile(r"^\s*USE\s+`?(\w+)`?\s*;?\s*$", re.IGNORECASE)
_CODE = re.compile(r"Code:\s*(\d+)")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")


class ClickHouseError(Exception):
    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code, self.name, self.message = code, name, message

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        text = str(exc)
        code = int(m.group(1)) if (m := _CODE.search(text)) else 1001
        names = _NAME.findall(text)
        name = names[-1] if names else "STD_EXCEPTION"
        message = re.sub(r"^Code:\s*\d+\.\s*DB::Exception:\s*", "", text).strip()
        message = re.sub(r"\s*\(" + re.escape(name) + r"\)\s*$", "", message)
        return cls(code, name, message)

    @property
    def status(self) -> int:
        return _STATUS_BY_NAME.get(self.name, 500)

    def body(self) -> bytes:
        return f"Code: {self.code}. DB::Exception: {self.message}. ({self.name}) (version {VERSION})\n".encode()


@dataclass(frozen=True)
class User:
    password: str = ""
    readonly: int = 0


@dataclass
class Fault:
    """One injected failure. `action`: drop_mid_body | drop_after_execute | error | delay."""

    action: str
    pattern: re.Pattern[str] | None
    times: int = 1
    code: int = 999
    name: str = "KEEPER_EXCEPTION"
    message: str = "Injected fault: the server failed"
    status: int = 500
    delay_s: float = 0.0
    chunked_only: bool = False
    """Only requests whose body is sent with chunked transfer encoding."""
    hits: int = 0

    def matches(self, statement: str, chunked: bool = False) -> bool:
        if self.hits >= self.times or (self.chunked_only and not chunked):
            return False
        return self.pattern is None or bool(self.pattern.search(statement))


@dataclass
class Logged:
    """One request as the server saw it (no credentials)."""

    user: str
    database: str
    session_id: str | None
    statement: str
    settings: dict[str, str]
    status: int = 200
    fault: str | None = None
    chunked: bool = False
    encoding: str = ""


@dataclass
class _Session:
    lock: threading.Lock = field(default_factory=threading.Lock)
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    expires_at: float = 0.0


class _Dropped(Exception):
    """The connection was dropped on purpose: write nothing back."""


class ChdbHttpServer:
    """The server. `start()` binds a free loopback port; `url(...)` builds client URLs."""

    def __init__(self, folder: Path, *, users: Mapping[str, User] | None = None) -> None:
        self.folder = str(Path(folder).resolve())
        self.users: dict[str, User] = dict(users or {"default": User()})
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._engine: Any = None
        self._defaults: dict[str, str] = {}
        self._spool = Path(tempfile.mkdtemp(prefix="chdb-http-"))

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> ChdbHttpServer:
        self._engine = chdb_backend._open_engine(self.folder, 60.0)
        with chdb_backend._engine_lock:
            self._engine.query("CREATE DATABASE IF NOT EXISTS default")
            rows = self._engine.query(
                "SELECT name, default FROM system.settings", "TabSeparatedRaw"
            ).bytes().decode()
            self.timezone = self._engine.query("SELECT timezone()", "TabSeparatedRaw").bytes().decode().strip()
        self._defaults = dict(line.split("\t", 1) for line in rows.splitlines() if "\t" in line)
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="chdb-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._engine is not None:
            chdb_backend._release_engine()
            self._engine = None

    def __enter__(self) -> ChdbHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return int(self._httpd.server_address[1])

    def url(self, database: str, *, user: str = "default", password: str = "", **options: Any) -> str:
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"clickhouse://{auth}@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    # --- faults ---------------------------------------------------------------------------

    def inject(self, action: str, match: str | None = None, *, times: int = 1, **kwargs: Any) -> Fault:
        """Fail the next `times` statements whose text matches `match` (a regex searched
        in the statement; None: any). drop_mid_body sees only the URL's query parameter
        (the body has not been read yet)."""
        if action not in ("drop_mid_body", "drop_after_execute", "error", "delay"):
            raise ValueError(f"unknown fault {action!r}")
        fault = Fault(action, re.compile(match, re.IGNORECASE | re.DOTALL) if match else None,
                      times, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take_fault(
        self, statement: str, actions: tuple[str, ...], chunked: bool = False
    ) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.action in actions and fault.matches(statement, chunked):
                    fault.hits += 1
                    return fault
        return None

    def statements(self, pattern: str, database: str | None = None) -> list[Logged]:
        """Logged requests whose statement matches `pattern` (in `database`, if given)."""
        rx = re.compile(pattern, re.IGNORECASE | re.DOTALL)
        with self._lock:
            return [
                entry for entry in self.log
                if rx.search(entry.statement) and database in (None, entry.database)
            ]

    # --- sessions ---------------------------------------------------------------------------

    def _session(self, session_id: str, timeout_s: float, check: bool) -> _Session:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, s in self._sessions.items() if s.expires_at < now and not s.lock.locked()]:
                del self._sessions[key]
            session = self._sessions.get(session_id)
            if session is None:
                if check:
                    raise ClickHouseError(372, "SESSION_NOT_FOUND", f"Session {session_id} not found")
                session = self._sessions[session_id] = _Session()
            session.expires_at = now + timeout_s
        if not session.lock.acquire(blocking=False):
            raise ClickHouseError(
                373, "SESSION_IS_LOCKED", f"Session {session_id} is locked by a concurrent client"
            )
        return session

    def _end_session(self, session_id: str, session: _Session, close: bool) -> None:
        session.lock.release()
        if close:
            with self._lock:
                self._sessions.pop(session_id, None)

    # --- running statements on the engine ---------------------------------------------------

    def execute(
        self,
        statement: str,
        *,
        database: str,
        settings: Mapping[str, str],
        params: Mapping[str, str],
        default_format: str,
        data: bytes | None = None,
        insert: re.Match[str] | None = None,
    ) -> tuple[bytes, dict[str, int]]:
        """Run one statement in `database` with `settings`; returns (output, counters)."""
        with chdb_backend._engine_lock:
            engine = self._engine
            try:
                engine.query("USE `" + database.replace("`", "``") + "`")
            except Exception as exc:
                raise ClickHouseError.from_engine(exc) from None
            # Only the settings that differ from the engine's defaults, in one SET each way.
            applied = [n for n, v in settings.items() if self._defaults.get(n) != v]
            try:
                if applied:
                    engine.query(
                        "SET " + ", ".join(f"{n} = {_literal(settings[n])}" for n in applied)
                    )
                if insert is not None:
                    result = self._insert(engine, insert, database, data or b"")
                elif params:
                    result = engine.query(statement, default_format, params=dict(params))
                else:
                    result = engine.query(statement, default_format)
            except ClickHouseError:
                raise
            except Exception as exc:
                raise ClickHouseError.from_engine(exc) from None
            finally:
                if applied:
                    known = [n for n in applied if n in self._defaults]
                    if known:
                        engine.query("SET " + ", ".join(f"{n} = DEFAULT" for n in known))
        if result is None:
            return b"", {}
        counters = {
            "read_rows": int(result.rows_read()),
            "read_bytes": int(result.bytes_read()),
            "written_rows": int(getattr(result, "rows_written", lambda: 0)()),
            "written_bytes": int(getattr(result, "bytes_written", lambda: 0)()),
        }
        return bytes(result.bytes()), counters

    def _insert(self, engine: Any, insert: re.Match[str], database: str, data: bytes) -> Any:
        """INSERT ... FORMAT <fmt> with the data in the body: the engine reads the body
        from a spool file, with the target columns' types as the input structure (as a
        server reads an insert's data with the table's header)."""
        table = insert.group("table")
        db, _, name = table.rpartition(".")
        db, name = (db or database).strip("`"), name.strip("`")
        columns_sql = insert.group("columns")
        rows = engine.query(
            "SELECT name, type FROM system.columns WHERE database = {d:String} "
            "AND table = {t:String} AND default_kind NOT IN ('MATERIALIZED', 'ALIAS') "
            "ORDER BY position",
            "TabSeparatedRaw",
            params={"d": db, "t": name},
        ).bytes().decode()
        types = dict(line.split("\t", 1) for line in rows.splitlines() if "\t" in line)
        if not types:
            raise ClickHouseError(60, "UNKNOWN_TABLE", f"Table {db}.{name} does not exist")
        names = (
            [c.strip().strip("`") for c in columns_sql.split(",")] if columns_sql else list(types)
        )
        missing = [c for c in names if c not in types]
        if missing:
            raise ClickHouseError(16, "NO_SUCH_COLUMN_IN_TABLE", f"No such column {missing[0]} in table {db}.{name}")
        if not data:
            return None
        spool = self._spool / f"{uuid.uuid4().hex}.data"
        spool.write_bytes(data)
        try:
            quoted = ", ".join(f"`{c}`" for c in names)
            structure = ", ".join(f"`{c}` {types[c]}" for c in names)
            return engine.query(
                f"INSERT INTO `{db}`.`{name}` ({quoted}) SELECT {quoted} FROM "
                f"file('{spool}', '{insert.group('format')}', {_literal(structure)})"
            )
        finally:
            spool.unlink(missing_ok=True)


def _head(statement: str) -> str:
    """The statement without the comments before it (for telling what kind it is)."""
    return _LEADING_COMMENTS.sub("", statement, count=1)


def _literal(value: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _set_assignments(text: str) -> dict[str, str]:
    """`SET a = 1, b = 'x'` -> {"a": "1", "b": "x"} (values as the HTTP interface sends them)."""
    out: dict[str, str] = {}
    for part in re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|[^,]+)", text):
        name, value = part
        value = value.strip()
        if value.startswith("'") and value.endswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[name] = value
    return out


class _Handler(BaseHTTPRequestHandler):
    owner: ChdbHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "ClickHouse"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every answer on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # a dropped connection has nothing to flush
            super().finish()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    # --- one request --------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        server = self.owner
        parts = urlsplit(self.path)
        if parts.path.rstrip("/") in ("/ping", "/replicas_status") or (
            method == "GET" and parts.path == "/" and not parts.query
        ):
            self._drain_body()
            self._reply(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        if parts.path not in ("/", ""):
            self._drain_body()
            self._reply(404, b"There is no handle " + parts.path.encode() + b"\n", {})
            return
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        entry = Logged(
            user="?", database="", session_id=params.get("session_id"), statement="", settings={},
            chunked="chunked" in self.headers.get("Transfer-Encoding", "").lower(),
            encoding=self.headers.get("Content-Encoding", ""),
        )
        session: _Session | None = None
        session_id = params.get("session_id")
        self._body_read = False
        self._held: tuple[str, _Session, bool] | None = None
        try:
            entry.database = params.get("database", "")
            user_name, user = self._authenticate(params)
            entry.user = user_name
            query_param = params.get("query", "")
            dropping = (
                server._take_fault(query_param, ("drop_mid_body",), entry.chunked)
                if self._has_body() else None
            )
            if dropping is not None:
                entry.fault, entry.statement = "drop_mid_body", query_param
                self._log(entry, 0)
                self._drop_mid_body()
            body = self._read_body()
            self._body_read = True
            if body and self.headers.get("Content-Type", "").startswith("multipart/form-data"):
                params.update(self._form_fields(body))
                query_param, body = params.get("query", ""), b""
            if session_id:
                session = server._session(
                    session_id,
                    float(params.get("session_timeout") or 60),
                    params.get("session_check") == "1",
                )
                self._held = (session_id, session, params.get("close_session") == "1")
            statement, data, insert = self._statement(query_param, body)
            entry.statement = statement[:2000]
            settings = {
                k: v for k, v in params.items()
                if k not in _TRANSPORT and not k.startswith("param_") and k not in _HTTP_SETTINGS
                and not k.startswith("http_")
            }
            if session is not None:
                settings = {**session.settings, **settings}
            entry.settings = settings
            database = (
                params.get("database") or self.headers.get("X-ClickHouse-Database")
                or (session.database if session else None) or "default"
            )
            entry.database = database
            readonly = max(user.readonly, 2 if method == "GET" else 0)
            self._check_readonly(readonly, statement, insert, settings)
            fault = server._take_fault(
                statement, ("error", "delay", "drop_after_execute"), entry.chunked
            )
            entry.fault = fault.action if fault else None
            if fault is not None and fault.action == "error":
                raise ClickHouseError(fault.code, fault.name, fault.message)
            if fault is not None and fault.action == "delay":
                time.sleep(fault.delay_s)
            if (m := _SET.match(_head(statement))) and insert is None:
                assigned = _set_assignments(m.group(1))
                server.execute("SELECT 1", database=database, settings=assigned, params={},
                               default_format="TabSeparated")
                if session is not None:
                    session.settings.update(assigned)
                output, counters = b"", {}
            elif (m := _USE.match(_head(statement))) and insert is None:
                server.execute("SELECT 1", database=m.group(1), settings={}, params={},
                               default_format="TabSeparated")
                if session is not None:
                    session.database = m.group(1)
                output, counters = b"", {}
            else:
                started = time.perf_counter()
                output, counters = server.execute(
                    statement,
                    database=database,
                    settings=settings,
                    params={k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")},
                    default_format=params.get("default_format")
                    or self.headers.get("X-ClickHouse-Format") or "TabSeparated",
                    data=data,
                    insert=insert,
                )
                counters["elapsed_ns"] = int((time.perf_counter() - started) * 1e9)
            if fault is not None and fault.action == "drop_after_execute":
                self._log(entry, 0)
                self._drop()
            headers = self._result_headers(params, statement, insert, counters)
            self._log(entry, 200)
            self._release_session()
            self._reply(200, output, headers, compress=params.get("enable_http_compression") == "1")
        except _Dropped:
            self.close_connection = True
        except ClickHouseError as error:
            if not self._body_read:  # refused before reading it: keep the connection in step
                try:
                    self._drain_body()
                except ClickHouseError:
                    self.close_connection = True
            self._log(entry, error.status)
            self._release_session()
            self._reply(
                error.status,
                error.body(),
                {"X-ClickHouse-Exception-Code": str(error.code),
                 "Content-Type": "text/plain; charset=UTF-8"},
            )
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._release_session()

    def _release_session(self) -> None:
        """Give the session back before the answer goes out, as ClickHouse does: a client
        that sends its next statement as soon as it has read this answer must find the
        session free, not locked by a request that is only finishing its reply."""
        held, self._held = self._held, None
        if held is not None:
            self.owner._end_session(*held)

    def _log(self, entry: Logged, status: int) -> None:
        entry.status = status
        with self.owner._lock:
            self.owner.log.append(entry)

    # --- pieces -------------------------------------------------------------------------

    def _authenticate(self, params: Mapping[str, str]) -> tuple[str, User]:
        name, password = "default", ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            decoded = base64.b64decode(auth[6:]).decode()
            name, _, password = decoded.partition(":")
        elif self.headers.get("X-ClickHouse-User"):
            name = self.headers["X-ClickHouse-User"]
            password = self.headers.get("X-ClickHouse-Key", "")
        elif "user" in params:
            name, password = params["user"], params.get("password", "")
        user = self.owner.users.get(name)
        if user is None or user.password != password:
            raise ClickHouseError(
                516, "AUTHENTICATION_FAILED",
                f"{name}: Authentication failed: password is incorrect, or there is no user with such name",
            )
        return name, user

    def _check_readonly(
        self, readonly: int, statement: str, insert: re.Match[str] | None, settings: Mapping[str, str]
    ) -> None:
        if not readonly:
            return
        if insert is not None or not _READ_ONLY_STATEMENT.match(_head(statement)):
            raise ClickHouseError(164, "READONLY", "Cannot execute query in readonly mode")
        if readonly == 1:
            defaults = self.owner._defaults
            changed = [k for k, v in settings.items() if defaults.get(k) != v]
            if changed:
                raise ClickHouseError(
                    164, "READONLY", f"Cannot modify '{changed[0]}' setting in readonly mode"
                )

    def _has_body(self) -> bool:
        return bool(self.headers.get("Transfer-Encoding")) or int(self.headers.get("Content-Length") or 0) > 0

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = list(self._chunks())
            raw = b"".join(chunks)
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if not encoding or encoding == "identity":
            return raw
        if encoding == "gzip":
            return gzip.decompress(raw)
        if encoding == "deflate":
            return zlib.decompress(raw)
        if encoding == "lz4":
            return bytes(lz4.frame.decompress(raw))
        if encoding == "zstd":
            return bytes(zstd.decompress(raw))
        raise ClickHouseError(73, "UNKNOWN_FORMAT", f"Unknown Content-Encoding {encoding}")

    def _chunks(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline()
            if not line:
                raise ClickHouseError(33, "CANNOT_READ_ALL_DATA", "Unexpected end of chunked body")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def _drain_body(self) -> None:
        if self._has_body():
            self._read_body()

    def _form_fields(self, body: bytes) -> dict[str, str]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        fields: dict[str, str] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                fields[name] = payload.decode() if isinstance(payload, bytes) else str(payload)
        return fields

    def _statement(self, query_param: str, body: bytes) -> tuple[str, bytes | None, re.Match[str] | None]:
        """The statement text, the insert data (if any) and the parsed insert header."""
        combined = (query_param.encode() + b"\n" + body) if query_param and body else (query_param.encode() or body)
        head = combined[:65536].decode("latin-1")
        insert = _FORMAT_INSERT.match(head)
        if insert is not None:
            offset = len(head[: insert.end()].encode("latin-1"))
            return head[: insert.end()].strip(), combined[offset:], insert
        try:
            return combined.decode(), None, None
        except UnicodeDecodeError:
            raise ClickHouseError(62, "SYNTAX_ERROR", "the query is not valid UTF-8") from None

    def _result_headers(
        self, params: Mapping[str, str], statement: str, insert: re.Match[str] | None,
        counters: Mapping[str, int],
    ) -> dict[str, str]:
        headers = {
            "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
            "X-ClickHouse-Timezone": self.owner.timezone,
            "X-ClickHouse-Server-Display-Name": "chdb-http",
            "X-ClickHouse-Summary": json.dumps({k: str(v) for k, v in counters.items()}),
        }
        if params.get("session_id"):
            headers["X-ClickHouse-Session-Id"] = params["session_id"]
        head = _head(statement)
        if insert is None and _READ_ONLY_STATEMENT.match(head) and not _SET.match(head) \
                and not _USE.match(head):
            found = _OUTPUT_FORMAT.search(statement.rstrip())
            fmt = found.group(1) if found else (params.get("default_format") or "TabSeparated")
            headers["X-ClickHouse-Format"] = fmt
            headers["Content-Type"] = "text/tab-separated-values; charset=UTF-8" \
                if fmt.startswith("TabSeparated") else "application/octet-stream"
        else:
            headers["Content-Type"] = "text/plain; charset=UTF-8"
        return headers

    def _reply(self, status: int, body: bytes, headers: Mapping[str, str], *, compress: bool = False) -> None:
        encoding = None
        if compress and body:
            accepted = [e.strip() for e in self.headers.get("Accept-Encoding", "").split(",")]
            for candidate in ("lz4", "zstd", "gzip", "deflate"):
                if candidate in accepted:
                    encoding = candidate
                    break
        if encoding == "lz4":
            body = lz4.frame.compress(body)
        elif encoding == "zstd":
            body = zstd.compress(body)
        elif encoding == "gzip":
            body = gzip.compress(body)
        elif encoding == "deflate":
            body = zlib.compress(body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "Keep-Alive")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _drop_mid_body(self) -> None:
        """Read part of the body, then reset the connection: nothing runs."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            line = self.rfile.readline()
            size = int(line.split(b";")[0].strip() or b"0", 16)
            self.rfile.read(max(1, size // 2))
        else:
            self.rfile.read(max(1, int(self.headers.get("Content-Length") or 0) // 2))
        self._drop()

    def _drop(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()
        raise _Dropped
