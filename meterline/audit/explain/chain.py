"""The audit chain of one line, from the invoice down to the raw events, with the
re-rated amount and the verdict (``meterline.audit.compare``). Pure: typed facts in
(``meterline.audit.facts.ExplainFacts``), a typed ``Explanation`` out.

Business rules:
- A dimension group counts towards a price when it has every (key, value) of the
  price's filter (``matches_filter``, the rule close uses).
- The quantity is shown three ways that must agree: per version window as the rating
  read it from raw events and from the rollup, and straight from the events by the
  meter's own rule (`from_events`).
- An event is late for a line when the rating run that produced the line did not see it
  (DESIGN.md invariant 7); for an adjustment, the run of the line it corrects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from meterline.audit.compare import ADJUSTED, DRIFT, MISMATCH, Verdict, charged, net_billed, verdict
from meterline.audit.explain.report import (
    Corrects,
    Explanation,
    GroupQuantity,
    GroupTotals,
    Net,
    PriceView,
    PriceWindowView,
    ProrationView,
    QuantityChain,
    RatingEntry,
    RatingView,
    RawEvents,
    RawVsRollup,
    Recomputed,
    RollupDay,
    RollupView,
    WindowView,
)
from meterline.audit.facts import (
    NO_USAGE,
    ExplainFacts,
    MeterFacts,
    QuantityFact,
    UsageTotals,
)
from meterline.audit.levels import (
    GAUGES,
    HeldLevel,
    last_levels,
    levels,
    time_weighted_quantities,
)
from meterline.audit.values import Dims, dims_label
from rating import RatedCharge
from rating.period import Proration, matches_filter

HOW = {
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


def explain(facts: ExplainFacts) -> Explanation:
    """The audit chain of one line, with the re-rated amount and the difference (zero,
    or explained by late events)."""
    line, charge = facts.line, facts.recomputed
    currency = line.currency
    source = facts.source_invoice or facts.invoice
    recomputed = charged(charge, currency)
    net = net_billed(facts.original, facts.adjustments, currency)
    own = None if line.kind == "adjustment" else line.billed
    status = verdict(own, net, recomputed, facts.late.count)
    posted_rating = (facts.original.breakdown if facts.original else None) or line.breakdown
    return Explanation(
        line=line,
        invoice=facts.invoice,
        status=status,
        corrects=Corrects(
            key=line.adjusts_key,
            line_id=line.adjusts_line_id,
            invoice=source,
            breakdown=line.breakdown if isinstance(line.breakdown, dict) else None,
        )
        if line.kind == "adjustment"
        else None,
        price=_price(facts),
        rating=rating_view(posted_rating),
        related_lines=list(facts.related),
        quantity=quantity_chain(facts)
        if facts.meter is not None and line.kind in ("usage", "adjustment", "discount")
        else None,
        recomputed=Recomputed(
            quantity=recomputed.quantity,
            amount_minor=recomputed.amount_minor,
            amount_precise=recomputed.amount_precise,
            currency=currency,
            key=facts.recomputed_key,
            price_version=charge.price_version if charge is not None else None,
            rating=rating_view(charge.breakdown if charge is not None else None),
            description=charge.description if charge is not None else "not charged any more",
        ),
        difference=recomputed - (own if own is not None else net),
        adjustments=list(facts.adjustments),
        net=Net(billed=net, difference=recomputed - net),
        late_events=facts.late,
        sample_events=list(facts.samples.events),
        notes=_notes(facts, status, net.is_zero),
    )


def _notes(facts: ExplainFacts, status: Verdict, nothing_billed: bool) -> list[str]:
    notes = list(facts.notes)
    line, charge = facts.line, facts.recomputed
    if charge is None and not nothing_billed:
        notes.append("the re-rating no longer produces this key: the charge would be removed")
    if charge is not None and charge.price_version != line.price_version and facts.original:
        notes.append(
            f"re-rated at price version {charge.price_version}, posted at {line.price_version}:"
            " the catalog changed since"
        )
    if status == DRIFT:
        notes.append(
            f"{facts.late.count} event(s) the rating run did not see change it: "
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
    return notes


def _price(facts: ExplainFacts) -> PriceView:
    line = facts.line
    return PriceView(
        price_id=line.price_id,
        version=line.price_version,
        meter=line.meter,
        filter=dict(facts.price_filter),
        body=dict(facts.price_body) if facts.price_body is not None else None,
        windows=[
            PriceWindowView(version=w.label, start=w.start, end=w.end, body=dict(w.body))
            for w in facts.price_windows
        ],
    )


def rating_view(breakdown: Any) -> RatingView | dict[str, Any] | None:
    """The rating of a charge as stored in its breakdown: a rated price's typed result
    (rating.RatedCharge) with its tiers and windows; another breakdown (a discount, the
    minimum commitment's) as stored; None without one."""
    if not isinstance(breakdown, Mapping):
        return None
    if "model" not in breakdown:
        return dict(breakdown)
    try:
        charge = RatedCharge.model_validate(breakdown)
    except ValidationError:
        return dict(breakdown)
    return RatingView(
        model=charge.model.value,
        versions=list(charge.versions),
        quantity=charge.quantity,
        free_units=charge.free_units,
        billable_quantity=charge.billable_quantity,
        entries=[
            RatingEntry.model_validate(e.model_dump(exclude_none=True)) for e in charge.breakdown
        ],
        subtotal_precise=charge.subtotal_precise,
        minimum_adjustment=charge.minimum_adjustment,
        maximum_adjustment=charge.maximum_adjustment,
        amount_precise=charge.amount_precise,
        amount=charge.amount,
        rounding=charge.rounding.value,
        explanation=charge.explanation,
        proration=proration_view(breakdown, charge.currency),
    )


def proration_view(breakdown: Mapping[str, Any], currency: str) -> ProrationView | None:
    """The proration step of a prorated fixed fee's line (its breakdown's `proration`),
    or None for a line billed in full."""
    doc = breakdown.get("proration")
    if not isinstance(doc, Mapping):
        return None
    proration = Proration.from_doc(doc, currency)
    values = {k: v for k, v in asdict(proration).items() if k != "currency"}
    return ProrationView.model_validate(
        {**values, "share": proration.share, "explanation": proration.explanation}
    )


def _sum_matching(facts: Iterable[QuantityFact], price_filter: Mapping[str, str]) -> Decimal:
    return sum((f.quantity for f in facts if matches_filter(f.dims, price_filter)), Decimal(0))


def quantity_chain(facts: ExplainFacts) -> QuantityChain:
    """How the meter computed the billable quantity, window by window, with the raw
    events and the rollup rows behind it (the price's dimension groups only)."""
    meter = facts.meter
    assert meter is not None
    flt = facts.price_filter
    raw_totals = {d: t for d, t in sorted(meter.raw_totals.items()) if matches_filter(d, flt)}
    raw = sum(raw_totals.values(), NO_USAGE)
    rollup = NO_USAGE
    days: dict[date, UsageTotals] = defaultdict(lambda: NO_USAGE)
    for day, dims, totals in meter.rollup_days:
        if matches_filter(dims, flt):
            rollup = rollup + totals
            days[day] = days[day] + totals
    source = facts.source_invoice or facts.invoice
    cycle_ms = (source.cycle_end - source.cycle_start) // timedelta(milliseconds=1)
    held, from_events = _levels_and_rule(meter, raw, flt, cycle_ms)
    return QuantityChain(
        meter=facts.line.meter,
        aggregation=meter.aggregation,
        unit=meter.unit,
        how=HOW.get(meter.aggregation, ""),
        meter_filter=dict(meter.meter_filter),
        price_filter=dict(flt),
        windows=[_window(w.label, w.start, w.end, w.raw, w.rollup, flt) for w in meter.windows],
        raw_events=RawEvents(
            events=raw.events,
            value_sum=raw.value_sum,
            last_ingested_at=raw.max_ingested_at,
            by_group=[
                GroupTotals(
                    group=dims_label(dims),
                    events=t.events,
                    value_sum=t.value_sum,
                    last_ingested_at=t.max_ingested_at,
                )
                for dims, t in raw_totals.items()
            ],
        ),
        rollup=RollupView(
            rows=rollup.rollup_rows,
            events=rollup.events,
            value_sum=rollup.value_sum,
            last_ingested_at=rollup.max_ingested_at,
            days=[
                RollupDay(day=d, rows=t.rollup_rows, events=t.events, value_sum=t.value_sum)
                for d, t in sorted(days.items())
            ],
        ),
        raw_vs_rollup=RawVsRollup(
            events=raw.events - rollup.events, value_sum=raw.value_sum - rollup.value_sum
        ),
        from_events=from_events,
        levels=held,
    )


def _window(
    label: str | None,
    start: Any,
    end: Any,
    raw: Iterable[QuantityFact],
    rollup: Iterable[QuantityFact],
    flt: Mapping[str, str],
) -> WindowView:
    rollup_by: dict[Dims, Decimal] = {r.dims: r.quantity for r in rollup}
    return WindowView(
        version=label,
        start=start,
        end=end,
        raw_quantity=_sum_matching(raw, flt),
        rollup_quantity=_sum_matching(rollup, flt),
        groups=[
            GroupQuantity(
                group=dims_label(f.dims),
                quantity=f.quantity,
                events=f.events,
                rollup_quantity=rollup_by.get(f.dims, Decimal(0)),
            )
            for f in raw
            if matches_filter(f.dims, flt)
        ],
    )


def _levels_and_rule(
    meter: MeterFacts, raw: UsageTotals, flt: Mapping[str, str], cycle_ms: int
) -> tuple[list[HeldLevel], Decimal | None]:
    """A gauge's levels (the price's groups), and the quantity straight from the events
    by the meter's rule, where the events give it directly."""
    if meter.aggregation == "count":
        return [], Decimal(raw.events)
    if meter.aggregation == "sum":
        return [], raw.value_sum
    if meter.aggregation not in GAUGES:
        return [], None
    found = levels(s for s in meter.spans if matches_filter(s.dims, flt))
    held = [HeldLevel.of(lv, cycle_ms) for lv in found]
    if meter.aggregation == "time_weighted":
        per_group = time_weighted_quantities(found, cycle_ms)
        return held, sum(per_group.values(), Decimal(0))
    if not found:
        return held, None
    return held, sum((lv.value for lv in last_levels(found)), Decimal(0))
