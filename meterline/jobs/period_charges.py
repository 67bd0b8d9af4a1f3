"""Rate one subscription's billing period: quantities + price versions -> charge lines.

Pure (no I/O, no clock). The close step (meterline/jobs/close.py) gathers the inputs: the
plan's price versions from the ledger, the billable quantities from the warehouse.

Business rules:
- Every price of the plan is rated every period, even with no usage, so a first-tier
  flat fee or a minimum is never skipped (docs/rating.md); a line of 0 says "nothing
  used" explicitly.
- A price targets one group of its meter with `filter` (seats of one seat_type); its
  quantity is the sum over the meter's dimension groups that match the filter.
- A price that changes inside the period is rated per version window: the window
  quantities of an additive meter (sum, count, time_weighted) come from the warehouse
  per window; for max, latest and unique_count the whole period's quantity is rated at
  the version in effect at the period's end (they cannot be split in time).
- Time-weighted quantities are normalized to the full billing cycle, so a partial
  first or last period is prorated.
- Discounts apply to the rounded line of their price (docs/rating.md: minimum, maximum,
  then round, then discount); the plan's minimum commitment trues up the period's
  usage and flat lines (after discounts) when they total less.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing.charges import ChargeLine
from rating import (
    Discount,
    Money,
    Price,
    RatedCharge,
    RoundingMode,
    apply_discount,
    minimum_commitment_true_up,
    rate,
    rate_windows,
)

ADDITIVE = frozenset({"sum", "count", "time_weighted"})
MINIMUM_PRICE_ID = "minimum_commitment"


@dataclass(frozen=True)
class PriceVersionSpec:
    label: str
    starts: datetime  # the instant the version takes effect (local midnight, in UTC)
    price: Price


@dataclass(frozen=True)
class PriceSpec:
    """One price of a plan in one currency, with its versions in time order."""

    price_id: str
    meter: str | None
    filter: Mapping[str, str]
    versions: Sequence[PriceVersionSpec]
    aggregation: str | None = None  # the meter's aggregation; None for a flat fee

    def in_effect(self, instant: datetime) -> PriceVersionSpec | None:
        current = None
        for version in self.versions:
            if version.starts <= instant:
                current = version
        return current


@dataclass(frozen=True)
class Window:
    label: str
    price: Price
    start: datetime
    end: datetime


def version_windows(spec: PriceSpec, start: datetime, end: datetime) -> list[Window]:
    """The price's version windows inside [start, end), in time order."""
    first = spec.in_effect(start)
    cuts = [v for v in spec.versions if start < v.starts < end]
    if first is None and not cuts:
        return []
    windows: list[Window] = []
    bounds = [(first, start)] if first else []
    bounds += [(v, v.starts) for v in cuts]
    for i, (version, begin) in enumerate(bounds):
        finish = bounds[i + 1][1] if i + 1 < len(bounds) else end
        if version is not None and begin < finish:
            windows.append(Window(version.label, version.price, begin, finish))
    return windows


# Quantities of one customer: {(start, end) window: {(meter, dims): quantity}}.
QuantityKey = tuple[str, tuple[tuple[str, str], ...]]
WindowQuantities = Mapping[tuple[datetime, datetime], Mapping[QuantityKey, Decimal]]


def quantity_for(spec: PriceSpec, quantities: Mapping[QuantityKey, Decimal]) -> Decimal:
    """The price's quantity: its meter's groups that match its filter, added up."""
    if spec.meter is None:
        return Decimal(1)
    total = Decimal(0)
    for (meter, dims), value in quantities.items():
        if meter == spec.meter and matches_filter(dims, spec.filter):
            total += value
    return total


def matches_filter(dims: Iterable[tuple[str, str]], price_filter: Mapping[str, str]) -> bool:
    """A dimension group counts towards a price when it has every (key, value) of the
    price's filter. Close (quantity_for) and the audit decide it with this one rule."""
    groups = dict(dims)
    return all(groups.get(k) == v for k, v in price_filter.items())


def windows_needed(
    specs: Sequence[PriceSpec], start: datetime, end: datetime
) -> set[tuple[datetime, datetime]]:
    """The time windows whose quantities the warehouse must provide for this period."""
    needed = {(start, end)}
    for spec in specs:
        if spec.aggregation in ADDITIVE:
            needed |= {(w.start, w.end) for w in version_windows(spec, start, end)}
    return needed


def _line(spec: PriceSpec, label: str, charge: RatedCharge) -> ChargeLine:
    unit = charge.effective_unit_amount if spec.meter is not None else None
    return ChargeLine(
        price_id=spec.price_id,
        price_version=label,
        kind="usage" if spec.meter is not None else "flat",
        quantity=charge.quantity,
        amount=charge.amount,
        amount_precise=charge.amount_precise,
        currency=charge.currency,
        meter=spec.meter,
        unit_amount=unit,
        breakdown=charge.model_dump(mode="json"),
        description=charge.explanation,
        group=",".join(f"{k}={v}" for k, v in sorted(spec.filter.items())) or None,
    )


def rate_price(
    spec: PriceSpec,
    start: datetime,
    end: datetime,
    quantities: WindowQuantities,
    rounding: RoundingMode,
) -> tuple[str, RatedCharge] | None:
    """Rate one price for the period; None if no version of it is in effect then."""
    windows = version_windows(spec, start, end)
    if not windows:
        return None
    last = windows[-1]
    if len(windows) == 1 or spec.aggregation not in ADDITIVE:
        whole = quantity_for(spec, quantities.get((start, end), {}))
        return last.label, rate(last.price, whole, rounding=rounding)
    parts = [
        (w.label, w.price, quantity_for(spec, quantities.get((w.start, w.end), {})))
        for w in windows
    ]
    return last.label, rate_windows(parts, rounding=rounding)


def rate_period(
    specs: Sequence[PriceSpec],
    *,
    start: datetime,
    end: datetime,
    quantities: WindowQuantities,
    discounts: Sequence[Discount] = (),
    minimum_commitment: Money | None = None,
    rounding: RoundingMode = RoundingMode.HALF_UP,
) -> list[ChargeLine]:
    """All charge lines of one subscription's period, in a stable order."""
    lines: list[ChargeLine] = []
    for spec in sorted(specs, key=lambda s: s.price_id):
        rated = rate_price(spec, start, end, quantities, rounding)
        if rated is None:
            continue
        label, charge = rated
        line = _line(spec, label, charge)
        lines.append(line)
        for discount in discounts:
            if discount.price_id != spec.price_id:
                continue
            result = apply_discount(charge, discount, start, end, rounding=rounding)
            if result.applied and result.amount != 0:
                lines.append(
                    ChargeLine(
                        price_id=spec.price_id,
                        price_version=label,
                        kind="discount",
                        quantity=Decimal(1),
                        amount=result.amount,
                        amount_precise=result.amount_precise,
                        currency=result.currency,
                        meter=spec.meter,
                        breakdown=result.model_dump(mode="json"),
                        description=result.explanation,
                        group=line.group,
                    )
                )
    if minimum_commitment is not None and lines:
        currency = lines[0].currency
        total = Money(sum((ln.amount for ln in lines), Decimal(0)), currency)
        true_up = minimum_commitment_true_up(total, minimum_commitment, rounding)
        if true_up is not None and true_up.amount > 0:
            lines.append(
                ChargeLine(
                    price_id=MINIMUM_PRICE_ID,
                    price_version="plan",
                    kind="minimum_true_up",
                    quantity=Decimal(1),
                    amount=true_up.amount,
                    amount_precise=true_up.amount,
                    currency=currency,
                    breakdown={
                        "commitment": str(minimum_commitment.amount),
                        "lines_total": str(total.amount),
                    },
                    description=(
                        f"minimum commitment {minimum_commitment.amount} {currency}: lines total "
                        f"{total.amount}, true-up {true_up.amount}"
                    ),
                )
            )
    return lines
