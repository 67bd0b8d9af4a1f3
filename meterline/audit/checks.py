"""The audit (DESIGN.md invariant 6): every posted amount re-derived from raw events.

Pure: this module compares numbers and builds explanations and reports from facts it is
given; it reads no database, no warehouse and no clock. `meterline/audit/gather.py` gathers
the facts (ledger lines, raw events, rollup rows, re-rated charges) and calls it.

Business rules:
- A line is judged by its idempotency key. What was billed for a key is the line on the
  period's live invoice plus every adjustment of that key on live invoices (a finalized
  invoice is never edited, corrections are adjustment lines elsewhere). What should have
  been billed is the same key re-rated from the raw events now.
- Billed and re-rated agree when quantity and amount in minor units are equal (the rule
  `post_adjustments` applies). A line alone agrees when its precise amount is equal too.
- An event is late for a line when the rating run that produced the line did not see it:
  ingested after the run's warehouse watermark (DESIGN.md invariant 7), never judged by
  the clock against a logical date. A difference with late events is drift (late usage
  not adjusted yet); without them it is a mismatch nothing in the data explains.
- Every reconcile finding has a severity: an error when money differs (or may: a line,
  a total, a quantity, the intake accounting, a period due without an invoice), a
  warning when usage is billed to no one (usage no subscription covers; dimension
  groups no price of the plan counts). Usage is never dropped silently: both are listed.
- A finding has a stable id: a hash of its check, its subject and the values that
  define it. A person can acknowledge a finding by its id; a finding whose values change
  is a new one, which no earlier acknowledgement covers.
- A report fails on the unacknowledged findings at or above the severity the caller
  fails on (METERLINE_RECONCILE_FAIL_ON: errors by default).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from billing.charges import ChargeLine, canonical_json, sha256_hex
from billing.money import canonical, minor_text
from billing.periods import zone
from meterline.jobs.period_charges import matches_filter

# Quantities are rounded once to 9 decimal places (meters/quantities.py QUANTUM).
QUANTUM = Decimal("1e-9")
_DIVISION = Context(prec=100, rounding=ROUND_HALF_EVEN)
_MS_PER_HOUR = Decimal(3_600_000)

AGREES = "agrees"
ADJUSTED = "adjusted"
DRIFT = "drift"
MISMATCH = "mismatch"

Dims = tuple[tuple[str, str], ...]


def dims_of(value: Any) -> Dims:
    """A dimension map (dict, or the engine's list of pairs) as a sorted tuple of pairs."""
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in items))


def dims_label(dims: Dims) -> str:
    return ",".join(f"{k}={v}" for k, v in dims) or "-"


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def text(value: Decimal) -> str:
    return canonical(value)


# --- billed amounts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Billed:
    """Quantity and amount of one key: a line, an adjustment, or their sum."""

    quantity: Decimal
    amount_minor: int
    amount_precise: Decimal

    def __add__(self, other: Billed) -> Billed:
        return Billed(
            self.quantity + other.quantity,
            self.amount_minor + other.amount_minor,
            self.amount_precise + other.amount_precise,
        )

    def __sub__(self, other: Billed) -> Billed:
        return Billed(
            self.quantity - other.quantity,
            self.amount_minor - other.amount_minor,
            self.amount_precise - other.amount_precise,
        )

    @property
    def is_zero(self) -> bool:
        """Nothing to adjust: the rule of post_adjustments (quantity and minor units)."""
        return self.quantity == 0 and self.amount_minor == 0

    @property
    def is_exactly_zero(self) -> bool:
        return self.is_zero and self.amount_precise == 0

    @classmethod
    def of_charge(cls, charge: ChargeLine | None) -> Billed:
        if charge is None:
            return ZERO
        return cls(charge.quantity, charge.amount_minor, charge.amount_precise)

    def to_json(self, currency: str) -> dict[str, Any]:
        return {
            "quantity": text(self.quantity),
            "amount": minor_text(self.amount_minor, currency),
            "amount_minor": self.amount_minor,
            "amount_precise": text(self.amount_precise),
        }


ZERO = Billed(Decimal(0), 0, Decimal(0))


def total(items: Iterable[Billed]) -> Billed:
    out = ZERO
    for item in items:
        out = out + item
    return out


# --- what the audit reads, as plain values ----------------------------------------------


@dataclass(frozen=True)
class PostedLine:
    """A ledger line as the audit sees it."""

    id: int
    invoice_id: int
    invoice_status: str
    kind: str
    key: str
    price_id: str
    price_version: str
    meter: str | None
    group: str | None
    quantity: Decimal
    unit_amount: Decimal | None
    amount_minor: int
    amount_precise: Decimal
    currency: str
    description: str
    breakdown: Any
    service_start: datetime
    service_end: datetime
    adjusts_key: str | None = None
    adjusts_line_id: int | None = None
    rating_run_id: int | None = None
    posted_at: datetime | None = None
    """The logical time of the rating run that posted it (its invoice's finalization
    when the run is not recorded)."""

    @property
    def billed(self) -> Billed:
        return Billed(self.quantity, self.amount_minor, self.amount_precise)

    @property
    def corrects(self) -> str:
        """The key whose billing this line is part of."""
        return self.adjusts_key if self.kind == "adjustment" and self.adjusts_key else self.key

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "invoice_id": self.invoice_id,
            "invoice_status": self.invoice_status,
            "kind": self.kind,
            "price_id": self.price_id,
            "price_version": self.price_version,
            "meter": self.meter,
            "group": self.group,
            "quantity": text(self.quantity),
            "unit_amount": None if self.unit_amount is None else text(self.unit_amount),
            "amount": minor_text(self.amount_minor, self.currency),
            "amount_minor": self.amount_minor,
            "amount_precise": text(self.amount_precise),
            "currency": self.currency,
            "description": self.description,
            "idempotency_key": self.key,
            "adjusts_key": self.adjusts_key,
            "adjusts_line_id": self.adjusts_line_id,
            "service_period": [iso(self.service_start), iso(self.service_end)],
            "rating_run_id": self.rating_run_id,
            "posted_at": iso(self.posted_at),
        }


@dataclass(frozen=True)
class InvoiceInfo:
    id: int
    status: str
    customer: str
    customer_name: str
    subscription: str
    plan: str
    currency: str
    timezone: str
    period_start: datetime
    period_end: datetime
    period_start_local: date
    cycle_start: datetime
    cycle_end: datetime
    finalized_at: datetime | None
    total_minor: int
    line_count: int

    def to_json(self) -> dict[str, Any]:
        tz = zone(self.timezone)
        cycle_hours = Decimal((self.cycle_end - self.cycle_start) // timedelta(seconds=1)) / 3600
        return {
            "id": self.id,
            "status": self.status,
            "customer": self.customer,
            "customer_name": self.customer_name,
            "subscription": self.subscription,
            "plan": self.plan,
            "currency": self.currency,
            "finalized_at": iso(self.finalized_at),
            "total": minor_text(self.total_minor, self.currency),
            "period": {
                "timezone": self.timezone,
                "start_local": self.period_start.astimezone(tz).isoformat(),
                "end_local": self.period_end.astimezone(tz).isoformat(),
                "start_utc": iso(self.period_start),
                "end_utc": iso(self.period_end),
            },
            "billing_cycle": {
                "start_utc": iso(self.cycle_start),
                "end_utc": iso(self.cycle_end),
                "hours": text(cycle_hours),
            },
        }


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


@dataclass(frozen=True)
class EventRow:
    event_id: str
    timestamp: datetime
    value: Decimal
    dims: Dims
    ingested_at: datetime
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "timestamp": iso(self.timestamp),
            "value": text(self.value),
            "group": dims_label(self.dims),
            "ingested_at": iso(self.ingested_at),
            "source": self.source,
        }


@dataclass(frozen=True)
class EventList:
    """Some events of a window (a sample, or the late ones) and how many there are. For
    late events: the watermark of the rating run they are late for (`since`: it saw every
    event ingested up to then, except on `stale` days, up to each day's own)."""

    events: Sequence[EventRow]
    total: int
    total_value: Decimal
    since: datetime | None = None
    stale: Mapping[date, datetime] = field(default_factory=dict)
    rating_run_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "since": iso(self.since),
            "stale_days": {d.isoformat(): iso(m) for d, m in sorted(self.stale.items())},
            "rating_run_id": self.rating_run_id,
            "count": self.total,
            "value_sum": text(self.total_value),
            "events": [e.to_json() for e in self.events],
        }


NO_EVENTS = EventList((), 0, Decimal(0))


# --- gauge levels -----------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One gauge event's value held over [from_ms, to_ms), clipped to the window."""

    dims: Dims
    event_id: str
    timestamp: datetime
    value: Decimal
    from_ms: int
    to_ms: int


@dataclass(frozen=True)
class Level:
    """A level a gauge held without change, e.g. "3 advanced seats for 240 h"."""

    dims: Dims
    value: Decimal
    from_ms: int
    to_ms: int
    event_ids: tuple[str, ...]

    @property
    def start(self) -> datetime:
        return _at(self.from_ms)

    @property
    def end(self) -> datetime:
        return _at(self.to_ms)

    @property
    def held_ms(self) -> int:
        return self.to_ms - self.from_ms

    @property
    def hours(self) -> Decimal:
        return _DIVISION.divide(Decimal(self.held_ms), _MS_PER_HOUR)

    def share(self, cycle_ms: int) -> Decimal:
        """value x time held / length of the billing cycle (exact at 100 digits)."""
        return _DIVISION.divide(self.value * self.held_ms, Decimal(cycle_ms))

    def to_json(self, cycle_ms: int) -> dict[str, Any]:
        return {
            "group": dims_label(self.dims),
            "value": text(self.value),
            "from": iso(self.start),
            "to": iso(self.end),
            "hours": text(self.hours.quantize(Decimal("0.001"))),
            "held_ms": self.held_ms,
            "share_of_cycle": text(self.share(cycle_ms).quantize(QUANTUM, context=_DIVISION)),
            "events": list(self.event_ids),
        }


def _at(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def levels(spans: Iterable[Span]) -> list[Level]:
    """Consecutive spans of one dimension group with the same value, merged: a daily
    re-report of an unchanged seat count is one level, not thirty."""
    out: list[Level] = []
    for span in sorted(spans, key=lambda s: (s.dims, s.from_ms, s.event_id)):
        if span.to_ms <= span.from_ms:
            continue
        last = out[-1] if out else None
        if (
            last is not None
            and last.dims == span.dims
            and last.value == span.value
            and last.to_ms == span.from_ms
        ):
            out[-1] = Level(
                last.dims, last.value, last.from_ms, span.to_ms, (*last.event_ids, span.event_id)
            )
        else:
            out.append(Level(span.dims, span.value, span.from_ms, span.to_ms, (span.event_id,)))
    return out


def time_weighted_quantities(found: Iterable[Level], cycle_ms: int) -> dict[Dims, Decimal]:
    """Per dimension group: the integral of its levels over the billing cycle's length,
    rounded once to 9 places half-even, as raw_period_quantities computes it."""
    integrals: dict[Dims, Decimal] = defaultdict(Decimal)
    for level in found:
        integrals[level.dims] += level.value * level.held_ms
    return {
        dims: _DIVISION.divide(integral, Decimal(cycle_ms)).quantize(
            QUANTUM, rounding=ROUND_HALF_EVEN, context=_DIVISION
        )
        for dims, integral in integrals.items()
    }


# --- one key: billed, re-rated, verdict -------------------------------------------------


def verdict(line: Billed | None, net: Billed, recomputed: Billed, late_events: int) -> str:
    """agrees: the line (if any) and the net billed equal the re-rated amount; adjusted:
    the line differs but its adjustments make the net equal; drift: the net differs and
    events arrived after posting; mismatch: the net differs and no late event explains it."""
    if (recomputed - net).is_zero:
        if line is None or (recomputed - line).is_exactly_zero:
            return AGREES
        return ADJUSTED
    return DRIFT if late_events else MISMATCH


@dataclass(frozen=True)
class KeyDiff:
    """One key of a period: what was billed (line + adjustments) against the re-rating."""

    key: str
    price_id: str
    kind: str
    group: str | None
    meter: str | None
    currency: str
    line_id: int | None
    billed: Billed
    rerated: Billed
    adjustment_ids: tuple[int, ...]

    @property
    def delta(self) -> Billed:
        return self.rerated - self.billed

    @property
    def what(self) -> str:
        if self.line_id is None and not self.adjustment_ids:
            return "missing"
        if self.rerated == ZERO and not self.billed.is_zero and self.line_id is not None:
            return "no_longer_charged"
        return "differs"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "price_id": self.price_id,
            "kind": self.kind,
            "group": self.group,
            "meter": self.meter,
            "line_id": self.line_id,
            "adjustment_ids": list(self.adjustment_ids),
            "what": self.what,
            "billed": self.billed.to_json(self.currency),
            "rerated": self.rerated.to_json(self.currency),
            "difference": self.delta.to_json(self.currency),
        }


def billed_by_key(
    originals: Iterable[PostedLine], adjustments: Iterable[PostedLine]
) -> dict[str, tuple[PostedLine | None, list[PostedLine]]]:
    """Per key: the period's own line and the adjustments of that key (live invoices)."""
    out: dict[str, tuple[PostedLine | None, list[PostedLine]]] = {}
    for line in originals:
        out[line.key] = (line, [])
    for adj in sorted(adjustments, key=lambda a: a.id):
        original, adjs = out.get(adj.corrects, (None, []))
        out[adj.corrects] = (original, [*adjs, adj])
    return out


def compare_period(
    originals: Sequence[PostedLine],
    adjustments: Sequence[PostedLine],
    rerated: Mapping[str, ChargeLine],
    currency: str,
) -> list[KeyDiff]:
    """Every key of a period whose billed total (line + adjustments) differs from the
    re-rated charge, in key order. Empty when the period is right."""
    billed = billed_by_key(originals, adjustments)
    # A price billed under one version and re-rated under another (`catalog load
    # --reprice`) owes nothing under the new key when its charge is zero: post_adjustments
    # posts no line for a zero difference, so none is missing.
    billed_prices = {(ln.price_id, ln.kind, ln.group) for ln in originals}
    diffs = []
    for key in sorted(set(billed) | set(rerated)):
        line, adjs = billed.get(key, (None, []))
        net = total([line.billed] if line else []) + total(a.billed for a in adjs)
        charge = rerated.get(key)
        now = Billed.of_charge(charge)
        if (now - net).is_zero and (
            line is not None
            or adjs
            or charge is None
            or (charge.price_id, charge.kind, charge.group) in billed_prices
        ):
            continue
        like: Any = charge if charge is not None else (line or adjs[0])
        diffs.append(
            KeyDiff(
                key=key,
                price_id=like.price_id,
                kind=charge.kind if charge is not None else (line.kind if line else "adjustment"),
                group=charge.group if charge is not None else like.group,
                meter=like.meter,
                currency=currency,
                line_id=line.id if line else None,
                billed=net,
                rerated=now,
                adjustment_ids=tuple(a.id for a in adjs),
            )
        )
    return diffs


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
class ExplainFacts:
    """Everything `explain` needs about one line, gathered by audit_io."""

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
    aggregation: str | None
    unit: str | None
    meter_filter: Mapping[str, str]
    price_filter: Mapping[str, str]
    price_body: Mapping[str, Any] | None
    price_windows: Sequence[PriceWindow]
    windows: Sequence[WindowQuantities]
    raw_totals: Mapping[Dims, UsageTotals]
    rollup_days: Sequence[tuple[date, Dims, UsageTotals]]
    spans: Sequence[Span]
    late: EventList
    samples: EventList
    notes: Sequence[str] = ()


_HOW = {
    "count": "the number of events in the window",
    "sum": "the sum of the events' values in the window",
    "max": "the largest value in the window",
    "unique_count": "the number of distinct values of the meter's unique property",
    "latest": "the last value reported before the period's end",
    "time_weighted": (
        "each level held, weighted by the time it was held, divided by the length of the "
        "full billing cycle (a partial period is prorated)"
    ),
}


def _sum_matching(facts: Iterable[QuantityFact], price_filter: Mapping[str, str]) -> Decimal:
    return sum((f.quantity for f in facts if matches_filter(f.dims, price_filter)), Decimal(0))


def explain(facts: ExplainFacts) -> dict[str, Any]:
    """The audit chain of one line, from the invoice down to the raw events, with the
    re-rated amount and the difference (zero, or explained by late events)."""
    line = facts.line
    currency = line.currency
    source = facts.source_invoice or facts.invoice
    recomputed = Billed.of_charge(facts.recomputed)
    original = facts.original
    net = total([original.billed] if original else []) + total(a.billed for a in facts.adjustments)
    own = None if line.kind == "adjustment" else line.billed
    status = verdict(own, net, recomputed, facts.late.total)
    notes = list(facts.notes)

    doc: dict[str, Any] = {
        "line": line.to_json(),
        "invoice": facts.invoice.to_json(),
        "status": status,
    }
    if line.kind == "adjustment":
        doc["corrects"] = {
            "key": line.adjusts_key,
            "line_id": line.adjusts_line_id,
            "invoice": source.to_json(),
            "breakdown": line.breakdown,
        }
    doc["price"] = {
        "price_id": line.price_id,
        "version": line.price_version,
        "meter": line.meter,
        "filter": dict(facts.price_filter),
        "body": facts.price_body,
        "windows": [
            {"version": w.label, "from": iso(w.start), "to": iso(w.end), "body": dict(w.body)}
            for w in facts.price_windows
        ],
    }
    charge = facts.recomputed
    rating = charge.breakdown if charge is not None else None
    posted_rating = (original.breakdown if original is not None else None) or line.breakdown
    doc["rating"] = _rating(posted_rating)
    doc["related_lines"] = [r.to_json() for r in facts.related]
    if line.meter is not None and line.kind in ("usage", "adjustment", "discount"):
        doc["quantity"] = _quantity_chain(facts)
    doc["recomputed"] = {
        "key": facts.recomputed_key,
        "price_version": charge.price_version if charge is not None else None,
        **recomputed.to_json(currency),
        "rating": _rating(rating),
        "description": charge.description if charge is not None else "not charged any more",
    }
    reference = own if own is not None else net
    doc["difference"] = (recomputed - reference).to_json(currency)
    doc["adjustments"] = [a.to_json() for a in facts.adjustments]
    doc["net"] = {
        "billed": net.to_json(currency),
        "difference": (recomputed - net).to_json(currency),
    }
    doc["late_events"] = facts.late.to_json()
    doc["sample_events"] = [e.to_json() for e in facts.samples.events]
    if facts.recomputed is None and not net.is_zero:
        notes.append("the re-rating no longer produces this key: the charge would be removed")
    if charge is not None and charge.price_version != line.price_version and original:
        notes.append(
            f"re-rated at price version {charge.price_version}, posted at {line.price_version}:"
            " the catalog changed since"
        )
    if status == DRIFT:
        notes.append(
            f"{facts.late.total} event(s) the rating run did not see change it: "
            "`meterline audit rerate` (or the next close) posts the adjustment"
        )
    elif status == MISMATCH:
        notes.append(
            "the re-rated amount differs and no event the rating run did not see explains it "
            "(rollup stale or corrupted when the line was rated, a catalog change, or an "
            "edited ledger): run `meterline audit reconcile`"
        )
    elif status == ADJUSTED:
        notes.append("the line differs from the re-rating; its adjustments make up the difference")
    doc["notes"] = notes
    return doc


def _rating(breakdown: Any) -> dict[str, Any] | None:
    """The rating of a charge as stored in its breakdown (RatedCharge, DiscountResult or
    the minimum commitment's), with the tiers and windows an auditor checks."""
    if not isinstance(breakdown, Mapping):
        return None
    if "model" not in breakdown:
        return dict(breakdown)
    entries = breakdown.get("breakdown") or []
    return {
        "model": breakdown.get("model"),
        "versions": list(breakdown.get("versions") or []),
        "quantity": breakdown.get("quantity"),
        "free_units": breakdown.get("free_units"),
        "billable_quantity": breakdown.get("billable_quantity"),
        "entries": [
            {
                k: e.get(k)
                for k in (
                    "kind",
                    "version",
                    "tier",
                    "range_from",
                    "range_to",
                    "units",
                    "unit_amount",
                    "flat_amount",
                    "amount",
                )
                if e.get(k) is not None
            }
            for e in entries
            if isinstance(e, Mapping)
        ],
        "subtotal_precise": breakdown.get("subtotal_precise"),
        "minimum_adjustment": breakdown.get("minimum_adjustment"),
        "maximum_adjustment": breakdown.get("maximum_adjustment"),
        "amount_precise": breakdown.get("amount_precise"),
        "amount": breakdown.get("amount"),
        "rounding": breakdown.get("rounding"),
        "explanation": breakdown.get("explanation"),
    }


def _quantity_chain(facts: ExplainFacts) -> dict[str, Any]:
    """How the meter computed the billable quantity, window by window, with the raw
    events and the rollup rows behind it."""
    flt = facts.price_filter
    source = facts.source_invoice or facts.invoice
    cycle_ms = (source.cycle_end - source.cycle_start) // timedelta(milliseconds=1)
    windows = []
    for w in facts.windows:
        windows.append(
            {
                "version": w.label,
                "from": iso(w.start),
                "to": iso(w.end),
                "raw_quantity": text(_sum_matching(w.raw, flt)),
                "rollup_quantity": text(_sum_matching(w.rollup, flt)),
                "groups": [
                    {
                        "group": dims_label(f.dims),
                        "quantity": text(f.quantity),
                        "events": f.events,
                        "rollup_quantity": text(
                            next((r.quantity for r in w.rollup if r.dims == f.dims), Decimal(0))
                        ),
                    }
                    for f in w.raw
                    if matches_filter(f.dims, flt)
                ],
            }
        )
    raw = NO_USAGE
    by_group = []
    for dims, totals in sorted(facts.raw_totals.items()):
        if matches_filter(dims, flt):
            raw = raw + totals
            by_group.append(
                {
                    "group": dims_label(dims),
                    "events": totals.events,
                    "value_sum": text(totals.value_sum),
                    "last_ingested_at": iso(totals.max_ingested_at),
                }
            )
    rollup = NO_USAGE
    days: dict[date, UsageTotals] = defaultdict(lambda: NO_USAGE)
    for day, dims, totals in facts.rollup_days:
        if matches_filter(dims, flt):
            rollup = rollup + totals
            days[day] = days[day] + totals
    doc: dict[str, Any] = {
        "meter": facts.line.meter,
        "aggregation": facts.aggregation,
        "unit": facts.unit,
        "how": _HOW.get(facts.aggregation or "", ""),
        "meter_filter": dict(facts.meter_filter),
        "price_filter": dict(flt),
        "windows": windows,
        "raw_events": {
            "events": raw.events,
            "value_sum": text(raw.value_sum),
            "last_ingested_at": iso(raw.max_ingested_at),
            "by_group": by_group,
        },
        "rollup": {
            "rows": rollup.rollup_rows,
            "events": rollup.events,
            "value_sum": text(rollup.value_sum),
            "last_ingested_at": iso(rollup.max_ingested_at),
            "days": [
                {
                    "day": day.isoformat(),
                    "rows": t.rollup_rows,
                    "events": t.events,
                    "value_sum": text(t.value_sum),
                }
                for day, t in sorted(days.items())
            ],
        },
        "raw_vs_rollup": {
            "events": raw.events - rollup.events,
            "value_sum": text(raw.value_sum - rollup.value_sum),
        },
    }
    # The quantity straight from the events, by the meter's rule, as a third opinion
    # beside raw_period_quantities and the rollup.
    if facts.aggregation == "count":
        doc["from_events"] = text(Decimal(raw.events))
    elif facts.aggregation == "sum":
        doc["from_events"] = text(raw.value_sum)
    if facts.aggregation in ("time_weighted", "latest"):
        found = levels(facts.spans)
        doc["levels"] = [lv.to_json(cycle_ms) for lv in found]
        if facts.aggregation == "time_weighted":
            per_group = time_weighted_quantities(found, cycle_ms)
            doc["from_events"] = text(sum(per_group.values(), Decimal(0)))
        elif found:
            doc["from_events"] = text(sum((lv.value for lv in _last_levels(found)), Decimal(0)))
    return doc


def _last_levels(found: Sequence[Level]) -> list[Level]:
    last: dict[Dims, Level] = {}
    for level in found:
        last[level.dims] = level
    return list(last.values())


# --- reconcile --------------------------------------------------------------------------


ERROR = "error"
WARNING = "warning"
#: Severities, least severe first: failing on one fails on those after it too.
SEVERITIES = (WARNING, ERROR)


def _plain(value: Any) -> Any:
    """A value as plain JSON with one spelling per number and instant (for hashing)."""
    if isinstance(value, Decimal):
        return canonical(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def finding_id(check: str, subject: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """`f-` and 12 hex digits of the sha256 of (check, subject, values): the same finding
    has the same id in every run; a change of any defining value makes a new id."""
    doc = canonical_json(_plain({"check": check, "subject": subject, "values": values}))
    return "f-" + sha256_hex(doc)[:12]


@dataclass(frozen=True)
class Acknowledgement:
    """A person's note that a finding is known and need not fail the run."""

    finding_id: str
    reason: str
    by: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "at": iso(self.at), "reason": self.reason}


@dataclass(frozen=True)
class Finding:
    """One thing reconcile found. `subject` names what it is about (with the customer,
    invoice and key), `values` the numbers that define it: together with the check they
    make its id. `detail` says it in words (and may change wording without a new id)."""

    check: str
    detail: str
    severity: str = ERROR
    customer: str | None = None
    invoice_id: int | None = None
    key: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    subject: Mapping[str, Any] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")

    @property
    def id(self) -> str:
        subject = {
            "customer": self.customer,
            "invoice_id": self.invoice_id,
            "key": self.key,
            **self.subject,
        }
        return finding_id(self.check, subject, self.values)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "check": self.check,
            "severity": self.severity,
            "customer": self.customer,
            "invoice_id": self.invoice_id,
            "key": self.key,
            "detail": self.detail,
            **({"data": dict(self.data)} if self.data else {}),
        }


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


@dataclass(frozen=True)
class Unattributed:
    customer: str
    meter: str
    events: int
    value_sum: Decimal
    first_at: datetime
    last_at: datetime
    known_customer: bool
    example_event_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "meter": self.meter,
            "events": self.events,
            "value_sum": text(self.value_sum),
            "first": iso(self.first_at),
            "last": iso(self.last_at),
            "known_customer": self.known_customer,
            "example_event_id": self.example_event_id,
        }


@dataclass(frozen=True)
class MissingPeriod:
    customer: str
    subscription: str
    start: datetime
    end: datetime
    reason: str | None = None
    """Why close cannot bill it, when that is known (its plan or currency has no price)."""


@dataclass
class ReconcileFacts:
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


@dataclass
class ReconcileReport:
    period: str
    customer: str | None
    findings: list[Finding]
    meters: list[dict[str, Any]]
    charges: list[dict[str, Any]]
    customers: list[dict[str, Any]]
    intake: dict[str, Any]
    unattributed: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    invoices: dict[str, int]
    as_of: datetime | None = None
    fail_on: str = ERROR
    """The least severity that fails the report (METERLINE_RECONCILE_FAIL_ON)."""
    acknowledgements: Mapping[str, Acknowledgement] = field(default_factory=dict)
    """By finding id: the acknowledgements of findings in this report."""

    def acknowledged(self, finding: Finding) -> Acknowledgement | None:
        return self.acknowledgements.get(finding.id)

    def fails(self, finding: Finding) -> bool:
        """An unacknowledged finding at or above the severity the report fails on."""
        severe = SEVERITIES.index(finding.severity) >= SEVERITIES.index(self.fail_on)
        return severe and self.acknowledged(finding) is None

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if self.fails(f)]

    def counts(self) -> dict[str, int]:
        """Unacknowledged findings per severity, and the acknowledged ones."""
        out = {ERROR: 0, WARNING: 0, "acknowledged": 0}
        for f in self.findings:
            out["acknowledged" if self.acknowledged(f) else f.severity] += 1
        return out

    def summary(self) -> str:
        checks: dict[str, int] = defaultdict(int)
        for f in self.failures:
            checks[f.check] += 1
        scope = self.period + (f" customer {self.customer}" if self.customer else "")
        counts = self.counts()
        extra = ", ".join(
            f"{counts[k]} {label}"
            for k, label in (
                (ERROR, "error(s)"),
                (WARNING, "warning(s)"),
                ("acknowledged", "acknowledged"),
            )
            if counts[k]
        )
        if self.ok:
            return (
                f"{scope}: reconciled ({self.invoices.get('checked', 0)} invoices"
                + (f"; {extra}" if extra else "")
                + ")"
            )
        what = ", ".join(f"{check} x{n}" for check, n in sorted(checks.items()))
        return f"{scope}: NOT reconciled: {what} ({extra})"

    def finding_json(self, finding: Finding) -> dict[str, Any]:
        ack = self.acknowledged(finding)
        return {
            **finding.to_json(),
            "fails": self.fails(finding),
            "acknowledged": ack.to_json() if ack else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "customer": self.customer,
            "as_of": iso(self.as_of),
            "ok": self.ok,
            "fail_on": self.fail_on,
            "summary": self.summary(),
            "counts": self.counts(),
            "invoices": self.invoices,
            "intake": self.intake,
            "meters": self.meters,
            "charges": self.charges,
            "customers": self.customers,
            "unattributed": self.unattributed,
            "drift": self.drift,
            "findings": [self.finding_json(f) for f in self.findings],
        }


def failure_message(reports: Sequence[ReconcileReport], as_of: datetime, shown: int = 5) -> str:
    """A short text for a failed run (the billing_close DAG's reconcile task): the failing
    findings counted by severity, the first few ids, and the command that lists them."""
    failing = [(r, f) for r in reports for f in r.failures]
    counts: dict[str, int] = defaultdict(int)
    for _, f in failing:
        counts[f.severity] += 1
    acknowledged = sum(r.counts()["acknowledged"] for r in reports)
    severities = ", ".join(
        f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}" for s in reversed(SEVERITIES) if counts[s]
    )
    first = ", ".join(f"{f.id} ({f.check}, {r.period})" for r, f in failing[:shown])
    more = f" and {len(failing) - shown} more" if len(failing) > shown else ""
    return (
        f"reconcile as of {iso(as_of)}: {len(failing)} failing finding(s): {severities}"
        + (f"; {acknowledged} acknowledged" if acknowledged else "")
        + f". First: {first}{more}."
        f" List them: meterline audit reconcile --as-of {iso(as_of)}; acknowledge one:"
        " meterline audit acknowledge FINDING_ID --reason TEXT"
    )


def reconcile(facts: ReconcileFacts) -> ReconcileReport:
    """Compare every link of the chain for the period's invoices: intake accounting, raw
    events vs rollup, raw vs rollup quantities, re-rated vs posted lines, invoice totals,
    drift since finalization, and usage no subscription covers."""
    findings: list[Finding] = []
    intake = _intake(facts, findings)
    meters: dict[tuple[str, str], dict[str, Any]] = {}
    charges: dict[tuple[str, str], dict[str, int]] = {}
    customers: list[dict[str, Any]] = []
    drift: list[dict[str, Any]] = []
    dirty = sorted(facts.dirty_days)
    adjustments_by_key: dict[str, list[PostedLine]] = defaultdict(list)
    for adj in facts.adjustments:
        adjustments_by_key[adj.corrects].append(adj)
    checked = 0
    for inv in facts.invoices:
        lines = facts.lines.get(inv.id, ())
        before = len(findings)
        _check_totals(inv, lines, findings)
        late = facts.late.get(inv.id, {})
        late_events = sum(t.events for t in late.values())
        row: dict[str, Any] = {
            "invoice_id": inv.id,
            "customer": inv.customer,
            "subscription": inv.subscription,
            "currency": inv.currency,
            "status": inv.status,
            "period": [iso(inv.period_start), iso(inv.period_end)],
            "total": minor_text(inv.total_minor, inv.currency),
        }
        if inv.status != "finalized":
            row["note"] = "open draft: rated at close; its usage is checked once finalized"
            row["findings"] = len(findings) - before
            customers.append(row)
            continue
        checked += 1
        raw, rollup = facts.raw.get(inv.id), facts.rollup.get(inv.id)
        raw_totals = facts.raw_totals.get(inv.id, {})
        rollup_totals = facts.rollup_totals.get(inv.id, {})
        _check_rollup(inv, raw_totals, rollup_totals, dirty, findings)
        # A period that cannot be re-rated read no quantities to compare.
        if raw is not None and rollup is not None and not (raw.error or rollup.error):
            _check_quantities(inv, raw, rollup, dirty, findings)
            for meter, dims, quantity in raw.unpriced:
                findings.append(
                    Finding(
                        "unpriced_usage",
                        f"{meter} {dims_label(dims)}: {text(quantity)} used, but no price of"
                        f" plan {inv.plan} covers this group: billed to no one",
                        severity=WARNING,
                        customer=inv.customer,
                        invoice_id=inv.id,
                        subject={"meter": meter, "group": dims_label(dims)},
                        values={"quantity": quantity},
                    )
                )
        originals = [ln for ln in lines if ln.kind != "adjustment"]
        keys = {ln.key for ln in originals} | set(raw.charges if raw else ())
        adjs = [a for k in sorted(keys) for a in adjustments_by_key.get(k, ())]
        error = raw.error if raw is not None else None
        if error is not None:
            # Nothing to compare the lines with: one finding, not one per line.
            findings.append(
                Finding(
                    "cannot_rerate",
                    f"the period cannot be re-rated from its raw events: {error}",
                    customer=inv.customer,
                    invoice_id=inv.id,
                    values={"reason": error},
                )
            )
        diffs = (
            compare_period(originals, adjs, raw.charges if raw else {}, inv.currency)
            if error is None
            else []
        )
        for diff in diffs:
            check = "unadjusted_drift" if late_events else f"line_{diff.what}"
            findings.append(
                Finding(
                    check,
                    f"{diff.price_id} {diff.kind}{' ' + diff.group if diff.group else ''}:"
                    f" billed {text(diff.billed.quantity)} / "
                    f"{minor_text(diff.billed.amount_minor, inv.currency)},"
                    " re-rated from raw events"
                    f" {text(diff.rerated.quantity)} / "
                    f"{minor_text(diff.rerated.amount_minor, inv.currency)}"
                    + (
                        f" ({late_events} event(s) the rating run did not see: run"
                        " `meterline audit rerate --apply` or the next close)"
                        if late_events
                        else ""
                    ),
                    customer=inv.customer,
                    invoice_id=inv.id,
                    key=diff.key,
                    data=diff.to_json(),
                    values={
                        "billed": [diff.billed.quantity, diff.billed.amount_minor],
                        "rerated": [diff.rerated.quantity, diff.rerated.amount_minor],
                    },
                )
            )
        billed_net = _accumulate(
            inv, originals, adjs, raw, rollup, raw_totals, rollup_totals, meters, charges
        )
        rated = sum((c.amount_minor for c in (raw.charges.values() if raw else ())), 0)
        adjusted_minor = sum(a.amount_minor for a in adjs)
        if late_events:
            drift.append(
                {
                    "invoice_id": inv.id,
                    "customer": inv.customer,
                    "finalized_at": iso(inv.finalized_at),
                    "late_events": late_events,
                    "by_meter": {
                        m: {"events": t.events, "last_ingested_at": iso(t.max_ingested_at)}
                        for m, t in sorted(late.items())
                    },
                    "adjustments": minor_text(adjusted_minor, inv.currency),
                    "adjusted": not diffs,
                }
            )
        row.update(
            {
                "raw_events": sum(t.events for t in raw_totals.values()),
                "rollup_events": sum(t.events for t in rollup_totals.values()),
                "posted": minor_text(billed_net, inv.currency),
                "rerated": minor_text(rated, inv.currency),
                "difference": minor_text(rated - billed_net, inv.currency),
                "late_events": late_events,
                "findings": len(findings) - before,
            }
        )
        customers.append(row)

    for item in facts.unattributed:
        what = "unknown to the ledger" if not item.known_customer else "outside its subscriptions"
        findings.append(
            Finding(
                "unattributed_usage",
                f"{item.customer} ({what}): {item.events} {item.meter} event(s)"
                f" {iso(item.first_at)}..{iso(item.last_at)}, e.g. {item.example_event_id};"
                " this usage is billed to nobody",
                severity=WARNING,
                customer=item.customer,
                subject={"meter": item.meter, "month": facts.period},
                values={
                    "events": item.events,
                    "value_sum": item.value_sum,
                    "first": item.first_at,
                    "last": item.last_at,
                    "known_customer": item.known_customer,
                },
            )
        )
    for gap in facts.missing:
        findings.append(
            Finding(
                "missing_invoice",
                f"{gap.subscription} period {iso(gap.start)}..{iso(gap.end)} ended and is due"
                " but has no invoice"
                + (f": close cannot bill it: {gap.reason}" if gap.reason else ""),
                customer=gap.customer,
                subject={"subscription": gap.subscription, "period_start": gap.start},
                values={"period_end": gap.end, "reason": gap.reason},
            )
        )
    return ReconcileReport(
        period=facts.period,
        customer=facts.customer,
        findings=findings,
        meters=[_meter_row(m, c, v) for (m, c), v in sorted(meters.items())],
        charges=[
            {
                "currency": cur,
                "kind": kind,
                "rerated": minor_text(v["rerated"], cur),
                "posted": minor_text(v["posted"], cur),
                "difference": minor_text(v["rerated"] - v["posted"], cur),
            }
            for (cur, kind), v in sorted(charges.items())
        ],
        customers=customers,
        intake=intake,
        unattributed=[u.to_json() for u in facts.unattributed],
        drift=drift,
        invoices={
            "total": len(facts.invoices),
            "checked": checked,
            "open": sum(1 for i in facts.invoices if i.status == "draft"),
            "void": facts.void_invoices,
        },
        as_of=facts.as_of,
    )


def _check_totals(inv: InvoiceInfo, lines: Sequence[PostedLine], out: list[Finding]) -> None:
    """Invariant 4: an invoice's total is the sum of its rounded lines."""
    lines_total = sum(ln.amount_minor for ln in lines)
    if lines_total != inv.total_minor or len(lines) != inv.line_count:
        out.append(
            Finding(
                "invoice_total",
                f"invoice {inv.id} says {minor_text(inv.total_minor, inv.currency)} over"
                f" {inv.line_count} line(s); its lines add up to"
                f" {minor_text(lines_total, inv.currency)} over {len(lines)}",
                customer=inv.customer,
                invoice_id=inv.id,
                values={
                    "invoice": [inv.total_minor, inv.line_count],
                    "lines": [lines_total, len(lines)],
                },
            )
        )


def _stale_hint(dirty: Sequence[date], start: datetime, end: datetime) -> str:
    days = [d for d in dirty if start.date() <= d <= end.date()]
    if days:
        listed = ", ".join(d.isoformat() for d in days[:5]) + (" ..." if len(days) > 5 else "")
        return f" (rollup stale: days {listed} received events since they were rolled up)"
    return " (no day is dirty: the rollup rows do not match the events they were built from)"


def _check_rollup(
    inv: InvoiceInfo,
    raw: Mapping[tuple[str, Dims], UsageTotals],
    rollup: Mapping[tuple[str, Dims], UsageTotals],
    dirty: Sequence[date],
    out: list[Finding],
) -> None:
    for meter, dims in sorted(set(raw) | set(rollup)):
        r = raw.get((meter, dims), NO_USAGE)
        u = rollup.get((meter, dims), NO_USAGE)
        if r.events != u.events or r.value_sum != u.value_sum:
            out.append(
                Finding(
                    "rollup_vs_raw",
                    f"{meter} {dims_label(dims)}: raw events {r.events} (sum "
                    f"{text(r.value_sum)}), rollup {u.events} (sum {text(u.value_sum)})"
                    + _stale_hint(dirty, inv.period_start, inv.period_end),
                    customer=inv.customer,
                    invoice_id=inv.id,
                    subject={"meter": meter, "group": dims_label(dims)},
                    values={
                        "raw": [r.events, r.value_sum],
                        "rollup": [u.events, u.value_sum],
                    },
                )
            )


def _check_quantities(
    inv: InvoiceInfo,
    raw: PeriodFacts,
    rollup: PeriodFacts,
    dirty: Sequence[date],
    out: list[Finding],
) -> None:
    for meter, dims in sorted(set(raw.quantities) | set(rollup.quantities)):
        r = raw.quantities.get((meter, dims), Decimal(0))
        u = rollup.quantities.get((meter, dims), Decimal(0))
        if r != u:
            out.append(
                Finding(
                    "quantity_rollup_vs_raw",
                    f"{meter} {dims_label(dims)}: quantity from raw events {text(r)}, from the"
                    f" rollup {text(u)}" + _stale_hint(dirty, inv.period_start, inv.period_end),
                    customer=inv.customer,
                    invoice_id=inv.id,
                    subject={"meter": meter, "group": dims_label(dims)},
                    values={"raw": r, "rollup": u},
                )
            )


def _accumulate(
    inv: InvoiceInfo,
    originals: Sequence[PostedLine],
    adjs: Sequence[PostedLine],
    raw: PeriodFacts | None,
    rollup: PeriodFacts | None,
    raw_totals: Mapping[tuple[str, Dims], UsageTotals],
    rollup_totals: Mapping[tuple[str, Dims], UsageTotals],
    meters: dict[tuple[str, str], dict[str, Any]],
    charges: dict[tuple[str, str], dict[str, int]],
) -> int:
    """Add one invoice's numbers to the per (meter, currency) and per (currency, kind)
    tables; returns what was billed for its keys (lines + adjustments), in minor units."""
    cur = inv.currency

    def meter_row(meter: str) -> dict[str, Any]:
        return meters.setdefault(
            (meter, cur),
            {
                "invoices": set(),
                "raw_events": 0,
                "rollup_events": 0,
                "raw_quantity": Decimal(0),
                "rollup_quantity": Decimal(0),
                "rated_quantity": Decimal(0),
                "posted_quantity": Decimal(0),
                "rated_minor": 0,
                "posted_minor": 0,
            },
        )

    for (meter, _dims), t in raw_totals.items():
        row = meter_row(meter)
        row["raw_events"] += t.events
        row["invoices"].add(inv.id)
    for (meter, _dims), t in rollup_totals.items():
        meter_row(meter)["rollup_events"] += t.events
    for facts, column in ((raw, "raw_quantity"), (rollup, "rollup_quantity")):
        for (meter, _dims), q in facts.quantities.items() if facts else ():
            meter_row(meter)[column] += q
    kind_of = {ln.key: ln.kind for ln in originals}
    for charge in raw.charges.values() if raw else ():
        charges.setdefault((cur, charge.kind), {"rerated": 0, "posted": 0})
        charges[(cur, charge.kind)]["rerated"] += charge.amount_minor
        if charge.kind == "usage" and charge.meter:
            row = meter_row(charge.meter)
            row["rated_quantity"] += charge.quantity
            row["rated_minor"] += charge.amount_minor
    billed = 0
    for ln in [*originals, *adjs]:
        kind = kind_of.get(ln.corrects, ln.kind) if ln.kind == "adjustment" else ln.kind
        charges.setdefault((cur, kind), {"rerated": 0, "posted": 0})
        charges[(cur, kind)]["posted"] += ln.amount_minor
        billed += ln.amount_minor
        if kind == "usage" and ln.meter:
            row = meter_row(ln.meter)
            row["posted_quantity"] += ln.quantity
            row["posted_minor"] += ln.amount_minor
    return billed


def _meter_row(meter: str, currency: str, v: dict[str, Any]) -> dict[str, Any]:
    return {
        "meter": meter,
        "currency": currency,
        "invoices": len(v["invoices"]),
        "raw_events": v["raw_events"],
        "rollup_events": v["rollup_events"],
        "raw_quantity": text(v["raw_quantity"]),
        "rollup_quantity": text(v["rollup_quantity"]),
        "rated_quantity": text(v["rated_quantity"]),
        "posted_quantity": text(v["posted_quantity"]),
        "rated_amount": minor_text(v["rated_minor"], currency),
        "posted_amount": minor_text(v["posted_minor"], currency),
        "difference": minor_text(v["rated_minor"] - v["posted_minor"], currency),
    }


def _intake(facts: ReconcileFacts, out: list[Finding]) -> dict[str, Any]:
    """The accounting of the ingests received in the intake window: each balanced, and
    (for the whole warehouse, not one customer) what each logged matching what it stored."""
    totals = {"received": 0, "accepted": 0, "duplicates": 0, "rejected": 0}
    reasons: dict[str, int] = defaultdict(int)
    for ing in facts.ingests:
        for name in totals:
            totals[name] += getattr(ing, name)
        for reason, n in ing.rejected_by_reason.items():
            reasons[reason] += n
        if ing.received != ing.accepted + ing.duplicates + ing.rejected:
            out.append(
                Finding(
                    "ingest_unbalanced",
                    f"ingest {ing.ingest_id} ({', '.join(ing.sources)}): received"
                    f" {ing.received} != accepted {ing.accepted} + duplicates"
                    f" {ing.duplicates} + rejected {ing.rejected}",
                    subject={"ingest_id": ing.ingest_id},
                    values={
                        "received": ing.received,
                        "accepted": ing.accepted,
                        "duplicates": ing.duplicates,
                        "rejected": ing.rejected,
                    },
                )
            )
    stored: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_meter: dict[tuple[str, str], dict[str, Any]] = {}
    for row in facts.stored:
        stored[row.ingest_id][row.outcome] += row.n
        entry = by_meter.setdefault(
            (row.meter or "?", row.currency or "?"),
            {"accepted": 0, "rejected": 0, "rejected_by_reason": defaultdict(int)},
        )
        entry[row.outcome] += row.n
        if row.outcome == "rejected":
            entry["rejected_by_reason"][row.reason] += row.n
    if facts.customer is None:
        for ing in facts.ingests:
            got = stored.get(ing.ingest_id, {})
            accepted, rejected = got.get("accepted", 0), got.get("rejected", 0)
            if (accepted, rejected) != (ing.accepted, ing.rejected):
                out.append(
                    Finding(
                        "ingest_log_vs_stored",
                        f"ingest {ing.ingest_id} ({', '.join(ing.sources)}) logged"
                        f" {ing.accepted} accepted / {ing.rejected} rejected; the warehouse"
                        f" holds {accepted} events / {rejected} rejected rows from it",
                        subject={"ingest_id": ing.ingest_id},
                        values={
                            "logged": [ing.accepted, ing.rejected],
                            "stored": [accepted, rejected],
                        },
                    )
                )
    return {
        "window": [iso(facts.intake_window[0]), iso(facts.intake_window[1])],
        "scope": "ingests received in the window"
        + (f"; rows of customer {facts.customer} only" if facts.customer else ""),
        "ingests": len(facts.ingests),
        **totals,
        "balanced": totals["received"]
        == totals["accepted"] + totals["duplicates"] + totals["rejected"],
        "rejected_by_reason": dict(sorted(reasons.items())),
        "by_meter_currency": [
            {
                "meter": meter,
                "currency": currency,
                "accepted": v["accepted"],
                "rejected": v["rejected"],
                "rejected_by_reason": dict(sorted(v["rejected_by_reason"].items())),
            }
            for (meter, currency), v in sorted(by_meter.items())
        ],
    }


# --- rerate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodDiff:
    invoice_id: int
    customer: str
    subscription: str
    currency: str
    period_start: datetime
    period_end: datetime
    diffs: Sequence[KeyDiff]

    def to_json(self) -> dict[str, Any]:
        return {
            "invoice_id": self.invoice_id,
            "customer": self.customer,
            "subscription": self.subscription,
            "currency": self.currency,
            "period": [iso(self.period_start), iso(self.period_end)],
            "lines": [d.to_json() for d in self.diffs],
            "difference": minor_text(sum(d.delta.amount_minor for d in self.diffs), self.currency),
        }


@dataclass
class RerateReport:
    period: str
    customer: str | None
    applied: bool
    periods_checked: int
    periods: list[PeriodDiff]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    run_at: datetime | None = None
    rating_run_id: int | None = None
    posted: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lines_differing(self) -> int:
        return sum(len(p.diffs) for p in self.periods)

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "customer": self.customer,
            "applied": self.applied,
            "run_at": iso(self.run_at),
            "rating_run_id": self.rating_run_id,
            "periods_checked": self.periods_checked,
            "periods_differing": len(self.periods),
            "lines_differing": self.lines_differing,
            "periods": [p.to_json() for p in self.periods],
            "skipped": self.skipped,
            "posted": self.posted,
        }
