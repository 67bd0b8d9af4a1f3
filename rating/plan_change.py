"""Rate a billing period across plan changes: each part of the period by its plan's prices.

Pure (no I/O, no clock). A subscription that changes plan at an instant inside a period
has the period split into `PlanSegment`s [start, end), one per plan in effect, in time
order; billing/pricebook.py builds them from the ledger's recorded changes. The rules
(docs/rating.md, "Plan changes"):

- Usage before the change is rated by the old plan's price, usage after it by the new
  plan's; a price only one plan has bills only the part of the period where that plan
  is in effect (nothing in the other part).
- Prices are matched across the change by price id: a price id both plans have makes
  ONE line for the period (its key names the version in effect at the period's end),
  so an invoice never holds two lines of one price.
- Tiers: the person making the change chooses, per change. `continue`: the new plan's
  ladder carries on at the position the period's usage had reached (the period's usage
  is consumed chronologically across both plans' ladders, as across price versions,
  rating.rate_windows). `restart`: the new plan's ladder (and its free units and
  minimum_amount) starts again from 0 at the change, as if the rest of the period were a
  period of its own. Only additive meters (sum, count, time_weighted) can continue:
  max, unique_count and latest are measured per part and priced by each part's plan.
- Fixed fees (flat prices, prices on a `latest` meter) are prorated across the split:
  each plan's fee times the share of the billing cycle's elapsed seconds its part
  covers (rating.period.prorated), unless that plan's price says `proration: full`,
  which bills it in full for its part; a seat price bills the level held at the end of
  each part.
- Discounts apply to each price's line as rounded (as in rating.period); the minimum
  commitment is the one of the plan in effect at the period's end, passed by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from typing import Literal

from rating.discounts import Discount, apply_discount
from rating.engine import rate_windows
from rating.money import ROUNDING, Money, RoundingMode, round_money
from rating.period import (
    ADDITIVE,
    PriceSpec,
    Proration,
    RatedLine,
    WindowQuantities,
    _charge_line,
    _discount_line,
    _true_up,
    charge_prorates,
    prorated,
    quantity_for,
    rate_period,
    rate_price,
    version_windows,
    windows_needed,
)
from rating.result import RatedCharge

TierMode = Literal["continue", "restart"]
TIER_MODES: tuple[TierMode, ...] = ("continue", "restart")


@dataclass(frozen=True)
class PlanSegment:
    """The part [start, end) of a period in which one plan is in effect, with that plan's
    prices in the subscription's currency. `tiers` is the choice made by the change that
    starts this segment (ignored on the period's first segment)."""

    plan: str
    start: datetime
    end: datetime
    specs: Sequence[PriceSpec]
    tiers: TierMode = "continue"

    def spec(self, price_id: str) -> PriceSpec | None:
        return next((s for s in self.specs if s.price_id == price_id), None)


@dataclass(frozen=True)
class _Part:
    """One price rated over one run of segments: its label (the version in effect at the
    run's end), its charge, and its proration when it is a prorated fixed fee."""

    label: str
    charge: RatedCharge
    proration: Proration | None
    plans: tuple[str, ...]

    @property
    def amount_precise(self) -> Decimal:
        return self.proration.amount_precise if self.proration else self.charge.amount_precise

    def text(self) -> str:
        how = self.charge.explanation
        if self.proration is not None:
            how = f"{how}; {self.proration.explanation}"
        return f"{' then '.join(self.plans)}: {how}"


def segment_windows(segments: Sequence[PlanSegment]) -> set[tuple[datetime, datetime]]:
    """The time windows whose quantities the warehouse must provide: each segment's own
    window (for every aggregation: a segment is rated on its own quantities) and its
    prices' version windows (additive meters)."""
    needed: set[tuple[datetime, datetime]] = set()
    for seg in segments:
        needed |= windows_needed(seg.specs, seg.start, seg.end)
    return needed


def rate_segments(
    segments: Sequence[PlanSegment],
    *,
    quantities: WindowQuantities,
    discounts: Sequence[Discount] = (),
    minimum_commitment: Money | None = None,
    rounding: RoundingMode = ROUNDING,
    cycle: tuple[datetime, datetime] | None = None,
) -> list[RatedLine]:
    """All rated lines of a period split by plan changes into `segments` (contiguous, in
    time order, covering the period), in rating.rate_period's order: per price (by id)
    its line and its discount lines, then the minimum true-up. `cycle` is the billing
    cycle the period is part of (None: the period is a whole cycle). One segment (no
    change inside the period) is rating.rate_period itself. Credit grants are drawn down
    from these lines by the caller (rating.period.apply_credits), as for any period.
    Raises ValueError for segments that are not contiguous."""
    if not segments:
        return []
    if len(segments) == 1:
        (seg,) = segments
        return rate_period(
            seg.specs,
            start=seg.start,
            end=seg.end,
            quantities=quantities,
            discounts=discounts,
            minimum_commitment=minimum_commitment,
            rounding=rounding,
            cycle=cycle,
        )
    contiguous = all(a.end == b.start for a, b in pairwise(segments))
    if not contiguous or any(not seg.start < seg.end for seg in segments):
        raise ValueError("plan segments must be contiguous and in time order")
    start, end = segments[0].start, segments[-1].end
    whole_cycle = cycle if cycle is not None else (start, end)
    price_ids = sorted({s.price_id for seg in segments for s in seg.specs})
    lines: list[RatedLine] = []
    for price_id in price_ids:
        owned = [(seg, spec) for seg in segments if (spec := seg.spec(price_id)) is not None]
        spec = owned[-1][1]
        parts = _rate_parts(segments, owned, quantities, whole_cycle, rounding)
        if not parts:
            continue
        line = _line(spec, parts, rounding)
        lines.append(line)
        for discount in discounts:
            if discount.price_id == price_id:
                result = apply_discount(
                    parts[-1].charge,
                    discount,
                    start,
                    end,
                    rounding=rounding,
                    base=line.amount,
                )
                if result.applied and result.amount != 0:
                    lines.append(_discount_line(spec, line.price_version, result))
    if minimum_commitment is not None and lines:
        true_up = _true_up(lines, minimum_commitment, rounding)
        if true_up is not None:
            lines.append(true_up)
    return lines


def _rate_parts(
    segments: Sequence[PlanSegment],
    owned: Sequence[tuple[PlanSegment, PriceSpec]],
    quantities: WindowQuantities,
    cycle: tuple[datetime, datetime],
    rounding: RoundingMode,
) -> list[_Part]:
    """The price's charges over the runs of segments it is rated on together."""
    parts: list[_Part] = []
    for run in _runs(segments, owned):
        seg, spec = run[-1]
        if len(run) == 1 or spec.fixed_fee or spec.aggregation not in ADDITIVE:
            for seg, spec in run:
                rated = rate_price(spec, seg.start, seg.end, quantities, rounding)
                if rated is None:
                    continue
                label, charge = rated
                proration = None
                if spec.fixed_fee and charge_prorates(spec, label):
                    proration = prorated(charge, (seg.start, seg.end), cycle, rounding)
                parts.append(_Part(label, charge, proration, (seg.plan,)))
            continue
        windows = [
            (w.label, w.price, quantity_for(spec, quantities.get((w.start, w.end), {})))
            for seg, spec in run
            for w in version_windows(spec, seg.start, seg.end)
        ]
        if windows:
            charge = rate_windows(windows, rounding=rounding)
            plans = tuple(dict.fromkeys(seg.plan for seg, _ in run))
            parts.append(_Part(windows[-1][0], charge, None, plans))
    return parts


def _runs(
    segments: Sequence[PlanSegment], owned: Sequence[tuple[PlanSegment, PriceSpec]]
) -> list[list[tuple[PlanSegment, PriceSpec]]]:
    """The owned segments grouped into runs whose tiers continue: a new run starts at a
    segment whose change (or any change since the previous owned segment) restarts
    tiers, or after a segment without the price (its ladder had nothing to carry)."""
    index = {id(seg): i for i, seg in enumerate(segments)}
    runs: list[list[tuple[PlanSegment, PriceSpec]]] = []
    previous = -2
    for seg, spec in owned:
        i = index[id(seg)]
        between = segments[previous + 1 : i + 1] if previous >= 0 else []
        restart = previous < 0 or i != previous + 1 or any(s.tiers == "restart" for s in between)
        if restart:
            runs.append([])
        runs[-1].append((seg, spec))
        previous = i
    return runs


def _line(spec: PriceSpec, parts: Sequence[_Part], rounding: RoundingMode) -> RatedLine:
    """One line of the price for the period: the rate_period line when one part makes
    it, else the parts added up exactly and rounded once; its description names the
    plans of each part."""
    description = "plan change: " + " + ".join(p.text() for p in parts)
    if len(parts) == 1:
        part = parts[0]
        line = _charge_line(spec, part.label, part.charge, part.proration)
        return replace(line, description=description)
    last = parts[-1].charge
    precise = sum((p.amount_precise for p in parts), Decimal(0))
    usage = spec.meter is not None
    additive = spec.aggregation in ADDITIVE
    quantity = sum((p.charge.quantity for p in parts), Decimal(0)) if additive else last.quantity
    detail = _combined(parts, quantity, rounding)
    amount = round_money(precise, last.currency, rounding)
    unit_amount = None
    if usage and quantity:
        unit_amount = detail.effective_unit_amount if not spec.fixed_fee else None
    return RatedLine(
        price_id=spec.price_id,
        price_version=parts[-1].label,
        kind="usage" if usage else "flat",
        group=spec.group,
        meter=spec.meter,
        quantity=quantity,
        amount=amount,
        amount_precise=precise,
        currency=last.currency,
        unit_amount=unit_amount,
        detail=detail,
        description=description,
    )


def _combined(parts: Sequence[_Part], quantity: Decimal, rounding: RoundingMode) -> RatedCharge:
    """The parts' charges as one RatedCharge (before proration: the breakdown of each
    part's charge, in time order; its amount is their sum, as each part was rated)."""
    charges = [p.charge for p in parts]
    last = charges[-1]
    precise = sum((c.amount_precise for c in charges), Decimal(0))

    def total(field: str) -> Decimal:
        return sum((getattr(c, field) for c in charges), Decimal(0))

    return RatedCharge(
        currency=last.currency,
        model=last.model,
        versions=tuple(dict.fromkeys(v for p in parts for v in (p.charge.versions or (p.label,)))),
        quantity=quantity,
        free_units=total("free_units"),
        billable_quantity=total("billable_quantity"),
        subtotal_precise=total("subtotal_precise"),
        minimum_adjustment=total("minimum_adjustment"),
        maximum_adjustment=total("maximum_adjustment"),
        amount_precise=precise,
        amount=round_money(precise, last.currency, rounding),
        rounding=rounding,
        # Each entry names the version that priced it (a single window's entries name
        # none), so the breakdown says which plan's price each part was.
        breakdown=tuple(
            entry if entry.version is not None else entry.model_copy(update={"version": p.label})
            for p in parts
            for entry in p.charge.breakdown
        ),
    )
