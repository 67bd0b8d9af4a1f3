"""Faults between meterline and a ClickHouse server: dropped connections, 500s and
timeouts, injected by the test server. Each case must end with every row counted once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from meters.catalog import MeterCatalog
from meters.ingest.ingestor import ingest_events
from meters.rollup import dirty_days, rebuild_day
from meters.warehouse import connect
from meters.warehouse.base import WarehouseError
from meters.warehouse.clickhouse import ClickHouseWarehouse
from tests.support.chdb_http import ChdbHttpServer

DAY = date(2026, 11, 2)
NIGHT = datetime(2026, 11, 3, 0, 30, tzinfo=UTC)
LATER = datetime(2026, 11, 4, 0, 30, tzinfo=UTC)


def events(prefix: str, n: int, customer: str = "cus_1") -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{prefix}{i}",
            "customer_id": customer,
            "meter": "fin_resolution",
            "timestamp": f"{DAY.isoformat()}T{i % 24:02d}:{(i * 7) % 60:02d}:00Z",
            "properties": {"channel": ("chat", "email")[i % 2]},
        }
        for i in range(n)
    ]


def id_table(n: int) -> pa.Table:
    at = pa.array([datetime(2026, 11, 2, 10, tzinfo=UTC)] * n, pa.timestamp("ms", tz="UTC"))
    return pa.table(
        {
            "event_id": pa.array([f"x{i}" for i in range(n)]),
            "content_hash": pa.array(range(n), pa.uint64()),
            "timestamp": at,
            "ingested_at": at,
            "ingest_id": pa.array(["manual"] * n),
        }
    )


def count(wh: ClickHouseWarehouse, table: str) -> int:
    return int(wh.query_rows(f"SELECT count() FROM {table}")[0][0])


@pytest.mark.parametrize("fault", ["drop_mid_body", "drop_after_execute"])
@pytest.mark.parametrize("target", ["usage_event_ids", "memory_staging"])
def test_an_interrupted_insert_is_retried_and_lands_once(
    server: ChdbHttpServer, server_warehouse: ClickHouseWarehouse, fault: str, target: str
) -> None:
    """Mid-body: nothing ran, the retry inserts. After execution: the answer was lost, the
    retry is a no-op, by the insert-deduplication token (a MergeTree with a deduplication
    window) or by the row count (a Memory staging table, which deduplicates nothing)."""
    wh = server_warehouse
    if target == "memory_staging":
        wh.command("CREATE TABLE memory_staging AS usage_event_ids ENGINE = Memory")
    data = id_table(2500)
    injected = server.inject(fault, rf"INSERT INTO `?{target}\b")
    wh.insert_arrow(target, data)
    assert injected.hits == 1
    assert len(server.statements(rf"INSERT INTO `?{target}\b.*FORMAT Arrow", wh.database)) == (
        2 if fault == "drop_mid_body" or target == "usage_event_ids" else 1
    )
    assert count(wh, target) == 2500
    assert wh.query_rows(f"SELECT count(DISTINCT event_id) FROM {target}")[0][0] == 2500


def test_an_ingest_with_dropped_connections_counts_every_event_once(
    server: ChdbHttpServer, server_warehouse: ClickHouseWarehouse, catalog: MeterCatalog
) -> None:
    wh = server_warehouse
    batch = events("e", 40) + events("e", 5)  # 5 exact re-sends
    server.inject("drop_mid_body", r"INSERT INTO `?_ingest_\w+_staging")
    server.inject("drop_after_execute", r"^INSERT INTO usage_events\b")
    server.inject("error", r"^INSERT INTO usage_event_ids\b", code=999, name="KEEPER_EXCEPTION")
    total = ingest_events(wh, catalog, batch, ingested_at=NIGHT).total
    assert all(f.hits == 1 for f in server.faults)
    assert (total.received, total.accepted, total.duplicates, total.rejected) == (45, 40, 5, 0)
    assert count(wh, "usage_events") == 40 and count(wh, "usage_event_ids") == 40
    assert wh.query_rows("SELECT sum(received), sum(accepted) FROM ingest_log") == [(45, 40)]


def rollup_rows(wh: ClickHouseWarehouse) -> list[tuple[Any, ...]]:
    return wh.query_rows(
        "SELECT customer_id, toString(dimensions), events FROM usage_rollup ORDER BY ALL"
    )


@pytest.mark.parametrize(
    ("statement", "times"),
    [
        # The build's INSERT ... SELECT has no token: a 500 is reported at once.
        (r"INSERT INTO usage_rollup_staging_", 1),
        # REPLACE PARTITION may be repeated: the backend retries, so the 500 must persist.
        (r"ALTER TABLE usage_rollup REPLACE PARTITION", 10),
    ],
    ids=["during_the_build", "at_the_swap"],
)
def test_a_500_during_a_rollup_leaves_the_previous_rollup_and_the_retry_completes_it(
    server: ChdbHttpServer,
    server_warehouse: ClickHouseWarehouse,
    catalog: MeterCatalog,
    statement: str,
    times: int,
) -> None:
    wh = server_warehouse
    ingest_events(wh, catalog, events("a", 10), ingested_at=NIGHT)
    rebuild_day(wh, catalog, DAY)
    before = rollup_rows(wh)
    assert sum(r[2] for r in before) == 10

    ingest_events(wh, catalog, events("b", 6, customer="cus_2"), ingested_at=LATER)
    injected = server.inject("error", statement, times=times, code=999, name="KEEPER_EXCEPTION")
    with pytest.raises(WarehouseError, match="KEEPER_EXCEPTION"):
        rebuild_day(wh, catalog, DAY)
    assert injected.hits >= 1
    assert rollup_rows(wh) == before  # the old state of the day, whole
    assert dirty_days(wh, up_to=DAY) == [DAY]  # still to do

    server.clear_faults()
    result = rebuild_day(wh, catalog, DAY)  # the task's retry
    assert result.events == 16
    assert sum(r[2] for r in rollup_rows(wh)) == 16
    assert dirty_days(wh, up_to=DAY) == []
    assert wh.query_rows(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() "
        "AND name LIKE 'usage_rollup_staging_%'"
    ) == [(0,)]


def test_a_passing_500_at_the_swap_is_absorbed_by_a_retry(
    server: ChdbHttpServer, server_warehouse: ClickHouseWarehouse, catalog: MeterCatalog
) -> None:
    wh = server_warehouse
    ingest_events(wh, catalog, events("a", 10), ingested_at=NIGHT)
    injected = server.inject(
        "error", r"ALTER TABLE usage_rollup REPLACE PARTITION", code=999, name="KEEPER_EXCEPTION"
    )
    assert rebuild_day(wh, catalog, DAY).events == 10
    assert injected.hits == 1 and sum(r[2] for r in rollup_rows(wh)) == 10


def test_statements_refused_before_running_are_retried(
    server: ChdbHttpServer, server_warehouse: ClickHouseWarehouse
) -> None:
    """TOO_MANY_SIMULTANEOUS_QUERIES: the server did not start the statement, so even an
    insert without a token is sent again."""
    wh = server_warehouse
    wh.command("CREATE TABLE plain (a UInt8) ENGINE = MergeTree ORDER BY a")
    server.inject(
        "error",
        r"INSERT INTO plain",
        times=2,
        code=202,
        name="TOO_MANY_SIMULTANEOUS_QUERIES",
        status=500,
    )
    wh.command("INSERT INTO plain VALUES (1)")
    assert count(wh, "plain") == 1


def test_an_answer_lost_after_a_non_repeatable_statement_is_reported_not_repeated(
    server: ChdbHttpServer, server_warehouse: ClickHouseWarehouse
) -> None:
    wh = server_warehouse
    wh.command("CREATE TABLE plain (a UInt8) ENGINE = MergeTree ORDER BY a")
    server.inject("drop_after_execute", r"INSERT INTO plain")
    with pytest.raises(WarehouseError, match="Whether it took effect is unknown"):
        wh.command("INSERT INTO plain VALUES (1)")
    assert count(wh, "plain") == 1  # it ran once, and was not sent again


def test_a_read_delayed_past_the_timeout_is_retried(
    server: ChdbHttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    wh = connect(server.url("default", query_timeout="1", retry_backoff="0.01"))
    try:
        delayed = server.inject("delay", r"SELECT 'slow'", delay_s=3.0)
        assert wh.query_rows("SELECT 'slow'") == [("slow",)]
        assert delayed.hits == 1
        assert "query failed (no answer before the timeout); retrying" in caplog.text
    finally:
        wh.close()


def test_a_write_delayed_past_the_timeout_fails_with_a_clear_error(
    server: ChdbHttpServer, server_warehouse: ClickHouseWarehouse
) -> None:
    server_warehouse.command("CREATE TABLE plain (a UInt8) ENGINE = MergeTree ORDER BY a")
    wh = connect(server.url(server_warehouse.database, query_timeout="1", retry_backoff="0.01"))
    try:
        server.inject("delay", r"INSERT INTO plain", delay_s=3.0)
        with pytest.raises(WarehouseError, match=r"did not finish the statement within 1s"):
            wh.command("INSERT INTO plain VALUES (7)")
    finally:
        wh.close()


def test_an_unreachable_server_is_named_in_the_error() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        WarehouseError, match=rf"cannot reach ClickHouse at http://default@127.0.0.1:{port}/x"
    ):
        connect(f"clickhouse://127.0.0.1:{port}/x?retries=1&retry_backoff=0.01")
