"""Ledger reads shared by the audit's use cases: invoices and lines as typed facts
(``meterline.audit.facts``). The caller opens the session
(``meterline.connections.ledger_session``); nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing import bulk
from billing.models import Customer, Invoice, InvoiceLine, RatingRun, Subscription
from billing.periods import Period, period_containing
from billing.views import month_bounds
from meterline.audit.facts import InvoiceInfo, PostedLine
from meterline.jobs.due import Due
from meterline.jobs.watermarks import as_utc


def invoice_info(inv: Invoice) -> InvoiceInfo:
    """The invoice, its subscription's terms, and the billing cycle of its period."""
    sub = inv.subscription
    cycle = period_containing(sub.billing_anchor_day, sub.timezone, as_utc(inv.period_start))
    return InvoiceInfo(
        id=inv.id,
        status=inv.status,
        customer=inv.customer.external_id,
        customer_name=inv.customer.name,
        subscription=sub.external_id,
        plan=sub.plan_id,
        currency=inv.currency,
        timezone=sub.timezone,
        period_start=as_utc(inv.period_start),
        period_end=as_utc(inv.period_end),
        period_start_local=inv.period_start_local,
        cycle_start=cycle.start,
        cycle_end=cycle.end,
        finalized_at=as_utc(inv.finalized_at) if inv.finalized_at else None,
        total_minor=inv.total_minor,
        line_count=inv.line_count,
    )


def _posted(line: InvoiceLine, status: str, run_at: datetime | None, fallback: Any) -> PostedLine:
    posted_at = run_at or fallback
    return PostedLine(
        id=line.id,
        invoice_id=line.invoice_id,
        invoice_status=status,
        kind=line.kind,
        key=line.idempotency_key,
        price_id=line.price_id,
        price_version=line.price_version,
        meter=line.meter,
        group=line.dimension_group,
        quantity=line.quantity,
        unit_amount=line.unit_amount,
        amount_minor=line.amount_minor,
        amount_precise=line.amount_precise,
        currency=line.currency,
        description=line.description,
        breakdown=line.breakdown,
        service_start=as_utc(line.service_period_start),
        service_end=as_utc(line.service_period_end),
        adjusts_key=line.adjusts_key,
        adjusts_line_id=line.adjusts_line_id,
        rating_run_id=line.rating_run_id,
        posted_at=as_utc(posted_at) if posted_at else None,
    )


def lines(session: Session, *where: Any) -> list[PostedLine]:
    """The lines matching `where` (SQLAlchemy conditions on InvoiceLine and Invoice), by
    id, each with its invoice's status and the logical time of the run that posted it."""
    rows = session.execute(
        select(InvoiceLine, Invoice.status, RatingRun.run_at, Invoice.finalized_at)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .outerjoin(RatingRun, RatingRun.id == InvoiceLine.rating_run_id)
        .where(*where)
        .order_by(InvoiceLine.id)
    ).all()
    return [_posted(line, status, run_at, done) for line, status, run_at, done in rows]


def lines_of_invoices(
    session: Session, invoice_ids: Sequence[int], *where: Any
) -> dict[int, list[PostedLine]]:
    """Per invoice id: its lines (matching `where` too), by id."""
    out: dict[int, list[PostedLine]] = {i: [] for i in invoice_ids}
    for part in bulk.chunks(list(invoice_ids)):
        for line in lines(session, InvoiceLine.invoice_id.in_(part), *where):
            out[line.invoice_id].append(line)
    return out


def adjustments_of(session: Session, keys: Sequence[str]) -> list[PostedLine]:
    """Adjustment lines on live invoices correcting any of `keys`, by id."""
    out: list[PostedLine] = []
    for part in bulk.chunks(sorted(set(keys))):
        out += lines(
            session,
            InvoiceLine.kind == "adjustment",
            InvoiceLine.adjusts_key.in_(part),
            Invoice.status != "void",
        )
    return sorted(out, key=lambda a: a.id)


def live_invoice(session: Session, subscription_id: int, start: datetime) -> Invoice | None:
    """The subscription's live (not void) invoice of the period starting at `start`."""
    return session.scalars(
        select(Invoice).where(
            Invoice.subscription_id == subscription_id,
            Invoice.period_start == start,
            Invoice.status != "void",
        )
    ).first()


def month_invoices(
    session: Session, period: str, customer: str | None
) -> tuple[list[Invoice], int]:
    """Invoices whose period starts in month YYYY-MM (local time), live ones, by customer
    and period; and the number of void ones."""
    first, nxt = month_bounds(period)
    stmt = (
        select(Invoice)
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(Invoice.period_start_local >= first, Invoice.period_start_local < nxt)
        .options(
            selectinload(Invoice.subscription).selectinload(Subscription.discounts),
            selectinload(Invoice.customer),
        )
        .order_by(Customer.external_id, Invoice.period_start, Invoice.id)
    )
    if customer is not None:
        stmt = stmt.where(Customer.external_id == customer)
    invoices = list(session.scalars(stmt))
    live = [i for i in invoices if i.status != "void"]
    return live, len(invoices) - len(live)


def due_of(inv: Invoice) -> Due:
    """The invoice's subscription period, as the rating takes it."""
    return Due(
        inv.subscription,
        inv.customer.external_id,
        Period(as_utc(inv.period_start), as_utc(inv.period_end)),
    )
