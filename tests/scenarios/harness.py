"""End-to-end billing scenarios: data in, invoices out, compared with a hand computation.

A scenario is data: customers (rows of a customers.jsonl), usage events (each with the
`ingested_at` of its delivery), the UTC days to roll up, the `as_of` of the close, and
the invoices expected, line by line, worked out by hand in the test. `World` is one
scenario's pipeline: a warehouse database of its own (in the session's chDB folder), a
SQLite ledger of its own, and the Settings pointing at both and at
tests/scenarios/catalog.yaml. Every step is the function a DAG task calls
(`rollup_day`, `backfill`, `close_periods`) with `config=`.

The clock of a scenario is its data: a delivery is ingested with its `ingested_at`; the
nightly run for UTC day D happens at D+1 01:00 (after the 00:30 delivery of day D), so
it first ingests every delivery due by then, then rolls up D (and any earlier day the
deliveries made dirty); a close as of T first ingests what was delivered by T. A
delivery due later waits, so a test can tell "late before the close" from "late after
finalization" by its `ingested_at` alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import billing
from billing.db import create_ledger_engine, session_factory
from billing.migrate import upgrade
from billing.views import invoice_detail, list_invoices
from meterline.jobs.close import CloseReport, close_periods
from meterline.jobs.rollup import RollupReport, backfill, rollup_day
from meterline.settings import Settings, load_settings
from meters.catalog import MeterCatalog
from meters.ingest.ingestor import IngestSummary, ingest_events
from meters.warehouse.base import Warehouse

CATALOG = Path(__file__).resolve().with_name("catalog.yaml")
NIGHTLY_AT = time(1, 0)


def utc(text: str) -> datetime:
    """'2026-11-21 00:00' (or with seconds / milliseconds) as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def day(text: str) -> date:
    return date.fromisoformat(text)


def days(first: str, last: str) -> list[date]:
    """Every UTC day from `first` to `last`, both included."""
    start, end = day(first), day(last)
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def next_morning(at: datetime) -> datetime:
    """The nightly delivery carrying an event: 00:30 UTC the day after it happened."""
    return datetime.combine(at.astimezone(UTC).date() + timedelta(days=1), time(0, 30), tzinfo=UTC)


# --- scenario data ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sub:
    """One customer with one subscription: a row of customers.jsonl (docs/ledger.md)."""

    customer_id: str
    plan: str
    start: str
    currency: str = "USD"
    timezone: str = "UTC"
    anchor: int = 1
    end: str | None = None
    discounts: tuple[Mapping[str, str], ...] = ()

    @property
    def subscription_id(self) -> str:
        return f"sub_{self.customer_id}"

    def row(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "name": f"Customer {self.customer_id}",
            "currency": self.currency,
            "timezone": self.timezone,
            "subscription_id": self.subscription_id,
            "plan": self.plan,
            "billing_anchor_day": self.anchor,
            "start": self.start,
            "end": self.end,
            "discounts": [dict(d) for d in self.discounts],
        }


def event(
    event_id: str,
    customer: str,
    meter: str,
    at: datetime | str,
    *,
    ingested_at: datetime | str | None = None,
    value: int | str | None = None,
    **properties: str,
) -> dict[str, Any]:
    """An event for ingest_events, with the ingest time of the delivery carrying it:
    `ingested_at`, by default the nightly delivery (00:30 UTC the next day)."""
    at = utc(at) if isinstance(at, str) else at
    if ingested_at is None:
        ingested = next_morning(at)
    else:
        ingested = utc(ingested_at) if isinstance(ingested_at, str) else ingested_at
    doc: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": customer,
        "meter": meter,
        "timestamp": at.isoformat(),
        "ingested_at": ingested,
    }
    if value is not None:
        doc["value"] = str(value)
    if properties:
        doc["properties"] = dict(properties)
    return doc


def resolutions(
    customer: str, prefix: str, count: int, first: str, every_min: int = 1, **kw: Any
) -> list[dict[str, Any]]:
    """`count` resolution events from `first`, one every `every_min` minutes (`kw`: the
    channel, and `ingested_at` for a late delivery)."""
    start = utc(first)
    return [
        event(
            f"{prefix}{i}", customer, "resolution", start + timedelta(minutes=every_min * i), **kw
        )
        for i in range(count)
    ]


@dataclass(frozen=True)
class Line:
    """An expected invoice line; `group` is the price's filter ("channel=chat") or None."""

    price_id: str
    kind: str
    group: str | None
    quantity: Decimal | str | int
    amount: Decimal | str

    def key(self) -> tuple[str, str, str | None, Decimal, Decimal]:
        return (
            self.price_id,
            self.kind,
            self.group,
            Decimal(str(self.quantity)),
            Decimal(str(self.amount)),
        )


@dataclass(frozen=True)
class Invoice:
    """An expected invoice: the subscription's period starting on `period` (local date)."""

    customer: str
    period: str
    lines: Sequence[Line]
    total: Decimal | str
    status: str = "finalized"
    subtotal: Decimal | str | None = None
    discounts: Decimal | str | None = None
    adjustments: Decimal | str | None = None
    # the period's [start, end) in UTC, when the test pins it ("2026-09-30 23:00")
    utc_period: tuple[str, str] | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    customers: Sequence[Sub]
    events: Sequence[Mapping[str, Any]]
    rollup_days: Sequence[date]
    as_of: datetime
    expected: Sequence[Invoice]


# --- running one ------------------------------------------------------------------------


@dataclass
class World:
    """One scenario's warehouse database, ledger and settings."""

    warehouse: Warehouse
    folder: Path
    tmp: Path
    go_live: date | None = None
    config: Settings = field(init=False)
    meters: MeterCatalog = field(init=False)
    pending: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.config = load_settings(
            warehouse_url=_url_of(self.warehouse, self.folder),
            ledger_url=f"sqlite:///{self.tmp}/ledger.db",
            catalog_path=CATALOG,
            billing_go_live=self.go_live,
        )
        self.meters = billing.read_catalog(CATALOG).meters
        # The one catalog every step reads: loaded into the ledger first, as a user would.
        upgrade(self.config.ledger_url)
        engine = create_ledger_engine(self.config.ledger_url)
        try:
            with session_factory(engine).begin() as session:
                billing.load_catalog(session, CATALOG)
        finally:
            engine.dispose()

    def load_customers(self, customers: Iterable[Sub]) -> None:
        path = self.tmp / "customers.jsonl"
        path.write_text("".join(json.dumps(c.row()) + "\n" for c in customers))
        upgrade(self.config.ledger_url)
        engine = create_ledger_engine(self.config.ledger_url)
        try:
            with session_factory(engine).begin() as session:
                billing.load_catalog(session, CATALOG)
                billing.load_customers_file(session, path)
        finally:
            engine.dispose()

    def deliver(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Queue deliveries; each is ingested when the scenario's clock reaches it."""
        self.pending.extend(dict(e) for e in events)

    def ingest_until(self, moment: datetime) -> list[IngestSummary]:
        """Ingest the deliveries due by `moment`: one ingest per `ingested_at`, in order."""
        due = [e for e in self.pending if e["ingested_at"] <= moment]
        self.pending = [e for e in self.pending if e["ingested_at"] > moment]
        deliveries: dict[datetime, list[dict[str, Any]]] = {}
        for doc in due:
            deliveries.setdefault(doc.pop("ingested_at"), []).append(doc)
        summaries = []
        for at in sorted(deliveries):
            summary = ingest_events(
                self.warehouse,
                self.meters,
                deliveries[at],
                source=f"delivery {at:%Y-%m-%d %H:%M}",
                ingested_at=at,
            )
            # received = accepted + duplicates + rejected, and a scenario sends no bad row
            assert summary.total.balanced and not summary.total.rejected, summary.to_json()
            summaries.append(summary)
        return summaries

    def nightly(self, *days: date) -> list[RollupReport]:
        """The nightly run of each day: the deliveries due by D+1 01:00, then rollup_day(D)."""
        reports = []
        for d in days:
            self.ingest_until(datetime.combine(d + timedelta(days=1), NIGHTLY_AT, tzinfo=UTC))
            reports.append(rollup_day(d, config=self.config))
        return reports

    def rollup(self, *days: date) -> list[RollupReport]:
        """rollup_day for each day, ingesting nothing (a re-run)."""
        return [rollup_day(d, config=self.config) for d in days]

    def backfill(self, first: date, last: date) -> list[RollupReport]:
        return backfill(first, last, config=self.config)

    def close(self, as_of: datetime) -> CloseReport:
        """The deliveries due by `as_of`, then close_periods as of it."""
        self.ingest_until(as_of)
        return close_periods(as_of, config=self.config)

    def invoices(self) -> list[dict[str, Any]]:
        """Every invoice of the ledger with its lines (billing.views), oldest first."""
        engine = create_ledger_engine(self.config.ledger_url)
        try:
            with session_factory(engine)() as session:
                return [invoice_detail(session, s["id"]) for s in list_invoices(session)]
        finally:
            engine.dispose()

    def rollup_rows(self) -> list[tuple[Any, ...]]:
        """The whole rollup table, aggregate states included (as hex), in a stable order."""
        return self.warehouse.query_rows(
            "SELECT hour, customer_id, meter, toString(mapSort(dimensions)), events, value_sum,"
            " value_max, hex(unique_state), hex(latest_state), first_at, tw_integral,"
            " max_ingested_at FROM usage_rollup"
            " ORDER BY meter, customer_id, hour, toString(mapSort(dimensions))"
        )


def _url_of(warehouse: Warehouse, folder: Path) -> str:
    """The settings URL that opens `warehouse` (its database, with its backend)."""
    try:  # the suite's helper, where the suite runs warehouse tests on both backends
        from tests.conftest import warehouse_url
    except ImportError:
        return f"chdb://{folder}?database={warehouse.database}"
    return warehouse_url(warehouse)


def run(world: World, scenario: Scenario) -> CloseReport:
    """The nightly path: load the customers, the nightly run of each rollup day, close."""
    world.load_customers(scenario.customers)
    world.deliver(scenario.events)
    world.nightly(*scenario.rollup_days)
    return world.close(scenario.as_of)


# --- comparing --------------------------------------------------------------------------


def line_key(line: Mapping[str, Any]) -> tuple[str, str, str | None, Decimal, Decimal]:
    return (
        line["price_id"],
        line["kind"],
        line["group"],
        Decimal(line["quantity"]),
        Decimal(line["amount"]),
    )


def _sorted(keys: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(keys, key=repr)


def find(invoices: Sequence[Mapping[str, Any]], customer: str, period: str) -> dict[str, Any]:
    found = [i for i in invoices if i["customer"] == customer and i["period_start_local"] == period]
    assert len(found) == 1, f"{len(found)} live invoices for {customer} {period}: {found}"
    return dict(found[0])


def check(world: World, expected: Sequence[Invoice], *, exact: bool = True) -> list[dict[str, Any]]:
    """The ledger holds the expected invoices (with `exact`, those and no other live
    invoice), each with exactly the expected lines and totals."""
    invoices = [i for i in world.invoices() if i["status"] != "void"]
    have = sorted((i["customer"], i["period_start_local"]) for i in invoices)
    want = sorted((e.customer, e.period) for e in expected)
    if exact:
        assert have == want
    for exp in expected:
        inv = find(invoices, exp.customer, exp.period)
        where = f"{exp.customer} {exp.period}"
        # (where, ...) on both sides: a failure names the invoice and shows the diff
        assert (where, inv["status"]) == (where, exp.status)
        have_lines = _sorted(line_key(ln) for ln in inv["lines"])
        assert (where, have_lines) == (where, _sorted(ln.key() for ln in exp.lines))
        assert (where, Decimal(inv["total"])) == (where, Decimal(str(exp.total)))
        if exp.utc_period is not None:
            bounds = tuple(utc(t).isoformat() for t in exp.utc_period)
            assert (where, inv["period_start"], inv["period_end"]) == (where, *bounds)
        # Invariant 4: the total is the sum of the rounded lines.
        assert inv["total_minor"] == sum(ln["amount_minor"] for ln in inv["lines"]), where
        for name, value in (
            ("subtotal", exp.subtotal),
            ("discounts", exp.discounts),
            ("adjustments", exp.adjustments),
        ):
            if value is not None:
                assert (where, name, Decimal(inv[name])) == (where, name, Decimal(str(value)))
    return invoices


def comparable(invoices: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Invoices without what differs between two ledgers of the same content (ids)."""
    out = []
    for inv in invoices:
        lines = _sorted(
            (
                *line_key(ln),
                ln["idempotency_key"],
                ln["amount_precise"],
                ln["service_period_start"],
                json.dumps(ln["breakdown"], sort_keys=True),
            )
            for ln in inv["lines"]
        )
        out.append(
            (
                inv["customer"],
                inv["period_start"],
                inv["period_end"],
                inv["status"],
                inv["subtotal"],
                inv["discounts"],
                inv["adjustments"],
                inv["total"],
                inv["finalized_at"],
                tuple(lines),
            )
        )
    return sorted(out, key=repr)
