"""What storing customers-file rows changed, record by record: each customer and each
subscription added, changed (with each stored column's old and new value) or unchanged.

The diff compares two snapshots of the ledger's own rows, taken before and after
billing.customers.load_customers wrote in the same transaction (rolled back for a dry
run), so it shows exactly what the load writes, by the load's own rules, and never
re-implements them: every column of the customer (but its id), every column of the
subscription (its customer by external id) and its discounts. `meterline customers
sync-salesforce` prints it (every record with --dry-run).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from billing import bulk
from billing.models import Customer, Subscription, SubscriptionDiscount

Status = Literal["added", "changed", "unchanged"]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One stored column whose value (``old``; ``none`` when empty) became ``new``, both as
    text."""

    field: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.field} {self.old} -> {self.new}"


@dataclass(frozen=True, slots=True)
class RecordChange:
    """What storing the rows did to one customer or subscription (by external id)."""

    kind: Literal["customer", "subscription"]
    external_id: str
    status: Status
    changes: tuple[FieldChange, ...] = ()


@dataclass
class Snapshot:
    """The stored columns of some customers and subscriptions, by external id (a
    subscription's ``customer`` is its customer's external id, ``discounts`` its
    discounts as text)."""

    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)


def shown(value: Any) -> str:
    """A stored value as the diff prints it: ``none`` for empty, dates as YYYY-MM-DD,
    decimals without trailing zeros, JSON documents as compact JSON."""
    if value is None:
        return "none"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return str(value)


def _discount_text(d: Any) -> str:
    off = f"{shown(d.percent_off)}%" if d.percent_off is not None else shown(d.amount_off)
    return f"{d.price_id} {off} {d.valid_from}..{d.valid_to or ''}"


def snapshot(session: Session, customers: Iterable[str], subscriptions: Iterable[str]) -> Snapshot:
    """The stored columns of these customers and subscriptions (external ids); those not
    stored are absent."""
    customers_t: Table = Customer.__table__  # type: ignore[assignment]
    subs_t: Table = Subscription.__table__  # type: ignore[assignment]
    disc_t: Table = SubscriptionDiscount.__table__  # type: ignore[assignment]
    out = Snapshot()
    for part in bulk.in_chunks(session, sorted(set(customers))):
        for row in session.execute(
            select(customers_t).where(bulk.where_in(session, customers_t.c.external_id, part))
        ).mappings():
            out.customers[row["external_id"]] = {
                k: v for k, v in row.items() if k not in ("id", "external_id")
            }
    ids: dict[int, str] = {}
    query = select(subs_t, Customer.external_id.label("customer")).join(
        Customer, Customer.id == subs_t.c.customer_id
    )
    for part in bulk.in_chunks(session, sorted(set(subscriptions))):
        for row in session.execute(
            query.where(bulk.where_in(session, subs_t.c.external_id, part))
        ).mappings():
            ids[row["id"]] = row["external_id"]
            out.subscriptions[row["external_id"]] = {
                k: v for k, v in row.items() if k not in ("id", "external_id", "customer_id")
            } | {"discounts": []}
    for part in bulk.in_chunks(session, sorted(ids)):
        for d in session.execute(
            select(disc_t).where(bulk.where_in(session, disc_t.c.subscription_id, part))
        ):
            out.subscriptions[ids[d.subscription_id]]["discounts"].append(_discount_text(d))
    for columns in out.subscriptions.values():
        columns["discounts"] = "; ".join(sorted(columns["discounts"])) or None
    return out


def _change(
    kind: Literal["customer", "subscription"],
    ext: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> RecordChange:
    if old is None:
        return RecordChange(kind, ext, "added")
    new = new or {}
    changes = tuple(
        FieldChange(name, shown(value), shown(new.get(name)))
        for name, value in old.items()
        if new.get(name) != value
    )
    return RecordChange(kind, ext, "changed" if changes else "unchanged", changes)


def diff(
    before: Snapshot,
    after: Snapshot,
    customers: Sequence[str],
    subscriptions: Sequence[str],
) -> tuple[list[RecordChange], list[RecordChange]]:
    """Each of ``customers`` and ``subscriptions`` (external ids, each once, in the order
    given) as added, changed or unchanged from ``before`` to ``after``."""
    return (
        [
            _change("customer", ext, before.customers.get(ext), after.customers.get(ext))
            for ext in dict.fromkeys(customers)
        ],
        [
            _change(
                "subscription",
                ext,
                before.subscriptions.get(ext),
                after.subscriptions.get(ext),
            )
            for ext in dict.fromkeys(subscriptions)
        ],
    )
