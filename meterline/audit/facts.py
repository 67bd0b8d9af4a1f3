"""The facts the audit reads, as typed values: what the gathering functions
(``meterline.audit.ledger``, ``meterline.audit.warehouse`` and each use case's
``gather``) hand to the pure checks. No I/O here.

Facts a report shows as they are (events, usage billed to no one) are report models
(``values.Report``); the others are frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import Field, computed_field

from billing.charges import ChargeLine
from billing.money import minor_text
from billing.periods import zone
from meterline.audit.values import Amount, Billed, Dims, Exact, Instant, Report, dims_label

# --- the ledger -------------------------------------------------------------------------


class PostedLine(Report):
    """A ledger line as the audit sees it; in JSON as `explain` shows a line."""

    id: int
    invoice_id: int
    invoice_status: str
    kind: str
    key: str = Field(serialization_alias="idempotency_key")
    price_id: str
    price_version: str
    meter: str | None
    group: str | None
    quantity: Exact
    unit_amount: Exact | None
    amount_minor: int
    amount_precise: Exact
    currency: str
    description: str
    breakdown: Any = Field(exclude=True)
    service_start: Instant = Field(exclude=True)
    service_end: Instant = Field(exclude=True)
    adjusts_key: str | None = None
    adjusts_line_id: int | None = None
    rating_run_id: int | None = None
    posted_at: Instant | None = None
    """The logical time of the rating run that posted it (its invoice's finalization
    when the run is not recorded)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def amount(self) -> str:
        return minor_text(self.amount_minor, self.currency)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def service_period(self) -> tuple[Instant, Instant]:
        return (self.service_start, self.service_end)

    @property
    def billed(self) -> Billed:
        return Billed(
            quantity=self.quantity,
            amount_minor=self.amount_minor,
            amount_precise=self.amount_precise,
            currency=self.currency,
        )

    @property
    def corrects(self) -> str:
        """The key whose billing this line is part of."""
        return self.adjusts_key if self.kind == "adjustment" and self.adjusts_key else self.key


class LocalSpan(Report):
    """A period in its subscription's timezone and in UTC."""

    timezone: str
    start_local: datetime
    end_local: datetime
    start_utc: Instant
    end_utc: Instant


class Cycle(Report):
    """The billing cycle a period lies in: what time-weighted quantities divide by."""

    start_utc: Instant
    end_utc: Instant
    hours: Exact


class InvoiceInfo(Report):
    """An invoice, its subscription's terms and the billing cycle its period lies in; in
    JSON as `explain` shows an invoice (the period local and UTC, the cycle's hours)."""

    id: int
    status: str
    customer: str
    customer_name: str
    subscription: str
    plan: str
    currency: str
    timezone: str = Field(exclude=True)
    period_start: Instant = Field(exclude=True)
    period_end: Instant = Field(exclude=True)
    period_start_local: date = Field(exclude=True)
    cycle_start: Instant = Field(exclude=True)
    cycle_end: Instant = Field(exclude=True)
    finalized_at: Instant | None
    total_minor: int = Field(exclude=True)
    line_count: int = Field(exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> Amount:
        return Amount(minor=self.total_minor, currency=self.currency)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def period(self) -> LocalSpan:
        tz = zone(self.timezone)
        return LocalSpan(
            timezone=self.timezone,
            start_local=self.period_start.astimezone(tz),
            end_local=self.period_end.astimezone(tz),
            start_utc=self.period_start,
            end_utc=self.period_end,
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def billing_cycle(self) -> Cycle:
        seconds = Decimal((self.cycle_end - self.cycle_start) // timedelta(seconds=1))
        return Cycle(start_utc=self.cycle_start, end_utc=self.cycle_end, hours=seconds / 3600)


# --- the warehouse ----------------------------------------------------------------------


@dataclass(frozen=True)
class QuantityFact:
    """One dimension group's quantity in one window, from the raw events or the rollup."""

    dims: Dims
    quantity: Decimal
    events: int


@dataclass(frozen=True)
class UsageTotals:
    """What a window holds for one (meter, dimension group): raw events or rollup rows."""

    events: int
    value_sum: Decimal
    max_ingested_at: datetime | None = None
    rollup_rows: int = 0

    def __add__(self, other: UsageTotals) -> UsageTotals:
        latest = [m for m in (self.max_ingested_at, other.max_ingested_at) if m is not None]
        return UsageTotals(
            self.events + other.events,
            self.value_sum + other.value_sum,
            max(latest) if latest else None,
            self.rollup_rows + other.rollup_rows,
        )


NO_USAGE = UsageTotals(0, Decimal(0))


class EventRow(Report):
    """One raw event."""

    event_id: str
    timestamp: Instant
    value: Exact
    dims: Dims = Field(exclude=True)
    ingested_at: Instant
    source: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def group(self) -> str:
        return dims_label(self.dims)


class EventList(Report):
    """Some events of a window (a sample, or the late ones) and how many there are. For
    late events: the watermark of the rating run they are late for (`since`: it saw every
    event ingested up to then, except on `stale_days`, up to each day's own)."""

    since: Instant | None = None
    stale_days: dict[date, Instant] = Field(default_factory=dict)
    rating_run_id: int | None = None
    count: int
    value_sum: Exact
    events: tuple[EventRow, ...]


NO_EVENTS = EventList(count=0, value_sum=Decimal(0), events=())


@dataclass(frozen=True)
class Span:
    """One gauge event's value held over [from_ms, to_ms), clipped to the window."""

    dims: Dims
    event_id: str
    timestamp: datetime
    value: Decimal
    from_ms: int
    to_ms: int


# --- explain ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceWindow:
    """One price version in effect over part of the period."""

    label: str
    start: datetime
    end: datetime
    body: Mapping[str, Any]


@dataclass(frozen=True)
class WindowQuantities:
    """A version window's quantities per dimension group, from raw events and rollup."""

    start: datetime
    end: datetime
    label: str | None
    raw: Sequence[QuantityFact]
    rollup: Sequence[QuantityFact]


@dataclass(frozen=True)
class MeterFacts:
    """The line's meter over its period: its rule, the version windows' quantities, and
    the raw events and rollup rows behind them (every dimension group; the price's
    filter picks its own)."""

    aggregation: str
    unit: str
    meter_filter: Mapping[str, str]
    windows: Sequence[WindowQuantities]
    raw_totals: Mapping[Dims, UsageTotals]
    rollup_days: Sequence[tuple[date, Dims, UsageTotals]]
    spans: Sequence[Span]


@dataclass(frozen=True)
class ExplainFacts:
    """Everything `explain` needs about one line."""

    line: PostedLine
    invoice: InvoiceInfo
    source_invoice: InvoiceInfo | None
    """The invoice of the period the line charges for (the line's own, except for an
    adjustment, which corrects another period)."""
    original: PostedLine | None
    adjustments: Sequence[PostedLine]
    related: Sequence[PostedLine]
    """Lines of the same period the line interacts with: the discounts of its price, the
    usage line a discount reduces, the minimum commitment true-up."""
    recomputed: ChargeLine | None
    recomputed_key: str
    price_filter: Mapping[str, str]
    price_body: Mapping[str, Any] | None
    price_windows: Sequence[PriceWindow]
    meter: MeterFacts | None
    """None for a line without a meter (flat fee, minimum true-up) or one whose meter
    the catalog no longer has."""
    late: EventList
    samples: EventList
    notes: Sequence[str] = ()


# --- reconcile --------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodFacts:
    """One invoice's period, re-rated: the charges by key and the whole window's
    quantities per (meter, dimension group); or why it cannot be re-rated (`error`)."""

    charges: Mapping[str, ChargeLine]
    quantities: Mapping[tuple[str, Dims], Decimal]
    unpriced: Sequence[tuple[str, Dims, Decimal]] = ()
    error: str | None = None


@dataclass(frozen=True)
class IngestFacts:
    """One ingest's own accounting (ingest_log)."""

    ingest_id: str
    ingested_at: datetime
    sources: Sequence[str]
    received: int
    accepted: int
    duplicates: int
    rejected: int
    rejected_by_reason: Mapping[str, int]


@dataclass(frozen=True)
class StoredCount:
    """Rows an ingest stored: accepted events or rejected rows (with a reason)."""

    ingest_id: str
    meter: str
    currency: str
    outcome: str
    reason: str
    n: int


class Unattributed(Report):
    """Events of one customer and meter that no subscription covers."""

    customer: str
    meter: str
    events: int
    value_sum: Exact
    first: Instant
    last: Instant
    known_customer: bool
    example_event_id: str


@dataclass(frozen=True)
class MissingPeriod:
    """A period due without a live invoice."""

    customer: str
    subscription: str
    start: datetime
    end: datetime
    reason: str | None = None
    """Why close cannot bill it, when that is known (its plan or currency has no price)."""


@dataclass(frozen=True)
class GrantFacts:
    """A credit grant's ledger replayed (billing.credits.audit_grants): its accounts, in
    its unit (a currency or a meter), and every way its entries break the balance
    identity or take an account below zero (DESIGN.md invariant 9)."""

    grant_id: str
    customer: str
    unit: str
    granted: Decimal
    consumed: Decimal
    expired: Decimal
    voided: Decimal
    remaining: Decimal
    problems: tuple[str, ...] = ()
    # What moved to the next term's grant (a grant that rolls over): not breakage.
    rolled_over: Decimal = Decimal(0)


@dataclass(frozen=True)
class RevenueGap:
    """A customer's revenue balances at the end of a day of the month where billed =
    recognized + deferred - unbilled does not hold (minor units of `currency`)."""

    customer: str
    currency: str
    day: date
    billed: int
    recognized: int
    deferred: int
    unbilled: int


@dataclass(frozen=True)
class RevenueFacts:
    """The month's revenue recognition (meterline.jobs.revrec, docs/revrec.md): the days
    checked (customers x days), those whose balances break the identity, and the
    problems the schedule found (a line whose rows do not add up to it, a paid
    commitment that does not tie to its credit ledger)."""

    checked: int
    gaps: Sequence[RevenueGap] = ()
    problems: Sequence[str] = ()


@dataclass(frozen=True)
class ReconcileFacts:
    """Everything one month's reconciliation compares."""

    period: str
    customer: str | None
    invoices: Sequence[InvoiceInfo]
    lines: Mapping[int, Sequence[PostedLine]]
    """Every line of each invoice (its own charges and any adjustments it carries)."""
    adjustments: Sequence[PostedLine]
    """Adjustment lines on live invoices correcting the keys of these invoices."""
    raw: Mapping[int, PeriodFacts]
    rollup: Mapping[int, PeriodFacts]
    raw_totals: Mapping[int, Mapping[tuple[str, Dims], UsageTotals]]
    rollup_totals: Mapping[int, Mapping[tuple[str, Dims], UsageTotals]]
    late: Mapping[int, Mapping[str, UsageTotals]]
    """Per invoice: events of its period that the run which finalized it did not see."""
    ingests: Sequence[IngestFacts]
    stored: Sequence[StoredCount]
    intake_window: tuple[datetime, datetime]
    unattributed: Sequence[Unattributed]
    missing: Sequence[MissingPeriod] = ()
    dirty_days: Sequence[date] = ()
    void_invoices: int = 0
    as_of: datetime | None = None
    grants: Sequence[GrantFacts] = ()
    """Credit grants whose life overlaps the month, or with an entry in it."""
    revenue: RevenueFacts | None = None
    """The month's revenue balances (None: not checked)."""
