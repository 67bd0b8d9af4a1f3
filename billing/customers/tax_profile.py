"""A customer's tax profile in the customers file: its billing address and tax ids, the
fields the tax sink sends to the tax engine (docs/tax.md, docs/ledger.md).

- ``billing_address``: an object with ``country`` (required: ISO 3166-1 alpha-2, two
  capital letters, as AvaTax's ``AddressLocationInfo.country`` takes it) and optional
  ``line1``, ``line2``, ``line3``, ``city``, ``region`` (a state or province: ISO 3166-2's
  subdivision code without the country, e.g. ``NY``, or its name), ``postal_code``; each
  printable text of at most ADDRESS_TEXT_MAX characters. A United States or Canadian
  address needs its ``postal_code``: sales tax there is owed by jurisdiction below the
  state, which a country and region cannot name. Whether the address exists is the tax
  engine's to say (an address it cannot resolve fails the delivery, with its reason).
- ``tax_ids``: a list of ``{type, value}``; ``type`` is one of Stripe's tax id types
  (``eu_vat``, ``gb_vat``, ``us_ein``, ..., the pinned SDK's
  ``CustomerCreateParamsTaxIdDatum.type``), ``value`` printable text of at most
  TAX_ID_MAX characters; the same (type, value) once; at most TAX_IDS_MAX of them. The
  first is the one the tax sink sends (AvaTax's ``businessIdentificationNo``): list the
  VAT number first.

Both are stored on the customer as plain JSON (``stored``), compared as stored.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

#: Longest text of an address field (AvaTax's address lines are at most 100 characters).
ADDRESS_TEXT_MAX = 100
#: Longest tax id value.
TAX_ID_MAX = 64
#: Most tax ids of one customer: a customer has one per registration (a VAT number, a
#: state's id); neither Stripe's nor AvaTax's reference states a bound, this is the
#: project's, so that a customer's row stays small.
TAX_IDS_MAX = 25
#: Countries whose sales tax is owed by jurisdictions below the region: a postal code is
#: needed to find them.
POSTAL_CODE_NEEDED = frozenset({"US", "CA"})

_COUNTRY = re.compile(r"[A-Z]{2}\Z")


def _kind(value: Any) -> str:
    if value is None:
        return "null (empty)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"the {type(value).__name__} {value!r}"


def _printable(value: Any, limit: int) -> str:
    # The customers file's rule for text (billing.customers.rows), which imports this.
    from billing.customers.rows import printable_text

    return printable_text(value, limit)


@cache
def tax_id_types() -> tuple[str, ...]:
    """Stripe's tax id types, from the pinned SDK's ``CustomerCreateParamsTaxIdDatum``."""
    from typing import Literal, get_args, get_origin

    from stripe.params import CustomerCreateParamsTaxIdDatum

    found: list[str] = []
    stack = [CustomerCreateParamsTaxIdDatum.__annotations__["type"]]
    while stack:
        hint = stack.pop()
        if get_origin(hint) is Literal:
            found.extend(str(arg) for arg in get_args(hint))
        else:
            stack.extend(get_args(hint))
    return tuple(sorted(set(found)))


class BillingAddress(BaseModel):
    """Where a customer is billed (the module docstring's rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    line1: str | None = None
    line2: str | None = None
    line3: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str

    @field_validator("line1", "line2", "line3", "city", "region", "postal_code", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str | None:
        return None if value is None else _printable(value, ADDRESS_TEXT_MAX)

    @field_validator("country", mode="before")
    @classmethod
    def _country(cls, value: Any) -> str:
        if not isinstance(value, str) or not _COUNTRY.match(value):
            shown = repr(value) if isinstance(value, str) else _kind(value)
            raise ValueError(
                f"must be an ISO 3166-1 alpha-2 country code, two capital letters (US, IE,"
                f" DE), not {shown}"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> BillingAddress:
        if self.country in POSTAL_CODE_NEEDED and self.postal_code is None:
            raise ValueError(
                f"postal_code: a {self.country} address needs its postal code (sales tax is"
                " owed by jurisdictions below the state or province)"
            )
        return self

    def stored(self) -> dict[str, str]:
        """The address as the ledger stores it: the fields given."""
        return self.model_dump(exclude_none=True)


class TaxId(BaseModel):
    """One tax id of a customer: Stripe's type and the value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    value: str

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> str:
        if not isinstance(value, str) or value not in tax_id_types():
            shown = repr(value) if isinstance(value, str) else _kind(value)
            raise ValueError(
                f"{shown} is not a tax id type: one of Stripe's, such as eu_vat, gb_vat,"
                " us_ein, au_abn, ca_bn"
            )
        return value

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> str:
        return _printable(value, TAX_ID_MAX)


def tax_ids_field(value: Any) -> Any:
    """The ``tax_ids`` field before its items are read: empty when null; a list."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"must be a list of {{type, value}} objects, not {_kind(value)}")
    if len(value) > TAX_IDS_MAX:
        raise ValueError(
            f"{len(value)} tax ids; at most {TAX_IDS_MAX}: list those the tax engine and"
            " the invoices need (the VAT number first)"
        )
    return value


def unique_tax_ids(ids: tuple[TaxId, ...]) -> tuple[TaxId, ...]:
    """``ids`` when no (type, value) is given twice; ValueError naming the second."""
    seen: dict[tuple[str, str], int] = {}
    for i, tax_id in enumerate(ids):
        first = seen.setdefault((tax_id.type, tax_id.value), i)
        if first != i:
            raise ValueError(
                f"{tax_id.type} {tax_id.value} is given twice (items {first} and {i}): list it once"
            )
    return ids


def stored_tax_ids(ids: tuple[TaxId, ...]) -> list[dict[str, str]] | None:
    """The tax ids as the ledger stores them (None for none)."""
    return [tax_id.model_dump() for tax_id in ids] or None
