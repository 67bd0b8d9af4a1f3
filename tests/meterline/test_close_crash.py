"""Invariant 5 under real crashes: a billing close killed (SIGKILL) between posting and
finalizing, or after it committed and before it returned, is repaired by running it
again: the ledger then equals that of an uninterrupted close (same invoices, lines,
totals, outbox events; nothing twice), and the invoices finalized before it are
unchanged. SQLite and PostgreSQL.

Where the close stands when killed (meterline/jobs/close.py): a close is one ledger
transaction, so `close.after_post` (posted, not finalized) leaves nothing committed;
`close.after_finalize` leaves the whole close committed. Each close is the real command,
`python -m meterline.cli close --as-of ...`, in a subprocess with METERLINE_CRASH_AT
(meters/crashpoints.py). The warehouse is read through the ClickHouse HTTP test server
(tests/support/chdb_http.py) serving from this process, so the setup runs in-process and
only the closes run in subprocesses; a close only reads the warehouse, the ledger is
what a kill can break."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from billing.db import create_ledger_engine, session_factory
from billing.models import OutboxEvent, RatingRun
from meters.crashpoints import ENV
from tests.billing.conftest import ledger_url  # noqa: F401  (SQLite, and PostgreSQL when set)
from tests.conftest import fresh_warehouse
from tests.scenarios.harness import Sub, World, comparable, event, resolutions, utc
from tests.scenarios.ledgers import load
from tests.support.chdb_http import ChdbHttpServer

CUSTOMERS = [
    Sub("c_usd", "basic", start="2026-09-01"),
    Sub("c_eur", "basic", start="2026-09-01", currency="EUR", timezone="Europe/Berlin"),
    Sub("c_chan", "by_channel", start="2026-09-01", timezone="America/New_York"),
]
FIRST_CLOSE = utc("2026-11-05 00:00")  # October's periods (the grace period is 72 hours)
SECOND_CLOSE = utc("2026-12-05 00:00")  # November's, and October's late usage


@pytest.fixture
def worlds(
    clickhouse_server: ChdbHttpServer,
    chdb_folder: Path,
    tmp_path: Path,
    ledger_url: str,  # noqa: F811
) -> Iterator[tuple[World, World]]:
    """Two ledgers over one warehouse database: the one the killed close runs on (the
    running variant), and a reference (SQLite) that closes uninterrupted."""
    with fresh_warehouse(chdb_folder, backend="clickhouse") as wh:
        world = World(wh, chdb_folder, tmp_path / "world")
        world.config = world.config.model_copy(update={"ledger_url": ledger_url})
        load(world, CUSTOMERS)
        reference = World(wh, chdb_folder, tmp_path / "reference")
        load(reference, CUSTOMERS)
        yield world, reference


def usage(world: World) -> None:
    """October's usage, closed; then October's late usage and November's, rolled up."""
    october = [
        event("s-1", "c_usd", "seats", "2026-10-20 09:00", value=3),
        *resolutions("c_usd", "u-", 120, "2026-10-20 10:00", channel="chat"),
        *resolutions("c_eur", "e-", 30, "2026-10-20 12:00", channel="email"),
        *resolutions("c_chan", "c-", 7, "2026-10-20 15:00", channel="phone"),
        *resolutions("c_chan", "d-", 5, "2026-10-20 16:00", channel="chat"),
    ]
    world.deliver(october)
    world.nightly(date(2026, 10, 20))
    late = "2026-11-10 00:30"  # ingested after October was finalized
    world.deliver(
        [
            *resolutions("c_usd", "ul-", 15, "2026-10-20 10:00", channel="chat", ingested_at=late),
            *resolutions("c_chan", "cl-", 2, "2026-10-20 17:00", channel="phone", ingested_at=late),
            *resolutions("c_usd", "n-", 40, "2026-11-09 10:00", channel="chat"),
            *resolutions("c_eur", "en-", 4, "2026-11-09 11:00", channel="chat"),
            *resolutions("c_chan", "cn-", 3, "2026-11-09 12:00", channel="email"),
        ]
    )


def close_cli(world: World, as_of: str, crash: str | None = None) -> tuple[int, dict[str, Any]]:
    """`meterline close --as-of AS_OF --json` in a subprocess: (exit code, its report)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env["METERLINE_WAREHOUSE_URL"] = world.config.warehouse_url
    env["METERLINE_LEDGER_URL"] = world.config.ledger_url
    if crash:
        env[ENV] = crash
    done = subprocess.run(
        [sys.executable, "-m", "meterline.cli", "close", "--as-of", as_of, "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=world.tmp,
        timeout=120,
    )
    if done.returncode == -signal.SIGKILL:
        return done.returncode, {}
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def outbox(world: World) -> list[tuple[Any, ...]]:
    """The outbox events, oldest first: (kind, invoice id, idempotency key, the payload
    without the ledger's ids: what another ledger of the same content holds too)."""
    engine = create_ledger_engine(world.config.ledger_url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(
                    OutboxEvent.kind,
                    OutboxEvent.invoice_id,
                    OutboxEvent.idempotency_key,
                    OutboxEvent.payload,
                ).order_by(OutboxEvent.id)
            ).all()
    finally:
        engine.dispose()
    out = []
    for kind, invoice_id, key, payload in rows:
        doc = {k: v for k, v in payload.items() if k not in ("invoice_id", "reissue_of")}
        doc["lines"] = [
            {k: v for k, v in line.items() if k not in ("line_id", "adjusts_line_id")}
            for line in payload["lines"]
        ]
        out.append((kind, invoice_id, key, json.dumps(doc, sort_keys=True)))
    return out


def rating_runs(world: World) -> int:
    engine = create_ledger_engine(world.config.ledger_url)
    try:
        with session_factory(engine)() as session:
            return len(session.scalars(select(RatingRun.id)).all())
    finally:
        engine.dispose()


def without_ids(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(kind, doc) for kind, _, _, doc in events]


def counted(report: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (
        report["periods_closed"],
        report["lines_created"],
        report["invoices_finalized"],
        report["periods_checked_for_late_usage"],
        report["adjustment_lines"],
    )


def test_a_killed_close_run_again_gives_the_uninterrupted_ledger(
    worlds: tuple[World, World],
) -> None:
    """Killed at close.after_post; the retry is killed at close.after_finalize; the next
    retry runs through. Each run is the retry of the one before."""
    world, reference = worlds
    usage(world)
    for w in (world, reference):
        first = w.close(FIRST_CLOSE)
        assert first.ok and len(first.invoices_finalized) == 6, first
    world.nightly(date(2026, 11, 9))  # ingests the late and November's usage, rolls up
    before, runs = world.invoices(), rating_runs(world)
    expected = reference.close(SECOND_CLOSE)
    assert expected.ok and expected.adjustment_lines == 2, expected
    as_of = SECOND_CLOSE.isoformat()

    code, _ = close_cli(world, as_of, crash="close.after_post")
    assert code == -signal.SIGKILL
    # One transaction: nothing of the killed close stays (not even its rating run).
    assert world.invoices() == before and len(outbox(world)) == 6
    assert rating_runs(world) == runs

    code, _ = close_cli(world, as_of, crash="close.after_finalize")
    assert code == -signal.SIGKILL
    # Committed before the kill: the whole close stays, as the uninterrupted one left it.
    assert comparable(world.invoices()) == comparable(reference.invoices())
    assert rating_runs(world) == runs + 1

    code, again = close_cli(world, as_of)
    assert code == 0 and again["ok"], again
    # Closed already: nothing new posted, finalized or adjusted.
    assert counted(again) == (0, 0, 0, 0, 0), again

    invoices = world.invoices()
    assert comparable(invoices) == comparable(reference.invoices())
    # The invoices finalized before the close are exactly as they were.
    by_id = {i["id"]: i for i in invoices}
    assert [by_id[i["id"]] for i in before] == before
    # Nothing twice: one live invoice per subscription and period, each line key once.
    periods = Counter((i["customer"], i["period_start"]) for i in invoices if i["status"] != "void")
    assert set(periods.values()) == {1}
    keys = Counter(ln["idempotency_key"] for i in invoices for ln in i["lines"])
    assert set(keys.values()) == {1}
    assert [i["status"] for i in invoices].count("finalized") == 9
    # The outbox: the same events as the uninterrupted close, each once.
    events = outbox(world)
    assert without_ids(events) == without_ids(outbox(reference))
    assert len({(kind, invoice) for kind, invoice, _, _ in events}) == len(events) == 9 + 2
    assert len({key for _, _, key, _ in events}) == len(events)
