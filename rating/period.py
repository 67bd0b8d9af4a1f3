"""Rate one subscription's billing period: price versions + quantities -> rated lines.

Pure (no I/O, no clock). The caller gathers the inputs: the plan's price versions
(billing/pricebook.py reads them from the ledger), the billable quantities (the close
job reads them from the warehouse); billing/charges.py maps each rated line to the
ledger line it posts as.

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
from typing import Any, Literal

from rating.discounts import Discount, DiscountResult, apply_discount, minimum_commitment_true_up
from rating.engine import rate, rate_windows
from rating.money import ROUNDING, Money, RoundingMode
from rating.price import Price
from rating.result import RatedCharge

ADDITIVE = frozenset({"sum", "count", "time_weighted"})
MINIMUM_PRICE_ID = "minimum_commitment"
MINIMUM_VERSION = "plan"

LineKind = Literal["usage", "flat", "discount", "minimum_true_up"]


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

    @property
    def group(self) -> str | None:
        """The dimension group the price targets, as line keys spell it
        ("seat_type=advanced"); None for a price on the whole meter."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.filter.items())) or None


@dataclass(frozen=True)
class VersionWindow:
    """The part [start, end) of a period in which one version of a price is in effect."""

    label: str
    price: Price
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class MinimumTrueUp:
    """How a plan's minimum commitment trued up a period: the commitment, the total of
    the lines it covers, and the difference charged."""

    commitment: Money
    lines_total: Money
    true_up: Money

    @property
    def explanation(self) -> str:
        currency = self.commitment.currency
        return (
            f"minimum commitment {self.commitment.amount} {currency}: lines total "
            f"{self.lines_total.amount}, true-up {self.true_up.amount}"
        )


@dataclass(frozen=True, slots=True)
class RatedLine:
    """One line of a period's charges, as rating produces it.

    Key parts: `price_id`, `price_version` (the label of the version in effect at the
    period's end; "plan" for a minimum true-up), `kind` and `group` (the price's
    dimension filter, "seat_type=advanced", or None). Amounts are major units:
    `amount_precise` exact, `amount` rounded once to the currency's minor unit; a
    discount is negative. `detail` is how the amount was reached: the RatedCharge with
    its tier breakdown (usage, flat), the DiscountResult (discount) or the
    MinimumTrueUp; `description` is its one-line explanation."""

    price_id: str
    price_version: str
    kind: LineKind
    group: str | None
    meter: str | None
    quantity: Decimal
    amount: Decimal
    amount_precise: Decimal
    currency: str
    unit_amount: Decimal | None
    detail: RatedCharge | DiscountResult | MinimumTrueUp
    description: str

    def breakdown(self) -> dict[str, Any]:
        """`detail` as JSON data (decimals as plain text), as the ledger stores it."""
        detail = self.detail
        if isinstance(detail, MinimumTrueUp):
            return {
                "commitment": str(detail.commitment.amount),
                "lines_total": str(detail.lines_total.amount),
            }
        return detail.model_dump(mode="json")


def version_windows(spec: PriceSpec, start: datetime, end: datetime) -> list[VersionWindow]:
    """The price's version windows inside [start, end), in time order."""
    first = spec.in_effect(start)
    cuts = [v for v in spec.versions if start < v.starts < end]
    if first is None and not cuts:
        return []
    windows: list[VersionWindow] = []
    bounds = [(first, start)] if first else []
    bounds += [(v, v.starts) for v in cuts]
    for i, (version, begin) in enumerate(bounds):
        finish = bounds[i + 1][1] if i + 1 < len(bounds) else end
        if version is not None and begin < finish:
            windows.append(VersionWindow(version.label, version.price, begin, finish))
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
    if not price_filter:
        return True
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


def rate_price(
    spec: PriceSpec,
    start: datetime,
    end: datetime,
    quantities: WindowQuantities,
    rounding: RoundingMode = ROUNDING,
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
    rounding: RoundingMode = ROUNDING,
) -> list[RatedLine]:
    """All rated lines of one subscription's period [start, end), in a stable order: per
    price (by id) its line and its discount lines, then the minimum true-up."""
    lines: list[RatedLine] = []
    for spec in sorted(specs, key=lambda s: s.price_id):
        rated = rate_price(spec, start, end, quantities, rounding)
        if rated is None:
            continue
        label, charge = rated
        lines.append(_charge_line(spec, label, charge))
        for discount in discounts:
            if discount.price_id == spec.price_id:
                result = apply_discount(charge, discount, start, end, rounding=rounding)
                if result.applied and result.amount != 0:
                    lines.append(_discount_line(spec, label, result))
    if minimum_commitment is not None and lines:
        true_up = _true_up(lines, minimum_commitment, rounding)
        if true_up is not None:
            lines.append(true_up)
    return lines


def _charge_line(spec: PriceSpec, label: str, charge: RatedCharge) -> RatedLine:
    usage = spec.meter is not None
    return RatedLine(
        price_id=spec.price_id,
        price_version=label,
        kind="usage" if usage else "flat",
        group=spec.group,
        meter=spec.meter,
        quantity=charge.quantity,
        amount=charge.amount,
        amount_precise=charge.amount_precise,
        currency=charge.currency,
        unit_amount=charge.effective_unit_amount if usage else None,
        detail=charge,
        description=charge.explanation,
    )


def _discount_line(spec: PriceSpec, label: str, result: DiscountResult) -> RatedLine:
    return RatedLine(
        price_id=spec.price_id,
        price_version=label,
        kind="discount",
        group=spec.group,
        meter=spec.meter,
        quantity=Decimal(1),
        amount=result.amount,
        amount_precise=result.amount_precise,
        currency=result.currency,
        unit_amount=None,
        detail=result,
        description=result.explanation,
    )


def _true_up(
    lines: Sequence[RatedLine], commitment: Money, rounding: RoundingMode
) -> RatedLine | None:
    """The minimum commitment's true-up of the period's lines (after discounts)."""
    currency = lines[0].currency
    total = Money(sum((ln.amount for ln in lines), Decimal(0)), currency)
    true_up = minimum_commitment_true_up(total, commitment, rounding)
    if true_up is None or true_up.amount <= 0:
        return None
    detail = MinimumTrueUp(commitment, total, true_up)
    return RatedLine(
        price_id=MINIMUM_PRICE_ID,
        price_version=MINIMUM_VERSION,
        kind="minimum_true_up",
        group=None,
        meter=None,
        quantity=Decimal(1),
        amount=true_up.amount,
        amount_precise=true_up.amount,
        currency=currency,
        unit_amount=None,
        detail=detail,
        description=detail.explanation,
    )
