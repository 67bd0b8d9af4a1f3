"""Rating: (price, billable quantity) -> rated charge, and a period's prices and
quantities -> rated lines (rating.period). Pure code: no I/O, no clock, no
database, nothing of meterline's other packages. Decimal only; see docs/rating.md."""

from rating.discounts import Discount, DiscountResult, apply_discount, minimum_commitment_true_up
from rating.engine import charge_model, rate, rate_windows
from rating.errors import (
    CurrencyMismatchError,
    FloatNotAllowedError,
    PriceError,
    QuantityError,
    RatingError,
)
from rating.money import (
    ROUNDING,
    Money,
    RoundingMode,
    minor_unit_exponent,
    normalize_currency,
    round_money,
)
from rating.period import MinimumTrueUp, PriceSpec, PriceVersionSpec, RatedLine, rate_period
from rating.price import Price, PriceModel, Tier, parse_price
from rating.result import BreakdownEntry, RatedCharge

__all__ = [
    "ROUNDING",
    "BreakdownEntry",
    "CurrencyMismatchError",
    "Discount",
    "DiscountResult",
    "FloatNotAllowedError",
    "MinimumTrueUp",
    "Money",
    "Price",
    "PriceError",
    "PriceModel",
    "PriceSpec",
    "PriceVersionSpec",
    "QuantityError",
    "RatedCharge",
    "RatedLine",
    "RatingError",
    "RoundingMode",
    "Tier",
    "apply_discount",
    "charge_model",
    "minimum_commitment_true_up",
    "minor_unit_exponent",
    "normalize_currency",
    "parse_price",
    "rate",
    "rate_period",
    "rate_windows",
    "round_money",
]
