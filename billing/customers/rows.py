"""One row of the customers file, and the rule for each of its fields (docs/ledger.md).

A row is a customer and one of its subscriptions. Every field is checked for what it is
and what the ledger and the pipeline can use, so that a value is refused here, naming
its line and field, rather than stored and failing later (or never):

- ids (customer_id, subscription_id, plan, a discount's price) are printable text: the
  rule ingest applies to customer ids (sql/queries/ingest/validate.sql, reason
  ``bad_customer_id``): no control, format, private-use, surrogate or separator
  character, no space but U+0020 and none at either end; so a customer id loaded here is
  one that usage events can carry. At most 64 characters (the ledger's columns), and no
  ``|`` (it separates the parts of a line's idempotency key).
- a name is printable text too, at most 200 characters.
- text fields take text: a number or a boolean where a string is due is refused (write
  ``"123"``), as is text or a boolean where a number is due (a digit string is a number:
  CSV has nothing else).
- dates are written ``YYYY-MM-DD`` and lie in 2000-01-01 .. 2099-12-31 (year 1 or 9999 is
  a typo or a stand-in for "never": leave ``end`` empty for an open-ended subscription).
- a timezone is a location's name in the tz database (``Europe/Dublin``, ``UTC``), whose
  UTC offset is a whole number of hours (usage is rolled up per UTC hour); names that
  mean no place or the machine's own zone (``Factory``, ``localtime``, ``posixrules``)
  are refused.
- the billing anchor day is a whole number 1..31.
- the customer's Stripe terms, each optional (empty: the Stripe sink uses the settings'
  default, and creates the Stripe customer itself when it has no id):
  ``stripe_customer_id`` is a Stripe customer id as Stripe writes them, ``cus_``
  followed by letters and digits, at most 64 characters (the ledger's column);
  ``collection_method`` is ``charge_automatically`` or ``send_invoice`` (Stripe's
  Invoice.collection_method); ``days_until_due`` is a whole number 1..365 and needs
  ``collection_method: send_invoice`` on the row (Stripe accepts days_until_due only for
  send_invoice invoices).
- the customer's tax profile, each optional: ``billing_address`` and ``tax_ids``
  (billing.customers.tax_profile: what the tax sink sends, docs/tax.md).
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from datetime import date, datetime
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from billing.bulk import MAX_AMOUNT_MINOR, in_range
from billing.charges import KEY_SEP
from billing.customers.tax_profile import BillingAddress, TaxId, tax_ids_field, unique_tax_ids
from billing.models import COLLECTION_METHODS
from billing.money import canonical, exponent, to_minor
from billing.periods import whole_hour_zone, zone

#: The ledger's column widths (billing/models.py).
ID_MAX = 64
NAME_MAX = 200
#: The dates a customers file may hold (both included).
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2099, 12, 31)
#: Names the tz database ships that are no location's zone: "Factory" has no offset
#: meaning, "localtime" is the machine's own zone, "posixrules" a template.
ODD_ZONES = frozenset({"Factory", "localtime", "posixrules"})

_PRINTABLE_ASCII = re.compile(r"[!-~]([ -~]*[!-~])?\Z")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_DIGITS = re.compile(r"[0-9]{1,2}\Z")
# Stripe's customer ids: the object prefix "cus_", then letters and digits
# (cus_NffrFeUfNV2Hib); nothing else (no space, "_" or "-" after the prefix).
_STRIPE_CUSTOMER = re.compile(r"cus_[A-Za-z0-9]+\Z")
_DAY_COUNT = re.compile(r"[0-9]{1,3}\Z")
#: The days a send_invoice invoice may give the customer to pay (both included). Stripe's
#: API reference (Create an invoice, days_until_due: "The number of days from when the
#: invoice is created until it is due. Valid only for invoices where
#: collection_method=send_invoice") types it as an integer and states no range; 1..365 is
#: this project's bound, the same as the default's (settings: stripe_days_until_due).
DAYS_UNTIL_DUE = (1, 365)
#: Most decimal places of a discount's percent_off (trailing zeros do not count):
#: Salesforce's percent fields hold at most 18 digits, and rating multiplies a line of
#: up to 38 digits by the percent in a 60-digit exact context (rating/decimals.py), which
#: 18 places (at most 21 digits for 0 < p <= 100) never overflow.
PERCENT_PLACES = 18


def printable_problem(text: str) -> str | None:
    """Why ``text`` is not a printable id (None when it is), in ingest's words. The rule
    is ingest's for customer ids (sql/queries/ingest/validate.sql): no character of
    Unicode category C (control, format, private use, surrogate, unassigned), Zl or Zp,
    no space but U+0020, and no space at either end."""
    if _PRINTABLE_ASCII.match(text):
        return None
    for char in text:
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp") or (category == "Zs" and char != " "):
            return (
                f"contains the character U+{ord(char):04X} (a control, format, invisible or"
                " special space character)"
            )
    if text != text.strip(" "):
        return "starts or ends with a space"
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null (empty)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, Decimal, float)):
        return f"the number {value}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        number = isinstance(value, (int, Decimal)) and not isinstance(value, bool)
        hint = f' (write "{value}")' if number else ""
        raise ValueError(f"must be text, not {_kind(value)}{hint}")
    return value


def _printable(value: str, limit: int, *, key_part: bool) -> str:
    if not value:
        raise ValueError("must not be empty")
    problem = printable_problem(value)
    if problem is not None:
        raise ValueError(f"{problem}; ids and names must be printable text")
    if len(value) > limit:
        raise ValueError(f"has {len(value)} characters; at most {limit}")
    if key_part and KEY_SEP in value:
        raise ValueError(f"must not contain {KEY_SEP!r}")
    return value


def decimal_places(value: Decimal) -> int:
    """The decimal places of a finite ``value`` once trailing zeros are dropped
    (``1.50`` has 1, ``1E+3`` none)."""
    # A context as wide as the number: normalizing drops trailing zeros, never digits.
    wide = Context(prec=max(len(value.as_tuple().digits), 1), Emax=MAX_EMAX, Emin=MIN_EMIN)
    exp = value.normalize(wide).as_tuple().exponent
    assert isinstance(exp, int)
    return max(0, -exp)


def _number(value: Decimal) -> str:
    """A number as a message shows it: as written, cut when long."""
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def by_problem(by: str) -> str | None:
    """Why ``by``, who makes a change (``--by``: a grant, a void, a plan change), cannot
    be recorded (None when it can): the ledger keeps at most NAME_MAX characters of it."""
    name = by.strip()
    if len(name) > NAME_MAX:
        return (
            f"--by: a name has at most {NAME_MAX} characters, not {len(name)}: give a shorter one"
        )
    return None


def _ident(value: Any) -> str:
    return _printable(_text(value), ID_MAX, key_part=True)


def printable_text(value: Any, limit: int) -> str:
    """``value`` when it is printable text of 1..``limit`` characters (a name's rule);
    ValueError saying what it is otherwise."""
    return _printable(_text(value), limit, key_part=False)


def _name(value: Any) -> str:
    return _printable(_text(value), NAME_MAX, key_part=False)


def _day(value: Any) -> date | None:
    """A date from ``YYYY-MM-DD`` text (or a date), inside FIRST_DAY..LAST_DAY."""
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and _DATE.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value} is not a date of the calendar") from None
    else:
        shown = repr(value) if isinstance(value, str) else _kind(value)
        raise ValueError(f"must be a date written YYYY-MM-DD, not {shown}")
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(
            f"{day.isoformat()} is outside {FIRST_DAY} .. {LAST_DAY}"
            + (" (leave end empty for an open-ended subscription)" if day > LAST_DAY else "")
        )
    return day


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_problem(name: str) -> str | None:
    """Why ``name`` cannot be a subscription's timezone (None when it can)."""
    if name in ODD_ZONES:
        return (
            f"{name!r} is not a place's timezone (it means none, or this machine's own):"
            " use a name such as Europe/Dublin or UTC"
        )
    if name not in _zone_names():
        try:
            zone(name)
        except ValueError:
            pass
        else:  # a file of the zone folder, but not a zone name (posix/..., right/...)
            return f"{name!r} is not a name of the tz database: use one such as Europe/Dublin"
        return f"unknown IANA timezone {name!r}: use a name such as Europe/Dublin or UTC"
    if not whole_hour_zone(name):
        return (
            f"timezone {name} has a UTC offset that is not a whole number of hours; usage "
            "is rolled up per UTC hour, so billing periods must start on a whole UTC hour"
        )
    return None


def _whole(value: Any, pattern: re.Pattern[str]) -> int | None:
    """An integer from an int, a whole exact decimal or digits matching ``pattern`` (CSV
    has only text); None when ``value`` is none of these."""
    whole = isinstance(value, Decimal) and value.is_finite() and value == value.to_integral()
    if whole or (isinstance(value, str) and pattern.match(value)):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


DiscountIdentity = tuple[str, str | None, str | None, date, date | None]


def discount_identity(
    price: str,
    percent_off: Decimal | None,
    amount_off: Decimal | None,
    valid_from: date,
    valid_to: date | None,
) -> DiscountIdentity:
    """What makes two discounts the same, as loaded or as stored: a reload that gives
    every subscription the same identities leaves its discounts alone."""
    return (
        price,
        None if percent_off is None else canonical(percent_off),
        None if amount_off is None else canonical(amount_off),
        valid_from,
        valid_to,
    )


def _amount(value: Any) -> Any:
    """A decimal as an exact number or its text; never a float or a boolean."""
    if isinstance(value, float):
        raise ValueError('must be an exact decimal (a string such as "10.5"), not a float')
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str, type(None))):
        raise ValueError(f"must be a decimal number, not {_kind(value)}")
    return value


class DiscountRow(BaseModel):
    """A discount of the row's subscription on one price of its plan: ``percent_off`` in
    (0, 100] or ``amount_off`` (> 0, major units of the subscription's currency, at most
    its minor unit's decimals), applying to a period when valid at its end
    (rating/discounts.py): ``valid_from < period end <= valid_to``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    price: str
    percent_off: Decimal | None = None
    amount_off: Decimal | None = None
    valid_from: date
    valid_to: date | None = None

    _price = field_validator("price", mode="before")(_ident)
    _exact = field_validator("percent_off", "amount_off", mode="before")(_amount)
    _days = field_validator("valid_from", "valid_to", mode="before")(_day)

    @field_validator("percent_off")
    @classmethod
    def _percent(cls, value: Decimal | None) -> Decimal | None:
        if value is None:
            return None
        if not value.is_finite() or not Decimal(0) < value <= 100:
            raise ValueError(f"must be above 0 and at most 100, got {_number(value)}")
        if decimal_places(value) > PERCENT_PLACES:
            raise ValueError(
                f"has {decimal_places(value)} decimal places; at most {PERCENT_PLACES}"
                f" (got {_number(value)})"
            )
        return value

    @field_validator("amount_off")
    @classmethod
    def _positive(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not (value.is_finite() and value > 0):
            raise ValueError(f"must be above 0, got {_number(value)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> DiscountRow:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give exactly one of percent_off and amount_off")
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError(
                f"valid_to ({self.valid_to}) must be after valid_from ({self.valid_from})"
            )
        return self

    def identity(self) -> DiscountIdentity:
        return discount_identity(
            self.price, self.percent_off, self.amount_off, self.valid_from, self.valid_to
        )


class CustomerRow(BaseModel):
    """One row of the customers file: a customer and one of its subscriptions (the
    fields and their rules: the module docstring and docs/ledger.md). Raises pydantic's
    ValidationError, one error per bad field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str
    name: str
    currency: str
    timezone: str
    stripe_customer_id: str | None = None
    collection_method: str | None = None
    days_until_due: int | None = None
    billing_address: BillingAddress | None = None
    tax_ids: tuple[TaxId, ...] = ()
    subscription_id: str
    plan: str
    billing_anchor_day: int
    start: date
    end: date | None = None
    discounts: tuple[DiscountRow, ...] = ()

    _ids = field_validator("customer_id", "subscription_id", "plan", mode="before")(_ident)
    _names = field_validator("name", mode="before")(_name)
    _end = field_validator("end", mode="before")(_day)

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any) -> date:
        day = _day(value)
        if day is None:
            raise ValueError("must be a date written YYYY-MM-DD, not null (empty)")
        return day

    @field_validator("currency", "timezone", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> str:
        return _text(value)

    @field_validator("billing_anchor_day", mode="before")
    @classmethod
    def _anchor(cls, value: Any) -> int:
        day = _whole(value, _DIGITS)
        if day is None:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            raise ValueError(f"must be a whole day of the month 1..31, not {shown}")
        if not 1 <= day <= 31:
            raise ValueError(f"must be between 1 and 31, got {day}")
        return day

    @field_validator("stripe_customer_id", mode="before")
    @classmethod
    def _stripe_customer(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = _text(value)
        if not _STRIPE_CUSTOMER.match(text):
            raise ValueError(
                f"{text!r} is not a Stripe customer id: cus_ followed by letters and digits"
                " (cus_NffrFeUfNV2Hib); leave it empty to let the Stripe sink create the"
                " customer"
            )
        if len(text) > ID_MAX:
            raise ValueError(f"has {len(text)} characters; at most {ID_MAX}")
        return text

    @field_validator("collection_method", mode="before")
    @classmethod
    def _collection_method(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = _text(value)
        if text not in COLLECTION_METHODS:
            raise ValueError(
                f"must be {' or '.join(COLLECTION_METHODS)} (Stripe's collection methods),"
                f" not {text!r}; leave it empty for the settings' default"
            )
        return text

    @field_validator("days_until_due", mode="before")
    @classmethod
    def _days_until_due(cls, value: Any) -> int | None:
        if value is None:
            return None
        first, last = DAYS_UNTIL_DUE
        days = _whole(value, _DAY_COUNT)
        if days is None:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            raise ValueError(f"must be a whole number of days {first}..{last}, not {shown}")
        if not first <= days <= last:
            raise ValueError(f"must be between {first} and {last} days, got {days}")
        return days

    @field_validator("billing_address", mode="before")
    @classmethod
    def _billing_address(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            raise ValueError(
                f"must be an object with country (and line1, city, region, postal_code...),"
                f" not {_kind(value)}"
            )
        return value

    _tax_ids_list = field_validator("tax_ids", mode="before")(tax_ids_field)
    _tax_ids_unique = field_validator("tax_ids")(unique_tax_ids)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        exponent(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        problem = timezone_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("discounts", mode="before")
    @classmethod
    def _discounts(cls, value: Any) -> Any:
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"must be a list of discounts, not {_kind(value)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> CustomerRow:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end: {self.end} is not after start ({self.start})")
        if self.days_until_due is not None and self.collection_method != "send_invoice":
            # Stripe's API reference: days_until_due is "valid only for invoices where
            # collection_method=send_invoice". An empty method is the settings' default,
            # which the file cannot see: the row must say send_invoice itself.
            method = (
                "is empty (the settings' default)"
                if self.collection_method is None
                else f"is {self.collection_method}"
            )
            raise ValueError(
                f"days_until_due: Stripe accepts days_until_due only for invoices with"
                f" collection_method send_invoice, and this row's collection_method {method}:"
                " set collection_method to send_invoice, or leave days_until_due empty"
            )
        for i, discount in enumerate(self.discounts):
            off = discount.amount_off
            if off is None:
                continue
            beyond = ValueError(
                f"discounts.{i}.amount_off: {_number(off)} {self.currency} is beyond the"
                f" ledger's range ({MAX_AMOUNT_MINOR:,} minor units)"
            )
            # The exponent first: scaling 1e999999 would overflow the decimal context.
            if off.adjusted() + exponent(self.currency) > 18:
                raise beyond
            try:
                minor = to_minor(off, self.currency, "amount_off")
            except ValueError as exc:
                raise ValueError(f"discounts.{i}.amount_off: {exc}") from None
            if not in_range(minor):
                raise beyond
        return self
