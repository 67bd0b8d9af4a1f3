"""The dispatcher: picks the price model's module and turns its entries into one
RatedCharge, applying free units, the minimum and maximum, and rounding once.

Order of application for one price in one period:
  1. free units are deducted from the quantity (chronologically across windows);
  2. the model prices the billable units (tiers, blocks, percentage...);
  3. minimum_amount raises the subtotal to the floor (a true-up), even at zero usage;
  4. maximum_amount caps the result;
  5. the result is rounded once to the currency's minor unit;
  6. line-item discounts (rating.discounts) then apply to that rounded line.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, DecimalException, localcontext

from rating.decimals import EXACT_CONTEXT, EXACT_PRECISION, ZERO, to_nonnegative
from rating.errors import (
    CurrencyMismatchError,
    FloatNotAllowedError,
    QuantityError,
    RatingError,
)
from rating.models import Flat, Graduated, Package, Percentage, PerUnit, Volume
from rating.models.base import ChargeModel, PeriodState, Window
from rating.money import DECIMAL_ROUNDING, ROUNDING, ROUNDING_CONTEXT, RoundingMode
from rating.price import Price, PriceModel
from rating.result import EntryData, RatedCharge

_MODELS: dict[PriceModel, ChargeModel] = {
    rater.model: rater
    for rater in (PerUnit(), Graduated(), Volume(), Package(), Percentage(), Flat())
}


_VALIDATE_CHARGE = RatedCharge.__pydantic_validator__.validate_python


def charge_model(model: PriceModel) -> ChargeModel:
    """The module that rates prices of this model."""
    return _MODELS[model]


def rate(
    price: Price,
    quantity: Decimal | int | str,
    *,
    rounding: RoundingMode | str = ROUNDING,
) -> RatedCharge:
    """Rate a billable quantity for one period against one price."""
    mode = rounding if type(rounding) is RoundingMode else RoundingMode(rounding)
    if not isinstance(price, Price):
        raise RatingError("rate() needs a Price (use parse_price to build one)")
    if type(quantity) is Decimal and quantity.is_finite() and quantity > 0:
        units = quantity
    else:
        units = _quantity(quantity, None)
    try:
        with localcontext(EXACT_CONTEXT):
            return _rate_one(price, units, None, mode)
    except DecimalException:
        raise _too_large() from None


def rate_windows(
    windows: Sequence[tuple[str, Price, Decimal | int | str]],
    *,
    rounding: RoundingMode | str = ROUNDING,
) -> RatedCharge:
    """Rate a period that spans price versions, as ONE charge.

    windows: (version label, that version's Price, the quantity that fell in the
    window), in chronological order. Tiers apply to the period's total: a window's
    units continue where the previous window's stopped in the tier ladder. The
    breakdown labels each entry with its version."""
    if not windows:
        raise RatingError("rate_windows needs at least one (version, price, quantity) window")
    for position, window in enumerate(windows, start=1):
        if not isinstance(window, tuple | list) or len(window) != 3:
            raise RatingError(
                f"window {position}: expected a (version label, Price, quantity) tuple"
            )
        label, price, _quantity = window
        if not isinstance(label, str):
            raise RatingError(f"window {position}: the version label must be a string")
        if not isinstance(price, Price):
            raise RatingError(f"window {label!r}: expected a Price (use parse_price)")
    return _rate(windows, rounding)


def _quantity(value: object, label: str | None) -> Decimal:
    if type(value) is Decimal and value.is_finite() and value > 0:
        return value
    what = "quantity" if label is None else f"quantity of version window {label!r}"
    try:
        return to_nonnegative(value, what)
    except FloatNotAllowedError:
        raise
    except ValueError as exc:
        raise QuantityError(str(exc)) from None


def _rate(
    windows: Sequence[tuple[str | None, Price, object]],
    rounding: RoundingMode | str,
) -> RatedCharge:
    mode = rounding if type(rounding) is RoundingMode else RoundingMode(rounding)
    quantities = [_quantity(quantity, label) for label, _price, quantity in windows]
    last_label, last_price, _ = windows[-1]
    currency = last_price.currency
    for label, price, _ in windows:
        if price.currency != currency:
            raise CurrencyMismatchError(
                f"version {label!r} is priced in {price.currency} but version "
                f"{last_label!r} in {currency}; one charge has one currency"
            )
    try:
        with localcontext(EXACT_CONTEXT):
            if len(windows) == 1:
                return _rate_one(last_price, quantities[0], last_label, mode)
            return _rate_many(windows, quantities, mode)
    except DecimalException:
        raise _too_large() from None


def _too_large() -> QuantityError:
    return QuantityError(
        f"quantity too large or too precise to rate exactly (the engine keeps "
        f"{EXACT_PRECISION} significant digits and never rounds silently)"
    )


def _free_entry(label: str | None, units: Decimal) -> EntryData:
    return {"kind": "free", "version": label, "units": units, "unit_amount": ZERO, "amount": ZERO}


def _rate_one(
    price: Price, quantity: Decimal, label: str | None, mode: RoundingMode
) -> RatedCharge:
    """The common case, one price for the whole period: the same rules as _rate_many
    with a single window, without its bookkeeping."""
    allowance = price.free_units
    if allowance and quantity:
        free = quantity if quantity < allowance else allowance
        billable = quantity - free
        entries = [_free_entry(label, free)]
        entries += _MODELS[price.model].rate(
            price, Window(label, ZERO, billable, billable, True), PeriodState()
        )
    else:
        free = ZERO
        billable = quantity
        entries = _MODELS[price.model].rate(
            price, Window(label, ZERO, quantity, quantity, True), PeriodState()
        )
    versions = () if label is None else (label,)
    return _charge(entries, quantity, free, billable, label, price, mode, versions)


def _rate_many(
    windows: Sequence[tuple[str | None, Price, object]],
    quantities: list[Decimal],
    mode: RoundingMode,
) -> RatedCharge:
    entries: list[EntryData] = []

    # Free units are a period allowance consumed in chronological order; each window's
    # version says how large the allowance is, so a version that raises it gives the
    # difference to the rest of the period.
    free_used = ZERO
    billable: list[Decimal] = []
    for (label, price, _raw), quantity in zip(windows, quantities, strict=True):
        allowance = price.free_units
        if allowance > free_used and quantity:
            free = min(quantity, allowance - free_used)
            free_used += free
            entries.append(_free_entry(label, free))
            quantity -= free
        billable.append(quantity)

    total = sum(billable, ZERO)
    state = PeriodState()
    start = ZERO
    last_index = len(windows) - 1
    for index, ((label, price, _raw), units) in enumerate(zip(windows, billable, strict=True)):
        end = start + units
        window = Window(label, start, end, total, index == last_index)
        entries.extend(_MODELS[price.model].rate(price, window, state))
        start = end

    last_label, last_price, _ = windows[-1]
    versions = tuple(label for label, _price, _raw in windows if label is not None)
    quantity_total = sum(quantities, ZERO)
    return _charge(
        entries, quantity_total, free_used, total, last_label, last_price, mode, versions
    )


def _charge(
    entries: list[EntryData],
    quantity: Decimal,
    free: Decimal,
    billable: Decimal,
    last_label: str | None,
    last_price: Price,
    mode: RoundingMode,
    versions: tuple[str, ...],
) -> RatedCharge:
    subtotal = ZERO
    for entry in entries:
        subtotal += entry["amount"]

    # The minimum is a floor for this price in the period (charged even at zero usage),
    # the maximum a cap; the version in effect at the period's end sets both.
    minimum_adjustment = ZERO
    maximum_adjustment = ZERO
    amount_precise = subtotal
    if amount_precise < last_price.minimum_amount:
        minimum_adjustment = last_price.minimum_amount - amount_precise
        amount_precise = last_price.minimum_amount
        entries.append(
            {
                "kind": "minimum",
                "version": last_label,
                "units": ZERO,
                "unit_amount": ZERO,
                "amount": minimum_adjustment,
            }
        )
    maximum = last_price.maximum_amount
    if maximum is not None and amount_precise > maximum:
        maximum_adjustment = maximum - amount_precise
        amount_precise = maximum
        entries.append(
            {
                "kind": "maximum",
                "version": last_label,
                "units": ZERO,
                "unit_amount": ZERO,
                "amount": maximum_adjustment,
            }
        )

    currency = last_price.currency
    # Validated by pydantic-core directly (the same validation as RatedCharge(**fields),
    # without the Python-level __init__ wrapper): this is the hot path.
    charge: RatedCharge = _VALIDATE_CHARGE(
        {
            "currency": currency,
            "model": last_price.model,
            "versions": versions,
            "quantity": quantity,
            "free_units": free,
            "billable_quantity": billable,
            "subtotal_precise": subtotal,
            "minimum_adjustment": minimum_adjustment,
            "maximum_adjustment": maximum_adjustment,
            "amount_precise": amount_precise,
            "amount": amount_precise.quantize(
                last_price.minor_unit, rounding=DECIMAL_ROUNDING[mode], context=ROUNDING_CONTEXT
            ),
            "rounding": mode,
            "breakdown": entries,
        }
    )
    return charge
