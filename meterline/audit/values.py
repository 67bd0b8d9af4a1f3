"""The audit's value types: what its reports are made of, and how they read as JSON.

- Numbers are Decimal (``Exact``): a float is refused when a report is built
  (DESIGN.md invariant 4); in JSON a number is its canonical text, one spelling per
  value (``billing.money.canonical``: "10", "0.99", "0"), as it always was.
- Instants are aware datetimes (``Instant``); in JSON, UTC to the microsecond with a "Z"
  ("2026-12-01T00:30:00Z").
- ``Billed`` is a quantity and an amount of one currency (a line, an adjustment, their
  sum), with the arithmetic and the equality rules the audit judges by.
- ``Report`` is the base of every report model: frozen, typed, and written as JSON by
  ``meterline.output.json_text`` under its field names (or the alias a field declares,
  e.g. a level's ``from``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    computed_field,
    model_serializer,
)

from billing.money import canonical, from_minor, minor_text

Dims = tuple[tuple[str, str], ...]


def dims_of(value: Any) -> Dims:
    """A dimension map (dict, or the engine's list of pairs) as a sorted tuple of pairs."""
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in items))


def dims_label(dims: Dims) -> str:
    """``channel=chat,region=eu``; ``-`` for the group without dimensions."""
    return ",".join(f"{k}={v}" for k, v in dims) or "-"


def iso(moment: datetime | None) -> str | None:
    """An instant as UTC ISO 8601 text with a "Z" (None stays None)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def text(value: Decimal) -> str:
    """A number's canonical text (``billing.money.canonical``)."""
    return canonical(value)


Exact = Annotated[Decimal, Strict(), PlainSerializer(canonical, return_type=str)]
Instant = Annotated[datetime, PlainSerializer(iso, return_type=str)]


class Report(BaseModel):
    """Base of the audit's report models: immutable, and read by attribute."""

    model_config = ConfigDict(frozen=True, serialize_by_alias=True, protected_namespaces=())


class Billed(Report):
    """Quantity and amount of one key in one currency: a line, an adjustment, or their
    sum. JSON: quantity, amount_minor, amount_precise and ``amount`` (major units as
    text with the currency's decimals); the currency is the report's."""

    quantity: Exact
    amount_minor: int
    amount_precise: Exact
    currency: str = Field(exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def amount(self) -> str:
        return minor_text(self.amount_minor, self.currency)

    @classmethod
    def zero(cls, currency: str) -> Billed:
        return cls(
            quantity=Decimal(0), amount_minor=0, amount_precise=Decimal(0), currency=currency
        )

    def _same(self, other: Billed) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency} amounts")

    def __add__(self, other: Billed) -> Billed:
        self._same(other)
        return Billed(
            quantity=self.quantity + other.quantity,
            amount_minor=self.amount_minor + other.amount_minor,
            amount_precise=self.amount_precise + other.amount_precise,
            currency=self.currency,
        )

    def __sub__(self, other: Billed) -> Billed:
        self._same(other)
        return Billed(
            quantity=self.quantity - other.quantity,
            amount_minor=self.amount_minor - other.amount_minor,
            amount_precise=self.amount_precise - other.amount_precise,
            currency=self.currency,
        )

    @property
    def is_zero(self) -> bool:
        """Nothing to adjust: the rule of post_adjustments (quantity and minor units)."""
        return self.quantity == 0 and self.amount_minor == 0

    @property
    def is_exactly_zero(self) -> bool:
        return self.is_zero and self.amount_precise == 0


def total(items: Iterable[Billed], currency: str) -> Billed:
    """The sum of amounts of one currency (zero for none)."""
    out = Billed.zero(currency)
    for item in items:
        out = out + item
    return out


class Amount(Report):
    """Integer minor units of a currency; in JSON, major-unit text with the currency's
    decimals (123450 USD -> "1234.50", 12345 KWD -> "12.345"), as reports always wrote
    amounts."""

    minor: int
    currency: str

    def __sub__(self, other: Amount) -> Amount:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency} amounts")
        return Amount(minor=self.minor - other.minor, currency=self.currency)

    @property
    def major(self) -> Decimal:
        """The amount in major units, with exactly the currency's decimals."""
        return from_minor(self.minor, self.currency)

    @model_serializer
    def _major_text(self) -> str:
        return minor_text(self.minor, self.currency)

    def __str__(self) -> str:
        return minor_text(self.minor, self.currency)
