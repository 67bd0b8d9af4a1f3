"""The typed result of rating: one RatedCharge per (price, period), with one
breakdown entry per tier, block group or version window, so an auditor can see how
every cent was reached."""

from __future__ import annotations

from decimal import Context, Decimal
from typing import Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, computed_field

from rating.decimals import EXACT_PRECISION, ZERO, JsonDecimal, fmt, plain
from rating.money import Money, RoundingMode
from rating.price import PriceModel

# effective_unit_amount is computed outside the exact context (a division).
_INFO_CONTEXT = Context(prec=EXACT_PRECISION)
_INFO_QUANTUM = Decimal("1e-12")

EntryKind = Literal["unit", "tier", "package", "percentage", "flat", "free", "minimum", "maximum"]


class EntryData(TypedDict):
    """What a price model returns for one breakdown entry (validated into
    BreakdownEntry when the RatedCharge is built)."""

    kind: EntryKind
    version: str | None
    units: Decimal
    unit_amount: Decimal
    amount: Decimal
    flat_amount: NotRequired[Decimal]
    tier: NotRequired[int]
    blocks: NotRequired[Decimal]
    range_from: NotRequired[Decimal]
    range_to: NotRequired[Decimal]


class BreakdownEntry(BaseModel):
    """One line of the computation.

    kind: unit (per_unit), tier (graduated or volume), package, percentage, flat, free
    (units given for free, amount 0), minimum / maximum (the adjustment that brought
    the period's amount up to minimum_amount or down to maximum_amount).
    version: the price version label for charges rated per version window.
    tier: tier number, from 1.
    range_from / range_to: the billable units this entry covers, as positions in the
    period's cumulative billable quantity (range_from exclusive, range_to inclusive);
    a window's units continue where the previous window's stopped.
    units: units priced by this entry (for percentage: the money amount).
    blocks: package blocks charged.
    unit_amount: amount per unit (per block for package; rate / 100 for percentage).
    flat_amount: flat fee charged by this entry.
    amount: units x unit_amount + flat_amount (blocks x unit_amount for package),
    precise (unrounded): the line is rounded once, on the charge's total."""

    model_config = ConfigDict(frozen=True)

    kind: EntryKind
    version: str | None = None
    tier: int | None = None
    range_from: JsonDecimal | None = None
    range_to: JsonDecimal | None = None
    units: JsonDecimal
    blocks: JsonDecimal | None = None
    unit_amount: JsonDecimal
    flat_amount: JsonDecimal = ZERO
    amount: JsonDecimal


class RatedCharge(BaseModel):
    """A price rated for one period.

    quantity: what was measured; free_units: how much of it was given for free;
    billable_quantity = quantity - free_units. subtotal_precise is the sum of the
    priced entries; minimum_adjustment (>= 0) and maximum_adjustment (<= 0) bring it
    within minimum_amount / maximum_amount; amount_precise is the result, exact;
    amount is amount_precise rounded once to the currency's minor unit.
    effective_unit_amount = amount_precise / billable_quantity (12 decimal places,
    informational; None when nothing is billable). The sum of breakdown amounts equals
    amount_precise exactly."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    currency: str
    model: PriceModel
    versions: tuple[str, ...] = ()
    quantity: JsonDecimal
    free_units: JsonDecimal
    billable_quantity: JsonDecimal
    subtotal_precise: JsonDecimal
    minimum_adjustment: JsonDecimal
    maximum_adjustment: JsonDecimal
    amount_precise: JsonDecimal
    amount: JsonDecimal
    rounding: RoundingMode
    breakdown: tuple[BreakdownEntry, ...]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_unit_amount(self) -> JsonDecimal | None:
        """amount_precise / billable_quantity to 12 decimal places; informational (a
        division is generally inexact). None when nothing is billable."""
        if not self.billable_quantity:
            return None
        quotient = _INFO_CONTEXT.divide(self.amount_precise, self.billable_quantity)
        return plain(quotient.quantize(_INFO_QUANTUM, context=_INFO_CONTEXT))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def explanation(self) -> str:
        """One line a person can check with a calculator."""
        return explain(self)

    @property
    def money(self) -> Money:
        """The rounded amount as Money."""
        return Money(self.amount, self.currency)


def _fragment(entry: BreakdownEntry, model: PriceModel) -> str:
    units = fmt(entry.units, grouping=True)
    unit_amount = fmt(entry.unit_amount, grouping=True)
    if entry.kind == "tier":
        if model is PriceModel.VOLUME:
            text = f"{units} × {unit_amount} (volume tier {entry.tier})"
        else:
            text = f"tier {entry.tier}: {units} × {unit_amount}"
    elif entry.kind == "package":
        blocks = fmt(entry.blocks if entry.blocks is not None else ZERO, grouping=True)
        text = f"{units} units in {blocks} block(s) × {unit_amount}"
    elif entry.kind == "percentage":
        percent = fmt(entry.unit_amount.scaleb(2), grouping=True)
        text = f"{percent}% of {units}"
    elif entry.kind == "flat":
        text = f"flat fee {fmt(entry.amount, grouping=True)}"
    else:
        text = f"{units} × {unit_amount}"
    if entry.kind != "flat" and entry.flat_amount:
        text += f" + flat {fmt(entry.flat_amount, grouping=True)}"
    if entry.version is not None:
        text = f"[{entry.version}] {text}"
    return text


def explain(charge: RatedCharge) -> str:
    head = f"quantity {fmt(charge.quantity, grouping=True)}"
    if charge.free_units:
        head += f" ({fmt(charge.free_units, grouping=True)} free)"
    parts = [
        _fragment(entry, charge.model)
        for entry in charge.breakdown
        if entry.kind not in ("free", "minimum", "maximum")
    ]
    text = f"{head}, {charge.model}: {' + '.join(parts) or 'nothing to price'}"
    text += f" = {fmt(charge.subtotal_precise, grouping=True)}"
    if charge.minimum_adjustment:
        text += f"; raised to the minimum by {fmt(charge.minimum_adjustment, grouping=True)}"
    if charge.maximum_adjustment:
        text += f"; capped at the maximum by {fmt(charge.maximum_adjustment, grouping=True)}"
    rounding = "half-up" if charge.rounding is RoundingMode.HALF_UP else "half-even"
    text += f" → {charge.currency} {fmt(charge.amount, grouping=True)} (rounded {rounding})"
    return text
