"""What a failed statement on a ClickHouse server says, and whether to send it again.

A statement may be sent again when the server certainly did not run it (connection
refused, "too many simultaneous queries", a locked session, a read-only replica), or when
its outcome is unknown (a dropped connection, a timeout, an HTTP 5xx from a proxy or a
keeper hiccup) and running it twice has the effect of running it once (`is_repeatable`:
reads, `IF [NOT] EXISTS` DDL, `REPLACE`/`DROP PARTITION`; inserts carry an
insert-deduplication token). Anything else with an unknown outcome is reported, not
repeated. `message` turns a failure into the one line a person reads: where, what, why,
what to do, never a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meters.warehouse.base import LEADING_COMMENTS, statement_note
from meters.warehouse.clickhouse_options import Endpoint

# ClickHouse error codes (src/Common/ErrorCodes.cpp) that the server backend treats
# specially.
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


def is_repeatable(sql: str) -> bool:
    """Whether running the statement twice has the effect of running it once."""
    return bool(_REPEATABLE.match(LEADING_COMMENTS.sub("", sql)))


@dataclass(frozen=True)
class Failure:
    kind: str
    """'not_executed' (safe to send again), 'unknown' (it may have run) or 'permanent'."""
    summary: str
    code: int | None = None
    timeout: bool = False
    unreachable: bool = False

    def may_retry(self, repeatable: bool) -> bool:
        """Whether sending the statement again is safe (the module docstring's rule)."""
        return self.kind == "not_executed" or (self.kind == "unknown" and repeatable)

    @property
    def passing(self) -> bool:
        """Unreachable, busy, timed out or cut off: a later attempt may succeed."""
        return self.kind in ("not_executed", "unknown") or self.timeout


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


def message(
    failure: Failure,
    what: str,
    sql: str | None,
    attempts: int,
    *,
    endpoint: Endpoint,
    source: str,
    query_timeout_s: float,
) -> str:
    """The error a person reads for `failure` of a `what` ("query", "insert", ...) after
    `attempts` attempts; `source` is where the connection settings came from ('url' or
    'airflow:<conn_id>')."""
    where = endpoint.label
    tried = f" (after {attempts} attempts)" if attempts > 1 else ""
    if failure.code in _AUTH_FAILED:
        origin = (
            f"the Airflow Connection {source.split(':', 1)[1]}"
            if source.startswith("airflow:")
            else "METERLINE_WAREHOUSE_URL"
        )
        return (
            f"ClickHouse at {where} refused the login of user {endpoint.username!r}: "
            f"check the user and password in {origin}"
        )
    if failure.code in _READONLY:
        return (
            f"ClickHouse at {where} refused the {what}: user {endpoint.username!r} "
            f"may not write here ({failure.summary})" + statement_note(sql)
        )
    if failure.timeout:
        return (
            f"ClickHouse at {where} did not finish the {what} within "
            f"{query_timeout_s:g}s{tried}; raise the query timeout "
            "(?query_timeout=SECONDS in the warehouse URL) or look at the server's load. "
            "The statement may still have run: re-run the step, which is idempotent"
            + statement_note(sql)
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
            "which is idempotent" + statement_note(sql)
        )
    return f"ClickHouse at {where} failed the {what}{tried}: {failure.summary}" + (
        statement_note(sql)
    )


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


def _clean(text: str) -> str:
    """A ClickHouse error without the client's URL suffix, version trailer and the
    query the engine repeats."""
    text = re.sub(r"\s*\(for url [^)]*\)\s*$", "", text)
    text = re.sub(r"\s*\(version [^)]*(?:\([^)]*\))?[^)]*\)\s*$", "", text)
    text = text.split(" In scope ")[0]
    text = text.replace("Received ClickHouse exception, code: ", "code ")
    return " ".join(text.split())[:600]
