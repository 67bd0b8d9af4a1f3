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

from collections.abc import Sequence
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


def _columns(t: Table, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Rows (tuples in `names` order) as an Arrow table of `t`'s types."""
    by_name = {c.name: c for c in t.frame}
    arrays = {
        name: pa.array([r[i] for r in rows], by_name[name].type) for i, name in enumerate(names)
    }
    return pa.table(arrays)


def _month_invoices(period: str) -> Any:
    first, nxt = month_bounds(period)
    return and_(Invoice.period_start_local >= first, Invoice.period_start_local < nxt)


def invoices(session: Session, period: str) -> pa.Table:
    """The invoices whose period starts in the month (local time), every status."""
    names = [c.name for c in INVOICES.columns]
    rows = []
    for inv, customer, subscription in session.execute(
        select(Invoice, Customer.external_id, Subscription.external_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(_month_invoices(period))
        .order_by(Invoice.id)
    ):
        rows.append(
            (
                inv.id,
                customer,
                subscription,
                inv.status,
                inv.currency,
                exponent(inv.currency),
                inv.period_start,
                inv.period_end,
                inv.period_start_local,
                inv.subtotal_minor,
                inv.discount_minor,
                inv.adjustment_minor,
                inv.total_minor,
                inv.line_count,
                inv.finalized_at,
                inv.voided_at,
                inv.reissue_of_id,
            )
        )
    return _columns(INVOICES, names, rows)


def invoice_lines(session: Session, period: str) -> pa.Table:
    """The lines of the month's invoices."""
    names = [c.name for c in INVOICE_LINES.columns]
    line = InvoiceLine
    rows = []
    for ln, customer, subscription in session.execute(
        select(line, Customer.external_id, Subscription.external_id)
        .join(Invoice, Invoice.id == line.invoice_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(_month_invoices(period))
        .order_by(line.id)
    ):
        rows.append(
            (
                ln.id,
                ln.invoice_id,
                customer,
                subscription,
                ln.idempotency_key,
                ln.kind,
                ln.price_id,
                ln.price_version,
                ln.meter,
                ln.dimension_group,
                ln.description,
                ln.quantity,
                ln.unit_amount,
                ln.currency,
                exponent(ln.currency),
                ln.amount_minor,
                ln.amount_precise,
                ln.service_period_start,
                ln.service_period_end,
                ln.adjusts_line_id,
                ln.credit_grant_id,
                ln.rating_run_id,
            )
        )
    return _columns(INVOICE_LINES, names, rows)


def credit_entries(session: Session, period: str) -> pa.Table:
    """The credit ledger entries of the month (module docstring)."""
    first, nxt = month_bounds(period)
    funded = aliased(InvoiceLine)
    funded_invoice = aliased(Invoice)
    start = datetime.combine(first, time(0), tzinfo=UTC) - _WIDEST
    end = datetime.combine(nxt, time(0), tzinfo=UTC) + _WIDEST
    query = (
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
    names = [c.name for c in CREDIT_ENTRIES.columns]
    rows = []
    for entry, grant, customer, tz, invoice_id, invoice_month in session.execute(query):
        if invoice_month is None and not _in_local_month(entry.effective_at, tz, first, nxt):
            continue
        rows.append(
            (
                entry.id,
                grant.grant_id,
                customer,
                entry.kind,
                entry.from_account,
                entry.to_account,
                entry.amount,
                grant.meter or grant.currency,
                entry.available_after,
                grant.currency,
                exponent(grant.currency),
                entry.value_minor,
                entry.invoice_line_id,
                invoice_id,
                entry.reverses_entry_id,
                entry.effective_at,
                entry.idempotency_key,
                entry.note,
            )
        )
    return _columns(CREDIT_ENTRIES, names, rows)


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
