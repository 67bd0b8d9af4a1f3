"""One credit grant as a file row or a `meterline credits grant` gives it, and the rule
for each field (docs/credits.md). Checked on its own here; against the ledger (the
customer, subscription, catalog, an existing grant of the same id) in store.py.

- ``grant_id``, ``customer_id``, ``subscription_id``: printable ids, as the customers
  file takes them (billing/customers/rows.py), at most 64 characters, no ``|``.
- ``kind``: ``paid_commit`` (the customer paid ``price_paid`` for it, required) or
  ``promotional`` (no ``price_paid``).
- what it holds: ``amount`` (money, major units of ``currency``, a whole number of its
  minor unit, above zero, at most the ledger's largest amount: 2^63-1 minor units) or
  ``units`` of one ``meter`` (above zero, below 10^29, at most 9 decimal places: the
  quantities a meter counts): exactly one. Numbers are written as JSON's (rating.decimals).
- ``priority``: a whole number 0..100, lower drawn first (Stripe's credit grant
  priority); 50 when empty.
- ``effective_from`` (required) and ``expires_at`` (empty: never): a date ``YYYY-MM-DD``,
  meaning midnight in the subscription's timezone (the customer's without one), or an
  RFC 3339 time with its offset; ``expires_at`` after ``effective_from``.
- ``applies_to``: ``all_usage`` (empty: the same), ``prices:ID,ID`` or ``meters:M,M``.
- ``rollover``: true or false (empty: false). A grant that rolls over has an
  ``expires_at`` (its term ends there and the next begins) and an id of at most 55
  characters: the next term's grant is named ``<grant_id>:rollover`` (64 at most). No
  grant given is named ``...:rollover``: that suffix names the grants a rollover creates.
- ``reason``: why the grant is given, printable text (kept with the grant).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from billing.bulk import MAX_AMOUNT_MINOR
from billing.customers.rows import ID_MAX, _amount, _day, _ident, _kind, _printable, _text
from billing.models import GRANT_KINDS, GRANT_SCOPES
from billing.money import exponent, from_minor, to_minor
from rating.decimals import NUMBER_PATTERN

#: Stripe's credit grant priority: 0..100, lower first; its default.
PRIORITY_RANGE = (0, 100)
DEFAULT_PRIORITY = 50
_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9:.]+(Z|z|[+-][0-9]{2}:[0-9]{2})\Z")
_WHOLE = re.compile(r"[0-9]{1,3}\Z")
_TRUE = {"true": True, "false": False}
_NUMBER = re.compile(NUMBER_PATTERN + r"\Z")
#: Units are quantities of a meter: the warehouse's range, Decimal(38, 9) (the catalog's
#: limit on its quantities, docs/catalog.md "Limits").
UNITS_LIMIT = Decimal(10) ** 29
UNITS_PLACES = 9
#: The next term's grant of a grant that rolls over is named ``<grant_id>:rollover``
#: (billing/credits/store.py); so such a grant's id leaves room for the suffix.
ROLLOVER_SUFFIX = ":rollover"
ROLLOVER_ID_MAX = ID_MAX - len(ROLLOVER_SUFFIX)


def _when(value: Any) -> date | datetime | None:
    """A date (midnight in the grant's timezone, resolved against the ledger) or an
    aware instant written RFC 3339 with its offset."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("a time needs its UTC offset (2026-11-01T00:00:00Z)")
        return value
    if isinstance(value, str) and "T" in value.upper():
        if not _INSTANT.match(value):
            raise ValueError(
                f"{value!r} is not a date YYYY-MM-DD or a time with its offset"
                " (2026-11-01T00:00:00Z)"
            )
        try:
            moment = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            # Python's own words (an offset of 24 hours "must be a timedelta strictly
            # between ...") are not the person's: say what the value should look like.
            raise ValueError(
                f"{value!r} is not a date YYYY-MM-DD or a time with its offset"
                " (2026-11-01T00:00:00Z; hours 00..23, offsets within +-23:59)"
            ) from None
        _in_range(moment.date())
        return moment
    return _in_range(value)


def _in_range(value: Any) -> date | None:
    """The customers file's date rule, without its hint about a subscription's end."""
    try:
        return _day(value)
    except ValueError as exc:
        raise ValueError(str(exc).split(" (leave end empty")[0]) from None


def _decimal(value: Any) -> Decimal | None:
    checked = _amount(value)
    if checked is None:
        return None
    try:
        number = Decimal(checked) if not isinstance(checked, Decimal) else checked
    except ArithmeticError:
        raise ValueError(f"must be a decimal number, not {checked!r}") from None
    if not number.is_finite():
        raise ValueError(f"must be a finite decimal number, not {checked}")
    # One grammar for every number a person writes (rating.decimals, JSON's): Decimal()
    # alone also reads "1_000" as 1000.
    if isinstance(checked, str) and not _NUMBER.match(checked.strip()):
        raise ValueError(f'must be a decimal number, not {checked!r} (write e.g. "10.50")')
    return number


def _money_problem(name: str, number: Decimal, currency: str) -> str | None:
    """Why ``number`` cannot be an amount of ``currency`` in the ledger (None: it can):
    a whole number of the minor unit, at most 2^63-1 of them (billing.bulk)."""
    limit = from_minor(MAX_AMOUNT_MINOR, currency)
    if abs(number) > limit:
        return (
            f"{name}: {number} is beyond the largest amount the ledger holds,"
            f" {currency} {format(limit, ',f')} (2^63-1 minor units)"
        )
    try:
        to_minor(number, currency, name)
    except ValueError:
        return (
            f"{name}: {number} has more than {exponent(currency)} decimal(s), the minor unit"
            f" of {currency}"
        )
    return None


class GrantRow(BaseModel):
    """One credit grant as given (the fields: the module docstring). Raises pydantic's
    ValidationError, one error per bad field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grant_id: str
    customer_id: str
    subscription_id: str | None = None
    kind: str
    currency: str
    amount: Decimal | None = None
    units: Decimal | None = None
    meter: str | None = None
    priority: int = DEFAULT_PRIORITY
    effective_from: date | datetime
    expires_at: date | datetime | None = None
    applies_to: str = "all_usage"
    applies_to_ids: tuple[str, ...] = ()
    price_paid: Decimal | None = None
    rollover: bool = False
    reason: str

    _ids = field_validator("customer_id", mode="before")(_ident)

    @field_validator("grant_id", mode="before")
    @classmethod
    def _grant_id(cls, value: Any) -> str:
        text = _ident(value)
        if text.endswith(ROLLOVER_SUFFIX):
            raise ValueError(
                f"{text!r} ends with {ROLLOVER_SUFFIX!r}, which names the grant a rollover"
                " creates for the next term: choose another id"
            )
        return text

    _numbers = field_validator("amount", "units", "price_paid", mode="before")(_decimal)

    @field_validator("subscription_id", "meter", mode="before")
    @classmethod
    def _optional_id(cls, value: Any) -> str | None:
        return None if value is None else _ident(value)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_of(cls, value: Any) -> str:
        text = _text(value)
        if text not in GRANT_KINDS:
            raise ValueError(f"must be {' or '.join(GRANT_KINDS)}, not {text!r}")
        return text

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> str:
        text = _text(value)
        exponent(text)
        return text

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> int:
        first, last = PRIORITY_RANGE
        if value is None:
            return DEFAULT_PRIORITY
        whole = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral():
            value, whole = int(value), True
        if isinstance(value, str) and _WHOLE.match(value):
            value, whole = int(value), True
        if not whole:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            raise ValueError(f"must be a whole number {first}..{last}, not {shown}")
        if not first <= value <= last:
            raise ValueError(f"must be between {first} and {last} (lower is drawn first)")
        return int(value)

    @field_validator("effective_from", mode="before")
    @classmethod
    def _from(cls, value: Any) -> date | datetime:
        when = _when(value)
        if when is None:
            raise ValueError("must be a date YYYY-MM-DD or a time with its offset, not empty")
        return when

    @field_validator("expires_at", mode="before")
    @classmethod
    def _expires(cls, value: Any) -> date | datetime | None:
        # Empty means never, in every format (a CSV's empty cell is None already).
        if isinstance(value, str) and not value.strip():
            return None
        return _when(value)

    @field_validator("rollover", mode="before")
    @classmethod
    def _rollover(cls, value: Any) -> bool:
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE:
            return _TRUE[value.lower()]
        shown = repr(value) if isinstance(value, str) else _kind(value)
        raise ValueError(f"must be true or false, not {shown}")

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: Any) -> str:
        return _printable(_text(value), 2000, key_part=False)

    @model_validator(mode="before")
    @classmethod
    def _scope(cls, data: Any) -> Any:
        """``applies_to`` as written (``all_usage``, ``prices:A,B``, ``meters:M``) into
        its scope and ids."""
        if not isinstance(data, dict) or "applies_to_ids" in data:
            if isinstance(data, dict) and "applies_to_ids" in data:
                raise ValueError("applies_to_ids: unknown field; write applies_to: prices:A,B")
            return data
        raw = data.get("applies_to")
        if raw is None:
            return {**data, "applies_to": "all_usage"}
        text = _text(raw).strip()
        scope, _, listed = text.partition(":")
        if scope not in GRANT_SCOPES or (scope == "all_usage") != (not listed):
            raise ValueError(
                f"applies_to: {text!r} is not all_usage, prices:ID[,ID...] or"
                " meters:METER[,METER...]"
            )
        ids = tuple(dict.fromkeys(part.strip() for part in listed.split(",") if part.strip()))
        for part in ids:
            _ident(part)
        if listed and not ids:
            raise ValueError(f"applies_to: {text!r} lists no {scope}")
        return {**data, "applies_to": scope, "applies_to_ids": ids}

    @model_validator(mode="after")
    def _check(self) -> GrantRow:
        if (self.amount is None) == (self.units is None):
            raise ValueError(
                "amount: give exactly one of amount (money, in currency) and units (of meter)"
            )
        if self.units is not None and self.meter is None:
            raise ValueError("meter: a grant of units names the meter it counts")
        if self.amount is not None and self.meter is not None:
            raise ValueError("meter: a grant of money has no meter (give units for a meter)")
        held = self.amount if self.amount is not None else self.units
        assert held is not None
        if not held > 0:
            raise ValueError(f"{'amount' if self.units is None else 'units'}: must be above 0")
        if self.amount is not None and (
            problem := _money_problem("amount", self.amount, self.currency)
        ):
            raise ValueError(problem)
        if self.units is not None and not self.units < UNITS_LIMIT:
            raise ValueError(
                f"units: {self.units} is beyond the largest quantity a meter counts (below 10^29)"
            )
        scaled = None if self.units is None else self.units.scaleb(UNITS_PLACES)
        if scaled is not None and scaled != scaled.to_integral_value():
            raise ValueError(
                f"units: {self.units} has more than {UNITS_PLACES} decimal places, the"
                " precision a meter counts to"
            )
        if (self.kind == "paid_commit") != (self.price_paid is not None):
            raise ValueError(
                "price_paid: a paid_commit records the price paid for it; a promotional"
                " grant has none"
            )
        if self.price_paid is not None:
            if self.price_paid < 0:
                raise ValueError("price_paid: must not be negative")
            if problem := _money_problem("price_paid", self.price_paid, self.currency):
                raise ValueError(problem)
        if (
            self.meter is not None
            and self.applies_to == "meters"
            and set(self.applies_to_ids) != {self.meter}
        ):
            raise ValueError(
                f"applies_to: a grant of {self.meter} units pays for {self.meter} lines only"
            )
        if self.rollover and self.expires_at is None:
            raise ValueError(
                "expires_at: a grant that rolls over needs the end of its term (its unused"
                " balance moves to the next term's grant then)"
            )
        if self.rollover and len(self.grant_id) > ROLLOVER_ID_MAX:
            raise ValueError(
                f"grant_id: a grant that rolls over has an id of at most {ROLLOVER_ID_MAX}"
                f" characters, not {len(self.grant_id)}: its next term's grant is named"
                f" <grant_id>{ROLLOVER_SUFFIX}, at most {ID_MAX}"
            )
        # Mixed (a date and a time) compare once the date has its timezone (store.py).
        alike = isinstance(self.expires_at, datetime) == isinstance(self.effective_from, datetime)
        if self.expires_at is not None and alike and _later(self.effective_from, self.expires_at):
            raise ValueError(
                f"expires_at: {self.expires_at} is not after effective_from ({self.effective_from})"
            )
        return self

    def content(self) -> dict[str, Any]:
        """What identifies the grant's terms (a reload with the same content is no change)."""
        return self.model_dump(mode="json", exclude={"reason"})


def _later(first: date | datetime, second: date | datetime) -> bool:
    """``second`` is not after ``first`` (both dates, or both instants)."""
    return not second > first
