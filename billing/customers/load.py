"""Storing a customers file: every check first, then one upsert, in the caller's
transaction.

A file is refused as a whole (CustomersFileInvalid, every problem with its line and
field, nothing written) or stored as a whole: customers and subscriptions are inserted
or updated in place (ids kept), a subscription's discounts are replaced only when they
changed, so loading the same file twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from billing import bulk
from billing.customers.checks import (
    Catalog,
    Stored,
    overlap_problems,
    priced_problems,
    same_discounts,
    stripe_id_problems,
)
from billing.customers.drafts import align_drafts
from billing.customers.errors import CustomersFileInvalid, Problem
from billing.customers.read import CUSTOMER_FIELDS, FileFormat, read_file
from billing.customers.rows import CustomerRow
from billing.customers.tax_profile import BillingAddress, stored_tax_ids
from billing.customers.terms import terms_problems
from billing.models import Customer, Subscription, SubscriptionDiscount


@dataclass(frozen=True, slots=True)
class CustomersLoadResult:
    """What a load did: rows read, customers and subscriptions created or updated, and
    subscriptions whose discounts were replaced."""

    rows: int
    customers_created: int
    customers_updated: int
    subscriptions_created: int
    subscriptions_updated: int
    discounts_replaced: int

    @property
    def changed(self) -> bool:
        return bool(
            self.customers_created
            or self.customers_updated
            or self.subscriptions_created
            or self.subscriptions_updated
            or self.discounts_replaced
        )


def check_priced(
    session: Session, rows: Sequence[tuple[int, CustomerRow]], source: str = "customers"
) -> None:
    """Raise CustomersFileInvalid naming the line and field of every row the loaded
    catalog cannot price (billing.customers.checks.priced_problems)."""
    problems = priced_problems(rows, Catalog.read(session))
    if problems:
        raise CustomersFileInvalid(source, problems)


def ledger_problems(
    session: Session, rows: Sequence[tuple[int, CustomerRow]]
) -> tuple[list[Problem], Stored]:
    """Every problem of valid rows against the ledger (billing.customers.checks: priced,
    no overlapping subscriptions on one meter, finalized terms unchanged, no Stripe
    customer id of another stored customer), and what the ledger holds about them."""
    catalog = Catalog.read(session)
    stored = Stored.read(session, rows)
    stored.read_invoices(session, stored.changed(rows))
    problems = [
        *priced_problems(rows, catalog),
        *overlap_problems(rows, stored, catalog),
        *terms_problems(rows, stored),
        *stripe_id_problems(session, rows),
    ]
    return problems, stored


def load_customers(
    session: Session,
    rows: Sequence[tuple[int, CustomerRow]],
    source: str = "customers",
    *,
    problems: Sequence[Problem] = (),
) -> CustomersLoadResult:
    """Check `rows` (line number, row) against the ledger, then insert or update their
    customers, subscriptions and discounts, in the session's transaction.

    `problems` are those already found in the file (its rows that did not parse); they
    are reported with the ledger's. Raises CustomersFileInvalid listing all of them
    (nothing written) when there is any: the rules are billing.customers.checks'.

    Queues behind any other ledger writer first (billing.bulk.lock_ledger_writes): two
    loads listing customers in different orders updated their rows in opposite orders
    and deadlocked (PostgreSQL), and no close may finalize an invoice between the checks
    of finalized terms and the write.
    """
    bulk.lock_ledger_writes(session)
    found, stored = ledger_problems(session, rows)
    if problems or found:
        raise CustomersFileInvalid(source, [*problems, *found])
    if not rows:
        raise CustomersFileInvalid(source, [Problem(0, "file", "no rows")])
    return _write(session, rows, stored)


def load_customers_file(
    session: Session, path: str | Path, fmt: FileFormat | None = None
) -> CustomersLoadResult:
    """Read, check and store a customers file (JSONL, YAML or CSV by its extension or
    `fmt`), all or nothing. Raises CustomersFileInvalid with every problem of the file
    and of its valid rows against the ledger."""
    parsed = read_file(path, fmt)
    return load_customers(session, parsed.rows, str(path), problems=parsed.problems)


def _stored(value: Any) -> Any:
    """A customer field as its column holds it: a billing address as its JSON object,
    tax ids as a JSON list (None for none), other fields as they are."""
    if isinstance(value, BillingAddress):
        return value.stored()
    if isinstance(value, tuple):
        return stored_tax_ids(value)
    return value


def _by_external_id(session: Session, table: Table, ids: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in bulk.in_chunks(session, ids):
        stmt = select(table).where(bulk.where_in(session, table.c.external_id, part))
        for row in session.execute(stmt).all():
            found[row.external_id] = row
    return found


def _write(
    session: Session, rows: Sequence[tuple[int, CustomerRow]], stored: Stored
) -> CustomersLoadResult:
    customers_t: Table = Customer.__table__  # type: ignore[assignment]
    subs_t: Table = Subscription.__table__  # type: ignore[assignment]
    disc_t: Table = SubscriptionDiscount.__table__  # type: ignore[assignment]

    first_by_customer: dict[str, CustomerRow] = {}
    for _, row in rows:
        first_by_customer.setdefault(row.customer_id, row)
    existing_c = _by_external_id(session, customers_t, list(first_by_customer))
    new_c, changed_c = [], []
    for ext, row in first_by_customer.items():
        # The customer's own fields: the file's rows agree on them (read.CUSTOMER_FIELDS).
        # Every one may change on a reload (the subscriptions' currency and timezone are
        # held by the subscriptions, under terms.py's rule); a change of any, the Stripe
        # terms included, updates the customer.
        values: dict[str, Any] = {name: _stored(getattr(row, name)) for name in CUSTOMER_FIELDS}
        old = existing_c.get(ext)
        if old is None:
            new_c.append({"external_id": ext, **values})
        elif any(getattr(old, name) != value for name, value in values.items()):
            changed_c.append({"b_id": old.id, **values})
    if new_c:
        bulk.insert_rows(session, customers_t, new_c)
    if changed_c:
        session.execute(update(customers_t).where(customers_t.c.id == bindparam("b_id")), changed_c)
    customer_ids = {
        ext: r.id
        for ext, r in _by_external_id(session, customers_t, list(first_by_customer)).items()
    }

    new_s, changed_s = [], []
    # Stored subscriptions whose end moves, or that have one: their drafts are re-placed
    # (a ledger written before drafts followed the end heals on its next load).
    ended: list[int] = []
    for _, row in rows:
        values = {
            "customer_id": customer_ids[row.customer_id],
            "plan_id": row.plan,
            "currency": row.currency,
            "billing_anchor_day": row.billing_anchor_day,
            "timezone": row.timezone,
            "start_date": row.start,
            "end_date": row.end,
        }
        old = stored.subscriptions.get(row.subscription_id)
        if old is None:
            new_s.append({"external_id": row.subscription_id, **values})
        elif any(getattr(old, k) != v for k, v in values.items()):
            changed_s.append({"b_id": old.id, **values})
        if old is not None and (old.end_date != row.end or row.end is not None):
            ended.append(old.id)
    if new_s:
        bulk.insert_rows(session, subs_t, new_s)
    if changed_s:
        session.execute(update(subs_t).where(subs_t.c.id == bindparam("b_id")), changed_s)
    # A draft's period is the subscription's period under its end (drafts.py).
    align_drafts(session, ended)
    sub_ids = {
        ext: r.id
        for ext, r in _by_external_id(
            session, subs_t, [row.subscription_id for _, row in rows]
        ).items()
    }

    replace_ids: list[int] = []
    new_d: list[dict[str, Any]] = []
    for _, row in rows:
        sid = sub_ids[row.subscription_id]
        if same_discounts(row, stored.discounts.get(sid, [])):
            continue
        replace_ids.append(sid)
        new_d.extend(
            {
                "subscription_id": sid,
                "price_id": d.price,
                "percent_off": d.percent_off,
                "amount_off": d.amount_off,
                "valid_from": d.valid_from,
                "valid_to": d.valid_to,
            }
            for d in row.discounts
        )
    for part in bulk.in_chunks(session, replace_ids):
        session.execute(
            delete(disc_t).where(bulk.where_in(session, disc_t.c.subscription_id, part))
        )
    if new_d:
        bulk.insert_rows(session, disc_t, new_d)
    session.flush()
    session.expire_all()
    return CustomersLoadResult(
        rows=len(rows),
        customers_created=len(new_c),
        customers_updated=len(changed_c),
        subscriptions_created=len(new_s),
        subscriptions_updated=len(changed_s),
        discounts_replaced=len(replace_ids),
    )
