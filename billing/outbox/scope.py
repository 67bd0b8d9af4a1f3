"""Which ledger invoices a reconcile against another system covers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import bulk
from billing.models import Customer, Invoice, OutboxDelivery, OutboxEvent
from billing.outbox.delivery import UNKNOWN_ATTEMPT, attempted


def month_bounds(month: str) -> tuple[date, date]:
    """``YYYY-MM`` -> (its first day, the next month's first day)."""
    year, number = (int(part) for part in month.split("-"))
    first = date(year, number, 1)
    return first, date(year + number // 12, number % 12 + 1, 1)


def invoices_of_month(
    session: Session, month: str, *, customer: str | None = None
) -> list[tuple[int, str]]:
    """(invoice id, status) of the finalized and void invoices whose period starts in
    ``month`` (local dates, as ``meterline invoices list --period`` counts them)."""
    first, nxt = month_bounds(month)
    query = (
        select(Invoice.id, Invoice.status)
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(
            Invoice.period_start_local >= first,
            Invoice.period_start_local < nxt,
            Invoice.status != "draft",
        )
        .order_by(Invoice.id)
    )
    if customer is not None:
        query = query.where(Customer.external_id == customer)
    return [(row[0], row[1]) for row in session.execute(query)]


def delivery_states(
    session: Session, sink: str, invoice_ids: list[int]
) -> dict[tuple[int, str], tuple[int, str]]:
    """(event id, status) of each invoice's latest event per kind, for ``sink``."""
    found: dict[tuple[int, str], tuple[int, str]] = {}
    rows = session.execute(
        select(OutboxEvent.invoice_id, OutboxEvent.kind, OutboxEvent.id, OutboxDelivery.status)
        .join(OutboxDelivery, OutboxDelivery.event_id == OutboxEvent.id)
        .where(OutboxDelivery.sink == sink, OutboxEvent.invoice_id.in_(invoice_ids))
        .order_by(OutboxEvent.id)
    )
    for invoice_id, kind, event_id, status in rows:
        if invoice_id is not None:
            found[(invoice_id, kind)] = (event_id, status)
    return found


@dataclass(frozen=True)
class FirstAttempts:
    """When a sink was first asked to act on some invoices (wall clock).

    ``known``: every delivery of their events that was ever attempted has its first
    attempt recorded (outbox_deliveries.first_attempted_at, migration 0015); when False,
    some were attempted before that was recorded and nothing can be bounded.
    ``earliest``: the earliest first attempt; None when none was attempted (so the sink
    created nothing for them)."""

    known: bool
    earliest: datetime | None


def first_attempts(session: Session, sink: str, invoice_ids: list[int]) -> FirstAttempts:
    """The first attempts of ``sink``'s deliveries of the events of ``invoice_ids``."""
    known, earliest = True, None
    for part in bulk.chunks(invoice_ids):
        rows = session.execute(
            select(OutboxDelivery.first_attempted_at)
            .join(OutboxEvent, OutboxEvent.id == OutboxDelivery.event_id)
            .where(OutboxDelivery.sink == sink, OutboxEvent.invoice_id.in_(part), attempted())
        )
        for (first,) in rows:
            if first is None or first == UNKNOWN_ATTEMPT:
                known = False  # attempted before first attempts were recorded
            else:
                earliest = first if earliest is None else min(earliest, first)
    return FirstAttempts(known, earliest)


def invoice_months(session: Session) -> list[str]:
    """The months (YYYY-MM) in which finalized or void invoices' periods start."""
    days = session.scalars(
        select(Invoice.period_start_local).where(Invoice.status != "draft").distinct()
    )
    return sorted({day.strftime("%Y-%m") for day in days})


def has_customer(session: Session, customer: str) -> bool:
    return session.scalar(select(Customer.id).where(Customer.external_id == customer)) is not None
