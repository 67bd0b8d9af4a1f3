"""The ledger's side of a month's export: invoices, their lines and the credit ledger
entries, as Arrow tables with the columns of meterline.sinks.lake.tables (minor units
as the ledger keeps them; ids are the ledger's, never reused).

Which entries belong to a month (docs/export.md): a consumption or its reversal belongs
to the month of the invoice whose line it funds, so the credit lines of a month's
invoices and the consumption behind them are in the same partition; every other entry
(grant, expiry, void, rollover) to the month it takes effect in, in its customer's
timezone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pyarrow as pa
from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from billing.models import (
    CreditGrant,
    CreditLedgerEntry,
    Customer,
    Invoice,
    InvoiceLine,
    Subscription,
)
from billing.money import exponent
from billing.periods import zone
from billing.views import month_bounds
from meterline.sinks.lake.tables import CREDIT_ENTRIES, INVOICE_LINES, INVOICES, Table

# The widest UTC offsets (UTC-12, UTC+14): a local month lies within its UTC month
# widened by them.
_WIDEST = timedelta(hours=14)


def _table(t: Table, records: Sequence[tuple[Any, Mapping[str, Any]]]) -> pa.Table:
    """Each record (an ORM object, and the columns it does not have by the column's name)
    as a row of `t`: a column is the record's value of it, else the object's attribute of
    that name."""
    columns: dict[str, list[Any]] = {c.name: [] for c in t.columns}
    for obj, given in records:
        for name, values in columns.items():
            values.append(given[name] if name in given else getattr(obj, name))
    types = {c.name: c.type for c in t.columns}
    return pa.table({name: pa.array(values, types[name]) for name, values in columns.items()})


def _month_invoices(period: str) -> Any:
    first, nxt = month_bounds(period)
    return and_(Invoice.period_start_local >= first, Invoice.period_start_local < nxt)


def _owners(customer: str, subscription: str, currency: str) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "subscription_id": subscription,
        "currency_exponent": exponent(currency),
    }


def invoices(session: Session, period: str) -> pa.Table:
    """The invoices whose period starts in the month (local time), every status."""
    return _of_invoices(session, period, INVOICES, Invoice, "invoice_id")


def invoice_lines(session: Session, period: str) -> pa.Table:
    """The lines of the month's invoices."""
    return _of_invoices(session, period, INVOICE_LINES, InvoiceLine, "line_id")


def _of_invoices(
    session: Session, period: str, t: Table, model: type[Invoice] | type[InvoiceLine], key: str
) -> pa.Table:
    query: Any = select(model, Customer.external_id, Subscription.external_id)
    if model is InvoiceLine:
        query = query.join(Invoice, Invoice.id == InvoiceLine.invoice_id)
    found: Any = session.execute(
        query.join(Customer, Customer.id == Invoice.customer_id)
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(_month_invoices(period))
        .order_by(model.id)
    )
    return _table(t, [(obj, {key: obj.id, **_owners(c, s, obj.currency)}) for obj, c, s in found])


def credit_entries(session: Session, period: str) -> pa.Table:
    """The credit ledger entries of the month (module docstring)."""
    first, nxt = month_bounds(period)
    funded = aliased(InvoiceLine)
    funded_invoice = aliased(Invoice)
    start = datetime.combine(first, time(0), tzinfo=UTC) - _WIDEST
    end = datetime.combine(nxt, time(0), tzinfo=UTC) + _WIDEST
    found = session.execute(
        select(
            CreditLedgerEntry,
            CreditGrant,
            Customer.external_id,
            Customer.timezone,
            funded.invoice_id,
            funded_invoice.period_start_local,
        )
        .join(CreditGrant, CreditGrant.id == CreditLedgerEntry.grant_id)
        .join(Customer, Customer.id == CreditGrant.customer_id)
        .outerjoin(funded, funded.id == CreditLedgerEntry.invoice_line_id)
        .outerjoin(funded_invoice, funded_invoice.id == funded.invoice_id)
        .where(
            and_(
                funded_invoice.period_start_local >= first,
                funded_invoice.period_start_local < nxt,
            )
            | and_(
                CreditLedgerEntry.invoice_line_id.is_(None),
                CreditLedgerEntry.effective_at >= start,
                CreditLedgerEntry.effective_at < end,
            )
        )
        .order_by(CreditLedgerEntry.id)
    )
    records = []
    for entry, grant, customer, tz, invoice_id, invoice_month in found:
        if invoice_month is None and not _in_local_month(entry.effective_at, tz, first, nxt):
            continue
        given = {
            "entry_id": entry.id,
            "grant_id": grant.grant_id,
            "customer_id": customer,
            "unit": grant.meter or grant.currency,
            "currency": grant.currency,
            "currency_exponent": exponent(grant.currency),
            "invoice_id": invoice_id,
        }
        records.append((entry, given))
    return _table(CREDIT_ENTRIES, records)


def _in_local_month(at: datetime, tz: str, first: date, nxt: date) -> bool:
    return first <= at.astimezone(zone(tz)).date() < nxt


def usage_periods(
    session: Session, period: str
) -> list[tuple[int, str, str, str, datetime, datetime]]:
    """The live (finalized) invoices of the month whose usage is exported day by day:
    (invoice id, subscription, customer, timezone, period start, period end)."""
    return [
        (int(i), str(s), str(c), str(tz), start, end)
        for i, s, c, tz, start, end in session.execute(
            select(
                Invoice.id,
                Subscription.external_id,
                Customer.external_id,
                Subscription.timezone,
                Invoice.period_start,
                Invoice.period_end,
            )
            .join(Customer, Customer.id == Invoice.customer_id)
            .join(Subscription, Subscription.id == Invoice.subscription_id)
            .where(_month_invoices(period), Invoice.status == "finalized")
            .order_by(Invoice.id)
        )
    ]
