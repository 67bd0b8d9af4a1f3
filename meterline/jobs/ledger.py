"""The ledger by hand: what `meterline customers|invoices|ledger` run. Each opens the
ledger through meterline.connections.ledger_session (a write is one transaction,
committed on success) and calls billing; the command renders what comes back.

Errors are billing's (billing.errors: NotFound, exit code 3; the other LedgerErrors, 2)
and the openers' (a schema that is not this code's: 2; an unreachable ledger: 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

import billing
from billing import migrate
from billing.customers import FORMATS, CustomersLoadResult, FileFormat
from billing.errors import NotFound
from billing.models import INVOICE_STATUSES, Customer
from billing.views import customers_load_text, totals_by_currency
from meterline.connections import ledger_session, require_ledger_store
from meterline.settings import Settings, settings

__all__ = [
    "CUSTOMER_FORMATS",
    "INVOICE_STATUSES",
    "customers_load_text",
    "finalize_invoices",
    "invoice_detail",
    "ledger_revision",
    "list_invoices",
    "load_customers",
    "void_invoice",
]

# The customers file formats `customers load --format` takes.
CUSTOMER_FORMATS: tuple[str, ...] = tuple(sorted(set(FORMATS.values())))


def load_customers(
    path: Path, fmt: FileFormat | None = None, *, config: Settings | None = None
) -> CustomersLoadResult:
    """Insert or update in place the customers, subscriptions and discounts of a file,
    all or nothing (billing.customers). Raises LoadError naming every bad row (exit 2)."""
    with ledger_session(config, write=True) as session:
        return billing.load_customers_file(session, path, fmt)


def list_invoices(
    *,
    period: str | None = None,
    customer: str | None = None,
    status: str | None = None,
    config: Settings | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The invoices (of a month YYYY-MM by their period's local start, a customer, a
    status) with their totals, and the totals per currency over the non-void ones.
    Raises billing.errors.NotFound (exit code 3) for a customer the ledger does not hold."""
    with ledger_session(config) as session:
        if (
            customer is not None
            and session.scalar(select(Customer.id).where(Customer.external_id == customer).limit(1))
            is None
        ):
            raise NotFound(
                f"no customer {customer!r} in the ledger: check the id (`meterline invoices"
                " list` shows the customers that have invoices)"
            )
        rows = billing.list_invoices(session, period=period, customer=customer, status=status)
    return rows, totals_by_currency(rows)


def invoice_detail(invoice_id: int, *, config: Settings | None = None) -> dict[str, Any]:
    """One invoice with its lines, their tier breakdowns and its totals. Raises
    billing.errors.NotFound (exit code 3)."""
    with ledger_session(config) as session:
        return billing.invoice_detail(session, invoice_id)


def finalize_invoices(
    invoice_ids: Sequence[int] = (),
    *,
    due: bool = False,
    as_of: datetime,
    grace: timedelta | None = None,
    config: Settings | None = None,
) -> list[int]:
    """Finalize the invoices named, or with ``due`` every draft whose period ended at
    least ``grace`` (default METERLINE_FINALIZE_GRACE_HOURS, as close waits) before
    ``as_of``; the ids finalized. Raises FinalizeTooEarly and the like (exit code 2)."""
    config = config or settings()
    wait = grace if grace is not None else timedelta(hours=config.finalize_grace_hours)
    with ledger_session(config, write=True) as session:
        if due:
            return list(billing.finalize_due(session, as_of=as_of, grace=wait))
        return [billing.finalize(session, i, as_of=as_of, grace=wait).id for i in invoice_ids]


def void_invoice(invoice_id: int, *, as_of: datetime, config: Settings | None = None) -> int:
    """Void an invoice; posting its period again issues a new invoice linked to it."""
    with ledger_session(config, write=True) as session:
        return billing.void(session, invoice_id, as_of=as_of).id


def ledger_revision(config: Settings | None = None) -> tuple[str | None, str]:
    """(the ledger's schema revision, None when it has none; the latest this code ships).
    Raises StoreMissing for a SQLite file that does not exist (it is not created)."""
    config = config or settings()
    require_ledger_store(config)
    return migrate.current(config.ledger_url), migrate.head()


def check_ledger(config: Settings | None = None) -> None:
    """Open the ledger as every command does, and nothing else: it exists, answers and is
    at this code's schema (the service checks its read endpoints' ledger at start so a
    wrong METERLINE_SERVICE_LEDGER_READ_URL stops it there, not at the first request)."""
    with ledger_session(config):
        pass
