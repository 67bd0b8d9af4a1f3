"""Rating: (price, billable quantity) -> rated charge. Pure code: no I/O, no clock, no
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
from rating.money import Money, RoundingMode, minor_unit_exponent, normalize_currency, round_money
from rating.price import Price, PriceModel, Tier, parse_price
from rating.result import BreakdownEntry, RatedCharge

__all__ = [
    "BreakdownEntry",
    "CurrencyMismatchError",
    "Discount",
    "DiscountResult",
    "FloatNotAllowedError",
    "Money",
    "Price",
    "PriceError",
    "PriceModel",
    "QuantityError",
    "RatedCharge",
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
    "rate_windows",
    "round_money",
]
