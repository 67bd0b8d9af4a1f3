"""The price vocabulary (the catalog's YAML and `meterline quote`'s JSON use exactly
these names) and its validation.

Prices are validated once, when the catalog loads (parse_price); rating trusts a Price
and does no per-call checks. Every problem is reported with the price's name, the
field and, for tiers, the tier number (tiers are numbered from 1, as in the breakdown).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from rating.decimals import ZERO, JsonDecimal, fmt, to_decimal, to_nonnegative
from rating.errors import PriceError
from rating.money import minor_unit, normalize_currency


class PriceModel(StrEnum):
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"
    PERCENTAGE = "percentage"
    FLAT = "flat"


# Fields each model needs, and optional fields only that model accepts. The common
# fields (currency, model, free_units, minimum_amount, maximum_amount, proration) apply to all.
_REQUIRED: dict[PriceModel, tuple[str, ...]] = {
    PriceModel.PER_UNIT: ("unit_amount",),
    PriceModel.GRADUATED: ("tiers",),
    PriceModel.VOLUME: ("tiers",),
    PriceModel.PACKAGE: ("package_size", "package_amount"),
    PriceModel.PERCENTAGE: ("rate",),
    PriceModel.FLAT: ("amount",),
}
_OPTIONAL: dict[PriceModel, tuple[str, ...]] = {PriceModel.PACKAGE: ("round",)}
_COMMON = ("currency", "model", "free_units", "minimum_amount", "maximum_amount", "proration")
#: How a fixed fee is billed for a partial first or last period (rating/period.py,
#: `prorated`): "prorate" (the default) bills the share of the billing cycle's elapsed
#: time, "full" bills the whole period's amount. Stored as None for "prorate", so the
#: default written out or left out is one price.
PRORATION_OPTIONS = ("prorate", "full")
_MODEL_SPECIFIC = (
    "unit_amount",
    "tiers",
    "package_size",
    "package_amount",
    "round",
    "rate",
    "amount",
)
_ALL_FIELDS = _COMMON + _MODEL_SPECIFIC
_TIER_FIELDS = ("up_to", "unit_amount", "flat_amount")


class Tier(BaseModel):
    """One step of a graduated or volume ladder. up_to is the INCLUSIVE upper bound in
    units (None: no upper bound, last tier only); the tier's lower bound is the
    previous tier's up_to (exclusive), or 0 for the first tier (inclusive)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    up_to: JsonDecimal | None = None
    unit_amount: JsonDecimal = ZERO
    flat_amount: JsonDecimal = ZERO


class Price(BaseModel):
    """A validated price. Construct with parse_price (which names the price in its
    errors) or Price(**fields) / Price.model_validate(fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    currency: str
    model: PriceModel
    unit_amount: JsonDecimal | None = None
    tiers: tuple[Tier, ...] | None = None
    package_size: JsonDecimal | None = None
    package_amount: JsonDecimal | None = None
    round: Literal["up", "down"] | None = None
    rate: JsonDecimal | None = None
    amount: JsonDecimal | None = None
    free_units: JsonDecimal = ZERO
    minimum_amount: JsonDecimal = ZERO
    maximum_amount: JsonDecimal | None = None
    proration: Literal["full"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _validate_vocabulary(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return clean_price(data)
        return data

    def model_post_init(self, context: Any, /) -> None:
        # Precompute what the rating hot path reads, once, at load.
        _ = self.ladder, self.rate_fraction, self.minor_unit

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Price:
        """A copy, validated again: a price is never unchecked (and the precomputed
        ladder always matches the tiers)."""
        return Price.model_validate({**self.model_dump(), **(update or {})})

    @cached_property
    def ladder(self) -> tuple[tuple[Decimal, Decimal | None, Decimal, Decimal], ...]:
        """(lower bound, upper bound or None, unit_amount, flat_amount) for each tier:
        tier i covers the units (lower, upper]; the first tier also covers 0."""
        ladder = []
        lower = ZERO
        for tier in self.tiers or ():
            ladder.append((lower, tier.up_to, tier.unit_amount, tier.flat_amount))
            if tier.up_to is not None:
                lower = tier.up_to
        return tuple(ladder)

    @cached_property
    def minor_unit(self) -> Decimal:
        """The currency's minor unit as a quantum (Decimal('0.01') for USD)."""
        return minor_unit(self.currency)

    @cached_property
    def rate_fraction(self) -> Decimal:
        """rate / 100, for the percentage model."""
        return ZERO if self.rate is None else self.rate.scaleb(-2)


def parse_price(data: Mapping[str, Any], *, name: str) -> Price:
    """Validate a price definition from the catalog or `quote`.

    Raises PriceError whose message starts with "price '<name>': " and names the field
    (and the tier, numbered from 1) that is wrong. Floats are rejected: amounts must be
    decimal strings (or ints)."""
    if not isinstance(data, Mapping):
        raise PriceError(f"price {name!r}: must be a mapping of fields, got {type(data).__name__}")
    try:
        cleaned = clean_price(data)
    except ValueError as exc:
        raise PriceError(f"price {name!r}: {exc}") from None
    return Price.model_validate(cleaned)


def clean_price(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a price mapping and return its fields converted to Decimal (raises
    ValueError naming the field). Idempotent: cleaning a cleaned mapping is a no-op."""
    given = {key: value for key, value in data.items() if value is not None}
    unknown = [key for key in given if key not in _ALL_FIELDS]
    if unknown:
        raise ValueError(f"unknown field {str(unknown[0])!r} (fields: {', '.join(_ALL_FIELDS)})")

    if "currency" not in given:
        raise ValueError("currency is required (an ISO 4217 code such as 'USD')")
    currency = normalize_currency(given["currency"])

    if "model" not in given:
        raise ValueError(f"model is required (one of: {', '.join(PriceModel)})")
    raw_model = given["model"]
    try:
        model = PriceModel(raw_model.strip().lower() if isinstance(raw_model, str) else raw_model)
    except ValueError:
        raise ValueError(f"model {raw_model!r} is not one of: {', '.join(PriceModel)}") from None

    for field in _REQUIRED[model]:
        if field not in given:
            raise ValueError(f"{field} is required for model {model}")
    accepted = set(_REQUIRED[model]) | set(_OPTIONAL.get(model, ()))
    for field in _MODEL_SPECIFIC:
        if field in given and field not in accepted:
            raise ValueError(f"field {field!r} does not apply to model {model}")

    out: dict[str, Any] = {"currency": currency, "model": model}

    if "unit_amount" in given:
        out["unit_amount"] = to_nonnegative(given["unit_amount"], "unit_amount")
    if "tiers" in given:
        out["tiers"] = _clean_tiers(given["tiers"])
    if "package_size" in given:
        size = to_decimal(given["package_size"], "package_size")
        if size <= 0:
            raise ValueError(f"package_size must be above 0, got {fmt(size)}")
        out["package_size"] = size
    if "package_amount" in given:
        out["package_amount"] = to_nonnegative(given["package_amount"], "package_amount")
    if model is PriceModel.PACKAGE:
        rounding = given.get("round", "up")
        if rounding not in ("up", "down"):
            raise ValueError(
                f"round must be 'up' (count started blocks) or 'down' (count completed "
                f"blocks), got {rounding!r}"
            )
        out["round"] = rounding
    if "rate" in given:
        rate = to_nonnegative(given["rate"], "rate")
        if rate > 100:
            raise ValueError(
                f"rate is a percentage and must be at most 100, got {fmt(rate)} "
                "(write 2.5 for 2.5%)"
            )
        out["rate"] = rate
    if "amount" in given:
        out["amount"] = to_nonnegative(given["amount"], "amount")

    free_units = to_nonnegative(given.get("free_units", 0), "free_units")
    if model is PriceModel.FLAT and free_units:
        raise ValueError(
            "field 'free_units' does not apply to model flat (a flat fee ignores quantity)"
        )
    out["free_units"] = free_units

    minimum = to_nonnegative(given.get("minimum_amount", 0), "minimum_amount")
    out["minimum_amount"] = minimum
    if "maximum_amount" in given:
        maximum = to_nonnegative(given["maximum_amount"], "maximum_amount")
        if maximum < minimum:
            raise ValueError(
                f"maximum_amount {fmt(maximum)} is below minimum_amount {fmt(minimum)}"
            )
        out["maximum_amount"] = maximum
    if "proration" in given:
        proration = given["proration"]
        if proration not in PRORATION_OPTIONS:
            raise ValueError(
                f"proration must be 'prorate' (a partial first or last period bills its share"
                f" of the billing cycle) or 'full' (it bills the whole amount), got {proration!r}"
            )
        if proration == "full":
            out["proration"] = "full"
    return out


def _clean_tiers(raw: object) -> tuple[dict[str, Decimal | None], ...]:
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence):
        raise ValueError("tiers must be a list of tiers")
    if not raw:
        raise ValueError("tiers must list at least one tier")
    tiers: list[dict[str, Decimal | None]] = []
    previous: Decimal | None = None
    last = len(raw)
    for number, item in enumerate(raw, start=1):
        where = f"tier {number}"
        if isinstance(item, Tier):
            item = item.model_dump()
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: must be a mapping with up_to, unit_amount, flat_amount")
        unknown = [key for key in item if key not in _TIER_FIELDS]
        if unknown:
            raise ValueError(
                f"{where}: unknown field {str(unknown[0])!r} (fields: {', '.join(_TIER_FIELDS)})"
            )
        if item.get("unit_amount") is None and item.get("flat_amount") is None:
            raise ValueError(f"{where}: needs unit_amount or flat_amount")
        raw_up_to = item.get("up_to")
        if isinstance(raw_up_to, str) and raw_up_to.strip().lower() in ("inf", "infinity"):
            raise ValueError(f"{where}: write up_to: null for a tier with no upper bound")
        try:
            unit_amount = _amount_or_zero(item.get("unit_amount"), "unit_amount")
            flat_amount = _amount_or_zero(item.get("flat_amount"), "flat_amount")
            up_to = None if raw_up_to is None else to_decimal(raw_up_to, "up_to")
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

        if up_to is None:
            if number != last:
                raise ValueError(
                    f"{where}: up_to is null or missing (no upper bound) but only the last tier "
                    f"may be unbounded; tier {number + 1} would never be reached"
                )
        elif previous is None:
            if up_to <= 0:
                raise ValueError(f"{where}: up_to must be above 0, got {fmt(up_to)}")
        elif up_to <= previous:
            raise ValueError(
                f"{where}: up_to {fmt(up_to)} is not above the previous tier's {fmt(previous)}"
            )
        if number == last and up_to is not None:
            raise ValueError(
                f"{where}: the last tier must have up_to null (no upper bound); with "
                f"up_to {fmt(up_to)} quantities above {fmt(up_to)} would have no price"
            )
        tiers.append({"up_to": up_to, "unit_amount": unit_amount, "flat_amount": flat_amount})
        previous = up_to
    return tuple(tiers)


def _amount_or_zero(value: object, what: str) -> Decimal:
    return ZERO if value is None else to_nonnegative(value, what)
