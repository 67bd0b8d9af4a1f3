"""Line-item discounts and the plan-level minimum commitment.

Order of application for a price in a period: minimum_amount, then maximum_amount
(both inside rate()), then the line is rounded, then a discount applies to that
rounded line as a separate negative line. A discount can therefore take a line below
its minimum_amount: the minimum is a floor on the list-price usage, the discount a
commercial concession on top of it.

Validity: a discount applies to a period when it is valid at the period's end
(valid_from < period_end <= valid_to), in full, without pro-rating. A discount that
starts mid-period applies to that whole period; one that ends mid-period does not
apply to it. Periods are half-open [period_start, period_end), so a discount valid
until exactly period_end covers that period.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from rating.decimals import EXACT_CONTEXT, ZERO, JsonDecimal, fmt, to_decimal
from rating.errors import CurrencyMismatchError
from rating.money import ROUNDING, Money, RoundingMode, normalize_currency, round_money
from rating.result import RatedCharge


class Discount(BaseModel):
    """A discount on one price of one subscription: percent_off (0 < p <= 100) or
    amount_off (in major units of `currency`), valid in [valid_from, valid_to)
    (None: unbounded). Datetimes must be timezone-aware."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    price_id: str
    percent_off: JsonDecimal | None = None
    amount_off: JsonDecimal | None = None
    currency: str | None = None
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        percent, amount = data.get("percent_off"), data.get("amount_off")
        if (percent is None) == (amount is None):
            raise ValueError("a discount needs exactly one of percent_off or amount_off")
        if percent is not None:
            value = to_decimal(percent, "percent_off")
            if not 0 < value <= 100:
                raise ValueError(f"percent_off must be above 0 and at most 100, got {fmt(value)}")
            data["percent_off"] = value
        if isinstance(amount, Money):
            if data.get("currency") not in (None, amount.currency):
                raise ValueError("amount_off's currency differs from currency")
            data["currency"], amount = amount.currency, amount.amount
        if amount is not None:
            value = to_decimal(amount, "amount_off")
            if value <= 0:
                raise ValueError(f"amount_off must be above 0, got {fmt(value)}")
            if data.get("currency") is None:
                raise ValueError("amount_off needs a currency")
            data["amount_off"] = value
        if data.get("currency") is not None:
            data["currency"] = normalize_currency(data["currency"])
        return data

    @model_validator(mode="after")
    def _window(self) -> Discount:
        if (
            self.valid_from is not None
            and self.valid_to is not None
            and self.valid_to <= self.valid_from
        ):
            raise ValueError("valid_to must be after valid_from")
        return self

    def valid_for_period(self, period_start: datetime, period_end: datetime) -> bool:
        """True when the discount is valid at the period's end (no pro-rating)."""
        _check_period(period_start, period_end)
        if self.valid_from is not None and self.valid_from >= period_end:
            return False
        return self.valid_to is None or self.valid_to >= period_end


class DiscountResult(BaseModel):
    """The discount line for one rated charge: amount <= 0, rounded to the minor unit
    (0 when the discount does not apply), amount_precise unrounded."""

    model_config = ConfigDict(frozen=True)

    price_id: str
    applied: bool
    currency: str
    amount: JsonDecimal
    amount_precise: JsonDecimal
    explanation: str

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


def _check_period(period_start: datetime, period_end: datetime) -> None:
    for name, value in (("period_start", period_start), ("period_end", period_end)):
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime")
    if period_end <= period_start:
        raise ValueError("period_end must be after period_start")


def apply_discount(
    charge: RatedCharge,
    discount: Discount,
    period_start: datetime,
    period_end: datetime,
    *,
    rounding: RoundingMode | str | None = None,
    base: Decimal | None = None,
) -> DiscountResult:
    """The negative line a discount adds to a rated charge for a period.

    The discount is computed on the charge's ROUNDED amount (the line as invoiced;
    `base` when given: a prorated fee's line, rating/period.py), never takes the line
    below zero, and is itself rounded once (with the charge's rounding mode unless
    `rounding` is given). The caller matches discount.price_id to the charge's price."""
    mode = charge.rounding if rounding is None else RoundingMode(rounding)
    currency = charge.currency
    zero = round_money(ZERO, currency, mode)
    if not discount.valid_for_period(period_start, period_end):
        return DiscountResult(
            price_id=discount.price_id,
            applied=False,
            currency=currency,
            amount=zero,
            amount_precise=ZERO,
            explanation=(
                f"discount on {discount.price_id} not applied: not valid at the period's end "
                f"{period_end.isoformat()} (valid {_validity(discount)})"
            ),
        )
    base = charge.amount if base is None else base
    if discount.percent_off is not None:
        off = EXACT_CONTEXT.multiply(base, discount.percent_off).scaleb(-2)
        what = f"{fmt(discount.percent_off)}% off {currency} {fmt(base, grouping=True)}"
    else:
        assert discount.amount_off is not None
        if discount.currency != currency:
            raise CurrencyMismatchError(
                f"discount on {discount.price_id} is in {discount.currency} but the charge "
                f"is in {currency}"
            )
        off = min(discount.amount_off, base)
        what = f"{currency} {fmt(discount.amount_off, grouping=True)} off"
        if off < discount.amount_off:
            what += f", limited to the line's {currency} {fmt(base, grouping=True)}"
    precise = off.copy_negate() if off else ZERO
    amount = round_money(precise, currency, mode)
    return DiscountResult(
        price_id=discount.price_id,
        applied=True,
        currency=currency,
        amount=amount,
        amount_precise=precise,
        explanation=f"discount on {discount.price_id}: {what} = {currency} {fmt(amount)}",
    )


def _validity(discount: Discount) -> str:
    start = discount.valid_from.isoformat() if discount.valid_from else "always"
    end = discount.valid_to.isoformat() if discount.valid_to else "open-ended"
    return f"from {start} to {end}"


def minimum_commitment_true_up(
    lines_total: Money,
    commitment: Money,
    rounding: RoundingMode | str = ROUNDING,
) -> Money | None:
    """The true-up line of a plan's minimum commitment: commitment - lines_total,
    rounded once, when the period's lines total less than the commitment; None
    otherwise (also when the shortfall rounds to zero).

    lines_total is the sum of the period's rounded lines the commitment covers (the
    caller decides which: the catalog says the period's usage lines)."""
    if not isinstance(lines_total, Money) or not isinstance(commitment, Money):
        raise TypeError("lines_total and commitment must be Money")
    if lines_total.currency != commitment.currency:
        raise CurrencyMismatchError(
            f"lines total {lines_total} and commitment {commitment} are in different currencies"
        )
    shortfall = EXACT_CONTEXT.subtract(commitment.amount, lines_total.amount)
    if shortfall <= 0:
        return None
    rounded = round_money(shortfall, commitment.currency, rounding)
    if rounded <= 0:
        return None
    return Money(rounded, commitment.currency)
