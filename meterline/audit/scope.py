"""Whether what an audit command names exists: the customer of `--customer`.

A customer exists when the ledger holds it (`meterline customers load`). Reconcile also
accepts a customer the ledger does not hold whose events are in the warehouse (its usage
is listed as unattributed); anything else is AuditError (exit code 3), never an empty
report that passes.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import Customer
from meterline.audit.errors import AuditError


def in_ledger(session: Session, customer: str) -> bool:
    """Whether the ledger holds a customer with this external id."""
    found = session.scalar(select(Customer.id).where(Customer.external_id == customer).limit(1))
    return found is not None


def require_customer(session: Session, customer: str | None) -> None:
    """AuditError when `customer` is given and the ledger does not hold it."""
    if customer is not None and not in_ledger(session, customer):
        raise AuditError(unknown_customer(customer))


def unknown_customer(customer: str, usage_in: str | None = None) -> str:
    """The one-line message for a customer that does not exist (`usage_in`: the months
    searched for its events too, when they were)."""
    events = f", and no usage of it in {usage_in}" if usage_in else ""
    return (
        f"no customer {customer!r} in the ledger{events}: check the id (`meterline invoices"
        " list` shows the customers that have invoices)"
    )
