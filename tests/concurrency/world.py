"""The small billing world the concurrency tests race over, and what they check.

Six customers (plans with seats, graduated and per-channel resolutions, unique users and
a minimum commitment; USD and EUR; anchors 1, 15, 30 and 31; UTC, Berlin, New York and
Tokyo), usage on a few days of October and November 2026, and late usage of November
delivered after November was finalized. The events are fixed (a seeded generator), so a
single run of the pipeline on a ledger of its own is the reference every concurrent run
is compared with (`tests.scenarios.harness.comparable`: everything but ids)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select

import billing
from billing.db import create_ledger_engine, session_factory
from billing.migrate import upgrade
from billing.models import Invoice, InvoiceLine, OutboxEvent
from billing.views import invoice_detail, list_invoices
from meterline.jobs.rollup import rollup_day
from meterline.settings import Settings
from tests.scenarios.harness import CATALOG, Sub, World, comparable, event, utc

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]

CUSTOMERS = [
    Sub("k1", "basic", start="2026-10-15"),
    Sub("k2", "basic", start="2026-10-15", currency="EUR", timezone="Europe/Berlin"),
    Sub("k3", "by_channel", start="2026-10-15", anchor=15, timezone="America/New_York"),
    Sub("k4", "committed", start="2026-10-15", anchor=31, timezone="Asia/Tokyo"),
    Sub("k5", "active_users", start="2026-11-01"),
    Sub("k6", "basic", start="2026-11-01", anchor=30),
]

# The UTC days that carry usage (every other day has none and is never rolled up).
USAGE_DAYS = [date(2026, 10, 20), date(2026, 11, 3), date(2026, 11, 12), date(2026, 11, 25)]
DELIVERY = utc("2026-11-26 00:30")
CLOSE_AT = utc("2026-12-05 00:00")
# November's late usage arrives after CLOSE_AT finalized November; the next close adjusts.
LATE_AT = utc("2026-12-06 00:30")
LATE_CLOSE_AT = utc("2026-12-07 00:00")
CHANNELS = ("chat", "email", "phone")


def usage_events(seed: int = 14) -> list[dict[str, Any]]:
    """Seat readings at each start, then resolutions and active users on USAGE_DAYS,
    all in the delivery of November 26."""
    rng = random.Random(seed)
    out = []
    for sub in CUSTOMERS:
        if sub.plan in ("basic", "committed"):
            cid = sub.customer_id
            start = datetime.fromisoformat(sub.start).replace(tzinfo=UTC)
            out.append(event(f"{cid}-s0", cid, "seats", start, value=3))
            out.append(event(f"{cid}-s1", cid, "seats", utc("2026-11-12 06:00"), value=5))
    for d in USAGE_DAYS:
        for sub in CUSTOMERS:
            if d < date.fromisoformat(sub.start):
                continue
            cid = sub.customer_id
            for i in range(rng.randint(20, 60)):
                at = datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(
                    minutes=rng.randrange(24 * 60)
                )
                if sub.plan == "active_users":
                    out.append(
                        event(f"{cid}-{d}-{i}", cid, "active_user", at, user_id=f"u{i % 17}")
                    )
                else:
                    channel = rng.choice(CHANNELS)
                    out.append(event(f"{cid}-{d}-{i}", cid, "resolution", at, channel=channel))
    for doc in out:
        doc["ingested_at"] = DELIVERY
    return out


def late_events() -> list[dict[str, Any]]:
    """Usage of November 25 (and of k3's Nov 12) delivered on December 6."""
    out = []
    for n, sub in enumerate(CUSTOMERS):
        cid = sub.customer_id
        meter = "active_user" if sub.plan == "active_users" else "resolution"
        for i in range(5 + n):
            props = {"user_id": f"late{i}"} if meter == "active_user" else {"channel": "chat"}
            at = "2026-11-12 20:00" if cid == "k3" else "2026-11-25 21:00"
            out.append(
                event(
                    f"{cid}-late-{i}",
                    cid,
                    meter,
                    utc(at) + timedelta(minutes=i),
                    ingested_at=LATE_AT,
                    **props,
                )
            )
    return out


def with_ledger(world: World, ledger_url: str) -> World:
    """The world on the ledger at `ledger_url` (loaded with the catalog and customers)."""
    world.config = world.config.model_copy(update={"ledger_url": ledger_url})
    world.load_customers(CUSTOMERS)
    return world


def prepare(world: World) -> None:
    """The delivery ingested, every day with usage rolled up (the late delivery waits)."""
    world.deliver(usage_events())
    world.deliver(late_events())
    world.ingest_until(DELIVERY)
    for d in sorted({datetime.fromisoformat(e["timestamp"]).date() for e in usage_events()}):
        rollup_day(d, config=world.config, late=False)


def roll_up_late(world: World) -> None:
    """The late delivery ingested, and its days rebuilt (the nightly run of Dec 6)."""
    world.ingest_until(LATE_AT)
    world.rollup(date(2026, 12, 5))


def load_ledger(url: str, tmp: Path) -> None:
    """The catalog, then the customers, into the (migrated) ledger at `url`."""
    upgrade(url)
    path = tmp / "customers.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(c.row()) + "\n" for c in CUSTOMERS))
    engine = create_ledger_engine(url)
    try:
        with session_factory(engine).begin() as session:
            billing.load_catalog(session, CATALOG)
            billing.load_customers_file(session, path)
    finally:
        engine.dispose()


def race(*calls: Callable[[], T], timeout: float = 120) -> list[T]:
    """Run each call in a thread of its own, all released at once (a barrier); their
    results in order. Any exception of a call is raised here, after all have ended."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, call: Callable[[], T]) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[i] = call()
        except BaseException as exc:  # raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a racing call did not end"
    if errors:
        raise errors[0]
    return results


def invoices(url: str) -> list[dict[str, Any]]:
    """Every invoice of the ledger at `url` with its lines (billing.views)."""
    engine = create_ledger_engine(url)
    try:
        with session_factory(engine)() as session:
            return [invoice_detail(session, s["id"]) for s in list_invoices(session)]
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Books:
    """What a ledger holds, for the checks every concurrency test makes."""

    invoices: int
    live_per_period: Counter[tuple[int, datetime]]
    line_keys: Counter[tuple[int, str]]
    totals: dict[tuple[str, str], int]  # (currency, status) -> sum of total_minor
    events: Counter[str]  # outbox idempotency keys

    def duplicates(self) -> list[Any]:
        """(subscription, period) with more than one live invoice, line keys posted twice
        on one invoice, outbox events written twice: each must be empty."""
        return [
            *(k for k, n in self.live_per_period.items() if n > 1),
            *(k for k, n in self.line_keys.items() if n > 1),
            *(k for k, n in self.events.items() if n > 1),
        ]


def books(config: Settings | str) -> Books:
    url = config if isinstance(config, str) else config.ledger_url
    engine = create_ledger_engine(url)
    try:
        with session_factory(engine)() as session:
            invoices = session.execute(
                select(Invoice.subscription_id, Invoice.period_start, Invoice.status)
            ).all()
            keys = session.execute(select(InvoiceLine.invoice_id, InvoiceLine.idempotency_key))
            totals = session.execute(
                select(Invoice.currency, Invoice.status, func.sum(Invoice.total_minor)).group_by(
                    Invoice.currency, Invoice.status
                )
            )
            return Books(
                invoices=len(invoices),
                live_per_period=Counter((s, p) for s, p, st in invoices if st != "void"),
                line_keys=Counter((i, k) for i, k in keys),
                totals={(c, st): int(n) for c, st, n in totals},
                events=Counter(session.scalars(select(OutboxEvent.idempotency_key))),
            )
    finally:
        engine.dispose()


def same_ledger(world: World, expected: Sequence[tuple[Any, ...]]) -> None:
    """The world's ledger holds exactly the reference's invoices, lines and totals, and
    nothing twice."""
    held = books(world.config)
    assert held.duplicates() == []
    assert comparable(world.invoices()) == list(expected)


def prepare_with_reference(warehouse_url: str, reference_url: str, tmp: Path) -> dict[str, Any]:
    """`prepare` the warehouse at `warehouse_url`, then close CLOSE_AT once on the ledger at
    `reference_url` (loaded here): the single run a concurrent close is compared with.
    Its report (`CloseReport.to_json`). In a process of its own for an embedded folder
    (chDB opens one folder per process, and this one holds the test session's)."""
    load_ledger(reference_url, tmp / "reference")
    if not warehouse_url.startswith("chdb://"):
        return _prepare_here(warehouse_url, reference_url, tmp)
    script = (
        "import json, sys; from pathlib import Path; from tests.concurrency.world import"
        " _prepare_here; print(json.dumps(_prepare_here(*sys.argv[1:3], Path(sys.argv[3]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, warehouse_url, reference_url, str(tmp)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


def _prepare_here(warehouse_url: str, reference_url: str, tmp: Path) -> dict[str, Any]:
    from meterline.jobs.close import close_periods
    from meters.migrations import migrate
    from meters.warehouse import connect

    warehouse = connect(warehouse_url)
    try:
        migrate(warehouse)
        world = World(warehouse, tmp, tmp / "prepare")
        world.config = world.config.model_copy(update={"warehouse_url": warehouse_url})
        prepare(world)
        reference = world.config.model_copy(update={"ledger_url": reference_url})
        return close_periods(CLOSE_AT, config=reference).to_json()
    finally:
        warehouse.close()
