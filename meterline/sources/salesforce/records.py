"""Salesforce records to customers-file rows, and the rows' problems back to records
(pure).

One row per subscription record: the customer fields from its account, the
subscription fields from itself (as the mapping places each field), and its discounts.
The rows then go through the customers file's own checks (billing.customers:
parse_records, then load_customers against the ledger): a problem found there names a
row and a customers-file field, and `translate` names the Salesforce record and field it
came from instead:

    SBQQ__Subscription__c a0B5e0000012AbCEAU: SBQQ__Product__r.ProductCode (plan):
    unknown plan 'PRO-SEAT'; the catalog's plans are essential, expert, pro

A problem of a customer field is the account's, reported once however many of its
subscriptions repeat it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from billing.customers import Problem
from billing.customers.read import CUSTOMER_FIELDS
from meterline.sources.salesforce.mapping import FieldSpec, SalesforceMapping, value_at

Record = dict[str, Any]

# Salesforce's dateTime text: 2026-11-04T10:15:00.000+0000 (the REST API's JSON).
_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})\Z")
# "line 12" in a problem's text: another row, named by its record instead.
_LINE = re.compile(r"\bline (\d+)\b")


@dataclass(frozen=True, slots=True, order=True)
class Ref:
    """A Salesforce record: its object's API name and its Id."""

    object: str
    id: str

    def __str__(self) -> str:
        return f"{self.object} {self.id}"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where row N came from: its account, its subscription record, and for each
    discount of the row the index of the mapping's discount that gave it."""

    account: Ref
    subscription: Ref
    discounts: tuple[int, ...]


@dataclass
class Rows:
    """The rows built from the records (line number, customers-file record), where each
    came from, and the problems found before any row was checked (a subscription whose
    account was not read)."""

    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    origins: dict[int, Origin] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Accounts read that no subscription read belongs to: not customers (yet).
    without_subscription: list[Ref] = field(default_factory=list)


def parse_stamp(text: Any) -> datetime:
    """A Salesforce dateTime (``2026-11-04T10:15:00.000+0000``) as an aware UTC instant.
    Raises ValueError for anything else."""
    found = _STAMP.match(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"{text!r} is not a Salesforce dateTime")
    day, clock, fraction, zone = found.groups()
    if zone != "Z" and ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        instant = datetime.fromisoformat(
            f"{day}T{clock}{fraction or ''}{zone.replace('Z', '+00:00')}"
        )
        return instant.astimezone(UTC)
    except (ValueError, OverflowError):  # 2026-02-30, +24:00, 9999-12-31T23:59-14:00
        raise ValueError(f"{text!r} is not a Salesforce dateTime") from None


def _present(value: Any) -> bool:
    """A discount is emitted when its amount is neither empty nor zero."""
    if value is None or value == "":
        return False
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return value != 0
    return True


def _put(row: dict[str, Any], name: str, spec: FieldSpec, record: Record) -> None:
    value = spec.apply(record)
    if value is not None:
        row[name] = value


def build_rows(
    mapping: SalesforceMapping, accounts: Mapping[str, Record], subscriptions: Iterable[Record]
) -> Rows:
    """The customers-file rows of ``subscriptions`` (each with its account from
    ``accounts``, by Id), numbered from 1 in the order of the subscriptions' Ids. An
    empty Salesforce value leaves its field out of the row (the row's check then says it
    is required, or uses the field's default)."""
    subs_map = mapping.subscriptions
    sub_object = subs_map.object
    out = Rows()
    used: set[str] = set()
    # customer id -> the account that gave it first: two accounts are never one customer.
    owners: dict[Any, str] = {}
    number = 0
    for sub in sorted(subscriptions, key=lambda r: str(r.get("Id"))):
        sub_ref = Ref(sub_object, str(sub.get("Id")))
        account_id = value_at(sub, subs_map.account)
        if not account_id:
            out.problems.append(
                f"{sub_ref}: {subs_map.account} (its account): empty; a subscription"
                " belongs to an account: fill it in Salesforce"
            )
            continue
        if not isinstance(account_id, str):
            # A relationship's record (SBQQ__Account__r), a number: not an Id.
            kind = "a record" if isinstance(account_id, dict) else type(account_id).__name__
            out.problems.append(
                f"{sub_ref}: {subs_map.account} (its account): {kind}, not the Id of an"
                " account: map subscriptions.account to the lookup field that holds it"
                " (SBQQ__Account__c, AccountId)"
            )
            continue
        account = accounts.get(str(account_id))
        if account is None:
            condition = (
                f" (accounts.where: {mapping.accounts.where})" if mapping.accounts.where else ""
            )
            out.problems.append(
                f"{sub_ref}: {subs_map.account} (its account): {mapping.accounts.object}"
                f" {account_id} is not among the accounts the mapping reads{condition}: make"
                " the account match, or leave the subscription out with subscriptions.where"
            )
            continue
        used.add(str(account_id))
        number += 1
        row: dict[str, Any] = {}
        for name, spec in mapping.accounts.fields.items():
            _put(row, name, spec, account)
        for name, spec in subs_map.fields.items():
            _put(row, name, spec, sub)
        discounts: list[dict[str, Any]] = []
        given: list[int] = []
        for index, template in enumerate(subs_map.discounts):
            amount = (template.percent_off or template.amount_off or FieldSpec()).apply(sub)
            if not _present(amount):
                continue
            discount: dict[str, Any] = {}
            for name, spec in template.specs().items():
                _put(discount, name, spec, sub)
            discounts.append(discount)
            given.append(index)
        if discounts:
            row["discounts"] = discounts
        customer = row.get("customer_id")
        # Text only: anything else (an object, a list) is refused by the row's own rule.
        owner = owners.setdefault(customer, str(account_id)) if isinstance(customer, str) else None
        if owner is not None and owner != str(account_id):
            found = mapping.source_of("customer_id")
            field_name = found[1].describe() if found else "customer_id"
            out.problems.append(
                f"{Ref(mapping.accounts.object, str(account_id))}: {field_name} (customer_id):"
                f" {customer!r} is also {mapping.accounts.object} {owner}'s; one customer is one"
                " account: give each account its own id"
            )
        out.records.append((number, row))
        out.origins[number] = Origin(
            Ref(mapping.accounts.object, str(account_id)), sub_ref, tuple(given)
        )
    out.without_subscription = sorted(
        Ref(mapping.accounts.object, str(i)) for i in accounts if str(i) not in used
    )
    return out


def keep_stored(
    rows: Rows, mapping: SalesforceMapping, stored: Mapping[str, Mapping[str, Any]]
) -> None:
    """Give each row of a customer the ledger holds the stored value of every customer
    field the mapping does not give (``billing_address`` and ``tax_ids`` always, which no
    mapping gives; ``stripe_customer_id``, ``collection_method``, ``days_until_due`` when
    unmapped): a row is stored whole, so a field left out would be emptied, and what a
    customers file loaded (the tax profile the tax sink needs) would be lost on the next
    sync. ``stored``: customer external id -> its stored columns
    (billing.customers.diff.snapshot); values as the customers file gives them."""
    unmapped = [name for name in CUSTOMER_FIELDS if mapping.source_of(name) is None]
    for _, row in rows.records:
        customer = row.get("customer_id")
        held = stored.get(customer) if isinstance(customer, str) else None
        if held is None:
            continue
        for name in unmapped:
            if name not in row and held.get(name) is not None:
                row[name] = held[name]


def translate(problems: Iterable[Problem], rows: Rows, mapping: SalesforceMapping) -> list[str]:
    """The customers file's problems of ``rows`` as problems of Salesforce records:
    ``OBJECT ID: SALESFORCE FIELD (meterline field): text``, each once, with any "line
    N" in a text naming that row's subscription record instead; then the problems found
    while building the rows. Sorted by record."""
    out: dict[tuple[Ref, str], str] = {}
    for problem in problems:
        origin = rows.origins.get(problem.line)
        if origin is None:  # the rows as a whole (none is built without an origin)
            out.setdefault((Ref("", ""), problem.text), f"salesforce: {problem.text}")
            continue
        ref, where = _where(problem.field, origin, mapping)
        text = _LINE.sub(lambda m: _row_name(int(m.group(1)), rows), problem.text)
        if text == "Field required":
            text = (
                "empty in Salesforce, and meterline needs it: fill it in, or give the field"
                " a default in the mapping"
            )
        out.setdefault((ref, where + text), f"{ref}: {where}{text}")
    ordered = [line for _, line in sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1]))]
    return [*ordered, *dict.fromkeys(rows.problems)]


def _row_name(number: int, rows: Rows) -> str:
    origin = rows.origins.get(number)
    return str(origin.subscription) if origin else f"row {number}"


def _where(name: str, origin: Origin, mapping: SalesforceMapping) -> tuple[Ref, str]:
    """The record a problem of customers-file field ``name`` belongs to, and the
    ``SALESFORCE FIELD (meterline field): `` prefix naming where its value came from."""
    parts = name.split(".")
    if parts[0] == "discounts":
        subs = mapping.subscriptions
        if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) < len(origin.discounts):
            index = origin.discounts[int(parts[1])]
            template = subs.discounts[index]
            spec = template.specs().get(parts[2]) if len(parts) > 2 else None
            if spec is not None:
                return origin.subscription, (f"{spec.describe()} (discounts.{index}.{parts[2]}): ")
            return origin.subscription, f"(discounts.{index}): "
        return origin.subscription, "(discounts): "
    found = mapping.source_of(name)
    if found is None:  # "row", or a field the mapping does not give
        return origin.subscription, "" if name == "row" else f"({name}): "
    side, spec = found
    ref = origin.account if side == "accounts" else origin.subscription
    return ref, f"{spec.describe()} ({name}): "


def high_water(records: Sequence[Record], field_name: str) -> datetime | None:
    """The latest modification stamp among ``records`` (None when there are none).
    Raises ValueError naming a record whose stamp is not a dateTime."""
    latest: datetime | None = None
    for record in records:
        try:
            stamp = parse_stamp(record.get(field_name))
        except ValueError as exc:
            raise ValueError(f"record {record.get('Id')}: {field_name}: {exc}") from None
        latest = stamp if latest is None or stamp > latest else latest
    return latest
