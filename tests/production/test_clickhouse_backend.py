"""The ClickHouse-server backend: URL options, what it retries, its messages, read-only
users, sessions, cluster mode, and results identical to the embedded backend's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from meters.warehouse import connect
from meters.warehouse.base import WarehouseError
from meters.warehouse.clickhouse import ClickHouseWarehouse, content_token
from meters.warehouse.clickhouse_failures import classify, is_repeatable
from meters.warehouse.clickhouse_options import Endpoint, ServerOptions
from tests.support.chdb_http import ChdbHttpServer, User


def test_url_options() -> None:
    options = ServerOptions.from_query(
        {"query_timeout": "600", "retries": "5", "cluster": "main", "session": "1", "database": "x"}
    )
    assert (options.query_timeout_s, options.retries, options.cluster, options.session) == (
        600.0,
        5,
        "main",
        True,
    )
    with pytest.raises(WarehouseError, match="unknown warehouse URL option 'query_timout'"):
        ServerOptions.from_query({"query_timout": "5"})
    with pytest.raises(WarehouseError, match="retries='many' is not valid"):
        ServerOptions.from_query({"retries": "many"})
    with pytest.raises(WarehouseError, match="cluster='a b' is not a cluster name"):
        ServerOptions.from_query({"cluster": "a b"}).check()


def test_the_password_stays_out_of_reprs() -> None:
    endpoint = Endpoint("h", 8123, "u", "hunter2", "db")
    assert "hunter2" not in repr(endpoint) and endpoint.label == "http://u@h:8123/db"


@pytest.mark.parametrize(
    ("sql", "repeatable"),
    [
        ("SELECT 1", True),
        ("-- a comment\nWITH x AS (SELECT 1) SELECT * FROM x", True),
        ("CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = Memory", True),
        ("CREATE TABLE t (a UInt8) ENGINE = Memory", False),
        ("DROP TABLE IF EXISTS t", True),
        ("DROP TABLE t", False),
        ("ALTER TABLE usage_rollup REPLACE PARTITION 20261102 FROM s", True),
        ("ALTER TABLE usage_rollup DROP PARTITION {p:UInt32}", True),
        ("ALTER TABLE t DELETE WHERE 1", False),
        ("INSERT INTO t SELECT 1", False),
        ("TRUNCATE TABLE t", True),
    ],
)
def test_which_statements_may_be_repeated(sql: str, repeatable: bool) -> None:
    assert is_repeatable(sql) is repeatable


def test_failures_are_classified_by_whether_the_statement_ran() -> None:
    assert classify(DatabaseError("x", code=202)).kind == "not_executed"
    assert classify(DatabaseError("x", code=999)).kind == "unknown"
    assert classify(DatabaseError("Code: 60. Unknown table", code=60)).kind == "permanent"
    timed_out = classify(DatabaseError("x", code=159))
    assert (timed_out.kind, timed_out.timeout) == ("permanent", True)
    refused = OperationalError("boom")
    refused.__cause__ = ConnectionRefusedError()
    assert (classify(refused).kind, classify(refused).unreachable) == ("not_executed", True)
    reset = OperationalError("boom")
    reset.__cause__ = ConnectionResetError()
    assert classify(reset).kind == "unknown"


class FailingClient:
    """A client whose statements fail with one ClickHouse error code, counting the sends."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.sent: list[str] = []

    def command(self, sql: str, **_: object) -> None:
        self.sent.append(sql)
        raise DatabaseError(f"Code: {self.code}. injected", code=self.code)

    def close(self) -> None:
        pass


AT = "ClickHouse at http://u@h:8123/db"


@pytest.mark.parametrize(
    ("code", "sql", "sends", "error"),
    [
        # Not run by the server: sent again whatever it is, then reported as unavailable.
        (
            202,
            "INSERT INTO t SELECT 1",
            4,
            f"WarehouseUnavailable: {AT} failed the statement (after 4 attempts): Code: 202.",
        ),
        # Outcome unknown: sent again only when running it twice changes nothing.
        (
            999,
            "DROP TABLE IF EXISTS t",
            4,
            "WarehouseUnavailable: the connection to ClickHouse at http://u@h:8123/db failed"
            " during a statement (after 4 attempts): Code: 999.",
        ),
        (
            999,
            "INSERT INTO t SELECT 1",
            1,
            "WarehouseUnavailable: the connection to ClickHouse at http://u@h:8123/db failed"
            " during a statement: Code: 999.",
        ),
        # Refused for good: never sent again.
        (60, "DROP TABLE IF EXISTS t", 1, f"WarehouseError: {AT} failed the statement: Code: 60."),
    ],
)
def test_how_often_a_failing_statement_is_sent(
    code: int, sql: str, sends: int, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = FailingClient(code)
    options = ServerOptions(retries=3, retry_backoff_s=0.01)
    wh = ClickHouseWarehouse(
        lambda _database: client,
        endpoint=Endpoint("h", 8123, "u", "secret", "db"),
        options=options,
        source="url",
    )
    with pytest.raises(WarehouseError) as failed:
        wh.command(sql)
    assert client.sent == [sql] * sends
    assert f"{type(failed.value).__name__}: {failed.value}".startswith(error)
    assert str(failed.value).endswith(f"\n  in: {sql}") and "secret" not in str(failed.value)
    # Pauses double from retry_backoff_s; each retry is announced as a warning.
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert [r.args[3] for r in retries] == [0.01, 0.02, 0.04][: sends - 1]  # type: ignore[index]
    assert [r.args[4] for r in retries] == [2, 3, 4][: sends - 1]  # type: ignore[index]


def test_content_tokens_follow_the_content() -> None:
    a = pa.table({"x": [1, 2, 3]})
    assert content_token(a) == content_token(pa.table({"x": [1, 2, 3]}))
    assert content_token(a) != content_token(pa.table({"x": [1, 2, 4]}))


def test_a_new_database_is_created_and_statements_are_stateless(server: ChdbHttpServer) -> None:
    database = f"n_{uuid.uuid4().hex[:10]}"
    wh = connect(server.url(database))
    try:
        assert server.statements(rf"CREATE DATABASE IF NOT EXISTS {database}\b")
        wh.command("CREATE TABLE t (a UInt8) ENGINE = Memory")
        entries = server.statements(r"CREATE TABLE t ", database)
        assert entries and entries[-1].session_id is None
        assert entries[-1].settings["max_execution_time"] == "300"
    finally:
        wh.command(f"DROP DATABASE {database}")
        wh.close()


def test_a_session_on_request(
    server: ChdbHttpServer, server_warehouse: ClickHouseWarehouse
) -> None:
    wh = connect(server.url(server_warehouse.database, session="1"))
    try:
        wh.query_rows("SELECT 1 AS first_in_session")
        wh.query_rows("SELECT 2 AS second_in_session")
        ids = {
            e.session_id for e in server.statements(r"AS \w+_in_session", server_warehouse.database)
        }
        assert len(ids) == 1 and None not in ids
    finally:
        wh.close()


def test_a_read_only_user_reads_and_is_refused_writes_clearly(
    server: ChdbHttpServer, server_warehouse: ClickHouseWarehouse
) -> None:
    server.users["auditor"] = User(password="look", readonly=2)
    try:
        wh = connect(
            server.url(server_warehouse.database, user="auditor", password="look", retries="0")
        )
        try:
            assert wh.query_rows("SELECT count() FROM usage_events") == [(0,)]
            with pytest.raises(WarehouseError, match="user 'auditor' may not write here"):
                wh.command("INSERT INTO ingest_log (ingest_id) VALUES ('x')")
        finally:
            wh.close()
        with pytest.raises(WarehouseError, match="may not write"):
            connect(
                server.url(
                    f"missing_{uuid.uuid4().hex[:6]}", user="auditor", password="look", retries="0"
                )
            )
    finally:
        del server.users["auditor"]


def test_cluster_mode_creates_the_database_on_the_cluster(server: ChdbHttpServer) -> None:
    database = f"c_{uuid.uuid4().hex[:10]}"
    with pytest.raises(WarehouseError, match=r"ON CLUSTER|cluster"):
        connect(server.url(database, cluster="billing", retries="0"))
    assert server.statements(rf"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER billing")


def test_settings_are_checked_as_the_embedded_backend_checks_them(
    server_warehouse: ClickHouseWarehouse,
) -> None:
    with pytest.raises(ValueError, match="insert-deduplication token"):
        server_warehouse.command("SELECT 1", settings={"insert_deduplication_token": "x' OR 1"})
    with pytest.raises(ValueError, match="identifier"):
        server_warehouse.command("SELECT 1", settings={"max threads": 1})


TYPES = """
CREATE TABLE typed
(
    s String, lc LowCardinality(String), ns Nullable(String), u UInt64, i Int32,
    d Decimal(38, 9), dd Decimal(76, 9), ts DateTime64(3, 'UTC'), t DateTime('UTC'), day Date,
    m Map(LowCardinality(String), String), a Array(String), tup Tuple(DateTime64(3, 'UTC'), String),
    b Bool, f Float64
)
ENGINE = MergeTree ORDER BY u
"""


def test_both_backends_return_identical_results(server: ChdbHttpServer, chdb_folder: Path) -> None:
    """The same database read through chDB directly and through the server: the same
    Arrow tables, types included."""
    database = f"i_{uuid.uuid4().hex[:10]}"
    server_wh = connect(server.url(database))
    embedded = connect(f"chdb://{chdb_folder}", database=database)
    try:
        server_wh.command(TYPES)
        server_wh.command(
            "INSERT INTO typed VALUES ('a\\tb', 'x', NULL, 18446744073709551615, -7, 1.000000001, "
            "123456789012345678901234567890.123456789, '2026-10-01 12:00:00.123', "
            "'2026-10-01 12:00:00', '2026-10-01', {'k': 'v', 'a': 'b'}, ['x', 'y'], "
            "('2026-10-01 00:00:00.001', 'e1'), true, 0.1), "
            "('', '', 'n', 0, 0, 0, 0, '1970-01-01 00:00:00', '1970-01-01 00:00:00', '1970-01-01', "
            "{}, [], ('1970-01-01 00:00:00', ''), false, -0.0)"
        )
        queries = [
            ("SELECT * FROM typed ORDER BY u", {}),
            ("SELECT * FROM typed WHERE u > {n:UInt64} ORDER BY u", {"n": 5}),
            (
                "SELECT s, {at:DateTime64(3, 'UTC')} AS at, {m:Map(String, Array(String))} AS m, "
                "{d:Decimal(38, 9)} AS d, {flag:Bool} AS flag FROM typed ORDER BY u",
                {
                    "at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
                    "m": {"a": ["b", "c'"]},
                    "d": Decimal("-1.5"),
                    "flag": True,
                },
            ),
            ("SELECT * FROM typed WHERE 0", {}),
        ]
        for sql, params in queries:
            via_server = server_wh.query_arrow(sql, params)
            via_chdb = embedded.query_arrow(sql, params)
            assert via_server.schema == via_chdb.schema, sql
            assert via_server.equals(via_chdb), sql
            assert server_wh.query_rows(sql, params) == embedded.query_rows(sql, params)
        row = server_wh.query_rows("SELECT u, d, ts FROM typed ORDER BY u DESC LIMIT 1")[0]
        assert row[0] == 2**64 - 1 and row[1] == Decimal("1.000000001")
        assert row[2] == datetime(2026, 10, 1, 12, 0, 0, 123000, tzinfo=UTC)
    finally:
        embedded.close()
        server_wh.command(f"DROP DATABASE IF EXISTS {database}")
        server_wh.close()
