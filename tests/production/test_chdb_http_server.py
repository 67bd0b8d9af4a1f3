"""The test server speaks the part of ClickHouse's HTTP interface that clickhouse-connect
uses, on chDB: checked with clickhouse-connect itself and with raw HTTP requests."""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import clickhouse_connect
import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.support.chdb_http import ChdbHttpServer, User


@pytest.fixture
def database(server: ChdbHttpServer) -> Iterator[str]:
    name = f"s_{uuid.uuid4().hex[:12]}"
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=server.port, autogenerate_session_id=False
    )
    client.command(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name}")
        client.close()


def client_for(server: ChdbHttpServer, database: str, **kwargs: Any) -> Any:
    kwargs.setdefault("autogenerate_session_id", False)
    return clickhouse_connect.get_client(
        host="127.0.0.1", port=server.port, database=database, **kwargs
    )


def http(
    server: ChdbHttpServer,
    query: str = "",
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/{query}", data=body, headers=headers or {}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_ping_and_root(server: ChdbHttpServer) -> None:
    assert http(server, "ping")[2] == b"Ok.\n"
    assert http(server, "")[2] == b"Ok.\n"


def test_connect_reads_version_timezone_and_settings(server: ChdbHttpServer, database: str) -> None:
    client = client_for(server, database)
    assert client.server_version.startswith("26.")
    assert "max_execution_time" in client.server_settings
    assert client.command("SELECT 41 + 1") == 42


def test_bound_parameters_and_formats(server: ChdbHttpServer, database: str) -> None:
    client = client_for(server, database)
    at = datetime(2026, 10, 1, 12, 30, 15, 123000, tzinfo=UTC)
    params = {
        "s": "it's a \\ tab\there",
        "n": 7,
        "d": Decimal("1.5"),
        "at": at,
        "arr": ["a", "b'c"],
    }
    sql = (
        "SELECT {s:String} AS s, {n:UInt8} AS n, {d:Decimal(9, 2)} AS d, "
        "{at:DateTime64(3, 'UTC')} AS at, {arr:Array(String)} AS arr"
    )
    native = client.query(sql, parameters=params)  # Native format
    row = native.result_rows[0]
    assert (
        row[0] == params["s"]
        and row[1] == 7
        and row[2] == Decimal("1.50")
        and row[4] == ["a", "b'c"]
    )
    assert row[3].replace(tzinfo=UTC) == at
    arrow = client.query_arrow(sql, parameters=params)  # Arrow format
    assert arrow.column("s").to_pylist() == [params["s"]]
    assert client.raw_query("SELECT 1 AS x, 'y' AS y", fmt="JSONEachRow") == b'{"x":1,"y":"y"}\n'


def test_native_insert_with_chunked_compressed_body(server: ChdbHttpServer, database: str) -> None:
    client = client_for(server, database, compress="lz4")
    client.command(
        "CREATE TABLE t (id UInt32, name String, at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY id"
    )
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [(i, f"n{i}", at) for i in range(5000)]
    client.insert("t", rows, column_names=["id", "name", "at"])  # Native, generator body: chunked
    assert client.command("SELECT count(), sum(id) FROM t") == ["5000", str(sum(range(5000)))]
    sent = server.statements(r"INSERT INTO .*t.* FORMAT Native")[-1]
    assert (sent.chunked, sent.encoding) == (True, "lz4")
    zstd_client = client_for(server, database, compress="zstd")
    zstd_client.insert("t", [(9999, "z", at)], column_names=["id", "name", "at"])
    assert server.statements(r"INSERT INTO .*t.* FORMAT Native")[-1].encoding == "zstd"
    assert zstd_client.command("SELECT name FROM t WHERE id = 9999") == "z"


def test_arrow_insert_and_compressed_answers(server: ChdbHttpServer, database: str) -> None:
    client = client_for(server, database, compress=True)
    client.command("CREATE TABLE a (k String, v Nullable(Int64)) ENGINE = Memory")
    client.insert_arrow("a", pa.table({"k": ["x", "y"], "v": pa.array([1, None], pa.int64())}))
    assert client.query_arrow("SELECT k, v FROM a ORDER BY k").to_pylist() == [
        {"k": "x", "v": 1},
        {"k": "y", "v": None},
    ]
    entry = server.statements(r"SELECT k, v FROM a")[-1]
    assert entry.status == 200


def test_query_split_between_parameter_and_body(server: ChdbHttpServer, database: str) -> None:
    status, _, _ = http(
        server,
        f"?database={database}&query=CREATE%20TABLE%20b%20(x%20UInt8)%20ENGINE%3DMemory",
        body=b"",
        method="POST",
    )
    assert status == 200
    status, _, _ = http(
        server,
        f"?database={database}&query=INSERT%20INTO%20b%20FORMAT%20TabSeparated",
        body=b"1\n2\n3\n",
    )
    assert status == 200
    status, headers, body = http(server, f"?database={database}", body=b"SELECT sum(x) FROM b")
    assert (status, body, headers["X-ClickHouse-Format"]) == (200, b"6\n", "TabSeparated")


def test_errors_carry_code_name_and_http_status(server: ChdbHttpServer, database: str) -> None:
    status, headers, body = http(
        server, f"?database={database}", body=b"SELECT * FROM missing_table"
    )
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception:") and b"(UNKNOWN_TABLE)" in body
    status, headers, _ = http(server, f"?database={database}", body=b"SELEC 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")
    status, headers, _ = http(server, "?database=no_such_db", body=b"SELECT 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "81")
    client = client_for(server, database)
    with pytest.raises(DatabaseError) as raised:
        client.command("SELECT throwIf(1, 'boom')")
    assert raised.value.code == 395


def test_settings_apply_to_one_statement_and_are_reset(
    server: ChdbHttpServer, database: str
) -> None:
    status, _, body = http(
        server,
        f"?database={database}&max_threads=3",
        body=b"SELECT value FROM system.settings WHERE name = 'max_threads'",
    )
    assert (status, body) == (200, b"3\n")
    _, _, body = http(
        server,
        f"?database={database}",
        body=b"SELECT changed FROM system.settings WHERE name = 'max_threads'",
    )
    assert body == b"0\n"
    status, headers, _ = http(server, f"?database={database}&no_such_setting=1", body=b"SELECT 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "115")


def test_sessions_keep_settings_and_refuse_concurrent_use(
    server: ChdbHttpServer, database: str
) -> None:
    sid = uuid.uuid4().hex
    assert (
        http(server, f"?database={database}&session_id={sid}", body=b"SET max_threads = 5")[0]
        == 200
    )
    _, _, body = http(
        server,
        f"?database={database}&session_id={sid}",
        body=b"SELECT value FROM system.settings WHERE name = 'max_threads'",
    )
    assert body == b"5\n"
    status, headers, _ = http(
        server, f"?database={database}&session_id=nope&session_check=1", body=b"SELECT 1"
    )
    assert headers.get("X-ClickHouse-Exception-Code") == "372"

    delayed = server.inject("delay", r"SELECT 'slow'", delay_s=1.0)
    results: list[tuple[int, dict[str, str], bytes]] = []
    slow = threading.Thread(
        target=lambda: results.append(
            http(server, f"?database={database}&session_id={sid}", body=b"SELECT 'slow'")
        )
    )
    slow.start()
    deadline = time.monotonic() + 10
    while not delayed.hits and time.monotonic() < deadline:  # it holds the session now
        time.sleep(0.01)
    status, headers, _ = http(server, f"?database={database}&session_id={sid}", body=b"SELECT 1")
    slow.join()
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "373")
    assert results[0][2] == b"slow\n"


def test_users_passwords_and_read_only(server: ChdbHttpServer, database: str) -> None:
    server.users["writer"] = User(password="s3cret")
    server.users["auditor"] = User(password="look", readonly=2)
    try:
        status, headers, _ = http(server, "?user=writer&password=wrong", body=b"SELECT 1")
        assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")
        basic = base64.b64encode(b"writer:s3cret").decode()
        assert (
            http(server, "", body=b"SELECT 1", headers={"Authorization": f"Basic {basic}"})[0]
            == 200
        )
        header_auth = {"X-ClickHouse-User": "auditor", "X-ClickHouse-Key": "look"}
        assert (
            http(server, f"?database={database}", body=b"SELECT 1", headers=header_auth)[2]
            == b"1\n"
        )
        status, headers, _ = http(
            server,
            f"?database={database}",
            body=b"CREATE TABLE x (a UInt8) ENGINE = Memory",
            headers=header_auth,
        )
        assert headers["X-ClickHouse-Exception-Code"] == "164"
        # GET requests are read-only, as in ClickHouse.
        status, headers, _ = http(
            server, f"?database={database}&query=CREATE%20TABLE%20y%20(a%20UInt8)%20ENGINE%3DMemory"
        )
        assert headers["X-ClickHouse-Exception-Code"] == "164"
    finally:
        del server.users["writer"], server.users["auditor"]


def test_long_parameters_go_as_a_multipart_form(server: ChdbHttpServer, database: str) -> None:
    client = client_for(server, database)
    long_list = [f"customer-{i:05d}" for i in range(600)]  # well past the URL budget
    assert (
        client.command("SELECT length({ids:Array(String)})", parameters={"ids": long_list}) == 600
    )


def test_a_native_insert_dropped_mid_body_inserts_nothing(
    server: ChdbHttpServer, database: str
) -> None:
    """The chunked body is cut half way: nothing of it lands. (clickhouse-connect resends a
    Native insert by itself after a remote close; the table holds one copy.)"""
    client = client_for(server, database, compress="lz4")
    client.command("CREATE TABLE n (id UInt32) ENGINE = MergeTree ORDER BY id")
    dropped = server.inject("drop_mid_body", chunked_only=True)  # the INSERT is in the body
    client.insert("n", [(i,) for i in range(1000)], column_names=["id"])
    assert dropped.hits == 1
    cut = [e for e in server.statements(r"", database) if e.fault == "drop_mid_body"]
    assert len(cut) == 1 and cut[0].chunked
    assert len(server.statements(r"INSERT INTO `?n`? .*FORMAT Native", database)) == 1
    assert client.command("SELECT count() FROM n") == 1000
