"""The explanation of one line, as typed values: what `meterline audit explain` prints,
its --json (docs/audit.md lists the keys) and the statement's audit chain.

Sections that do not apply to a line are null: `corrects` (only an adjustment corrects
a line), `quantity` (only lines with a meter, not a credit line: its usage is the line
it pays), `quantity.from_events` (a rule the events give directly: count, sum,
time_weighted, latest), `credit` (only a credit line).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from meterline.audit.compare import Verdict
from meterline.audit.facts import EventList, EventRow, InvoiceInfo, PostedLine
from meterline.audit.levels import HeldLevel
from meterline.audit.values import Billed, Exact, Instant, Report

JsonObject = dict[str, Any]
"""A document the ledger stores as JSON (a price body, a stored breakdown), as stored."""


class Corrects(Report):
    """What an adjustment corrects: the key, its line and invoice, and the adjustment's
    own breakdown (billed before, corrected)."""

    key: str | None
    line_id: int | None
    invoice: InvoiceInfo
    breakdown: JsonObject | None


class PriceWindowView(Report):
    version: str
    start: Instant = Field(serialization_alias="from")
    end: Instant = Field(serialization_alias="to")
    body: JsonObject


class PriceView(Report):
    price_id: str
    version: str
    meter: str | None
    filter: dict[str, str]
    body: JsonObject | None
    windows: list[PriceWindowView]


class RatingEntry(Report):
    """One entry of a rating (a tier, the units, a package...): only the fields its kind
    has are written."""

    kind: str
    version: str | None = None
    tier: int | None = None
    range_from: Exact | None = None
    range_to: Exact | None = None
    units: Exact | None = None
    unit_amount: Exact | None = None
    flat_amount: Exact | None = None
    amount: Exact | None = None

    @model_serializer(mode="wrap")
    def _present(self, handler: SerializerFunctionWrapHandler) -> JsonObject:
        return {k: v for k, v in handler(self).items() if v is not None}


class ProrationView(Report):
    """How a fixed fee was prorated for a partial period (rating.period.Proration): the
    period's seconds of its billing cycle's, the share, the charge for the whole cycle
    and the line's amount from it."""

    billed_seconds: int
    cycle_seconds: int
    share: Exact
    full_amount_precise: Exact
    amount_precise: Exact
    amount: Exact
    explanation: str


class RatingView(Report):
    """The rating of a charge (rating.RatedCharge) with what an auditor checks; a
    prorated fixed fee's `proration` (the line bills that, not `amount`)."""

    model: str
    versions: list[str]
    quantity: Exact
    free_units: Exact
    billable_quantity: Exact
    entries: list[RatingEntry]
    subtotal_precise: Exact
    minimum_adjustment: Exact
    maximum_adjustment: Exact
    amount_precise: Exact
    amount: Exact
    rounding: str
    explanation: str
    proration: ProrationView | None = None


class GroupQuantity(Report):
    group: str
    quantity: Exact
    events: int
    rollup_quantity: Exact


class WindowView(Report):
    """A version window: the quantity from raw events and from the rollup, per group."""

    version: str | None
    start: Instant = Field(serialization_alias="from")
    end: Instant = Field(serialization_alias="to")
    raw_quantity: Exact
    rollup_quantity: Exact
    groups: list[GroupQuantity]


class GroupTotals(Report):
    group: str
    events: int
    value_sum: Exact
    last_ingested_at: Instant | None


class RawEvents(Report):
    events: int
    value_sum: Exact
    last_ingested_at: Instant | None
    by_group: list[GroupTotals]


class RollupDay(Report):
    day: date
    rows: int
    events: int
    value_sum: Exact


class RollupView(Report):
    rows: int
    events: int
    value_sum: Exact
    last_ingested_at: Instant | None
    days: list[RollupDay]


class RawVsRollup(Report):
    events: int
    value_sum: Exact


class QuantityChain(Report):
    """How the meter computed the billable quantity, window by window, with the raw
    events and rollup rows behind it; `from_events` is the quantity straight from the
    events by the meter's rule, a third opinion."""

    meter: str | None
    aggregation: str
    unit: str
    how: str
    meter_filter: dict[str, str]
    price_filter: dict[str, str]
    windows: list[WindowView]
    raw_events: RawEvents
    rollup: RollupView
    raw_vs_rollup: RawVsRollup
    from_events: Exact | None
    levels: list[HeldLevel]


class Recomputed(Billed):
    """The re-rated charge of the line's key (zero when the re-rating has none)."""

    key: str
    price_version: str | None
    rating: RatingView | JsonObject | None
    description: str


class Net(Report):
    """The line plus its adjustments, and re-rated minus that."""

    billed: Billed
    difference: Billed


class DeliveredTo(Report):
    """Where a line went outside the ledger: its invoice and invoice item in a sink's
    system (Stripe: ``in_...``, ``ii_...``); null ids until delivered."""

    sink: str
    invoice: str | None
    item: str | None


class CreditDraw(Report):
    """One grant's payment of a line: the credit line, the grant, what it paid (money,
    major units) and what left the grant (``units`` of ``unit``)."""

    line_id: int
    grant_id: str
    priority: int | None
    expires_at: Instant | None
    paid: Exact
    units: Exact
    unit: str


class CreditStep(Report):
    """What a credit line is (docs/credits.md): the grant that paid, the line it pays,
    what it paid and took from the grant, the grant's balance before and after (its
    ledger's consume entry; null for a draft, whose credits are drawn again at each
    close and recorded at finalization), and every grant that paid that line, in the
    drawdown's order. The usage it pays is recomputed from raw events by explaining
    ``pays_line_id``."""

    grant_id: str
    grant_kind: str | None
    unit: str
    paid: Exact
    units: Exact
    balance_before: Exact | None
    balance_after: Exact | None
    pays_key: str
    pays_line_id: int | None
    order: list[CreditDraw]
    rule: str


class Explanation(Report):
    """One line explained, from its invoice down to the raw events."""

    line: PostedLine
    invoice: InvoiceInfo
    status: Verdict
    corrects: Corrects | None
    price: PriceView
    rating: RatingView | JsonObject | None
    related_lines: list[PostedLine]
    quantity: QuantityChain | None
    recomputed: Recomputed
    difference: Billed
    """Re-rated minus the line (for an adjustment: minus the net)."""
    adjustments: list[PostedLine]
    net: Net
    late_events: EventList
    sample_events: list[EventRow]
    notes: list[str]
    delivered: list[DeliveredTo] = Field(default_factory=list)
    credit: CreditStep | None = None
    """A credit line's grant, balance and the line it pays (null for other lines)."""
