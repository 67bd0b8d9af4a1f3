"""A subscription's drafts follow its end: a reload that moves the end re-places them.

A draft is mutable, so its period is always the subscription's period as the current
terms define it (billing/periods.py: the end cuts the last period). Only the end can
move under a live invoice (rule 3, billing/customers/terms.py: the other placing terms
are fixed once there is one, and finalized periods never change), and it moves no
period start, so each draft keeps its start and:

- when the terms still have a period starting there, the draft's period becomes that
  period (cut by an earlier end, or grown back by a later one);
- otherwise (the period starts on or after the new end) the draft has no period of its
  own any more: if it carries corrections of other periods it stays their carrier, with
  the anchor cycle it starts as its period (where billing.adjustments puts corrections
  of a subscription that has ended); if it carries none it is deleted.

A draft whose period changes loses the lines of its own period (priced for the old
period, possibly prorated to it): the next close rates the new period and posts them,
and until then finalizing waits for that (billing.lifecycle.unrated). Adjustment lines
(corrections of other periods) are kept as they are. docs/ledger.md, "Customers file",
rule 3.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from billing import bulk
from billing.models import Invoice, InvoiceLine, Subscription
from billing.periods import Period, Terms, iter_periods, period_containing


@dataclass(frozen=True, slots=True)
class DraftsAligned:
    """What aligning did: drafts whose period changed, and drafts deleted (no period of
    their own and no correction to carry)."""

    moved: int = 0
    deleted: int = 0


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def draft_period(terms: Terms, start: datetime) -> Period | None:
    """The subscription's period (under `terms`) that starts at `start`, or None when it
    has none (`start` is on or after its end)."""
    for period in iter_periods(terms, after=start):
        return period if period.start == start else None
    return None


def align_drafts(session: Session, subscription_ids: Iterable[int]) -> DraftsAligned:
    """Give the drafts of these subscriptions the periods their stored terms define
    (module docstring), in the caller's transaction. Finalized and void invoices are
    never touched. Returns the counts of drafts moved and deleted."""
    ids = sorted(set(subscription_ids))
    moved: dict[int, datetime] = {}
    emptied: list[int] = []
    for part in bulk.chunks(ids):
        for row in session.execute(
            select(
                Invoice.id,
                Invoice.period_start,
                Invoice.period_end,
                Subscription.billing_anchor_day,
                Subscription.timezone,
                Subscription.start_date,
                Subscription.end_date,
            )
            .join(Subscription, Subscription.id == Invoice.subscription_id)
            .where(Invoice.subscription_id.in_(part), Invoice.status == "draft")
            .order_by(Invoice.id)
        ):
            terms = Terms(row.billing_anchor_day, row.timezone, row.start_date, row.end_date)
            start, end = _utc(row.period_start), _utc(row.period_end)
            own = draft_period(terms, start)
            if own is None:
                cycle = period_containing(terms.billing_anchor_day, terms.timezone, start)
                if (cycle.start, cycle.end) != (start, end) or _has_own_lines(session, row.id):
                    moved[row.id] = cycle.end
                    emptied.append(row.id)
            elif own.end != end:
                moved[row.id] = own.end
    if not moved:
        return DraftsAligned()
    bulk.lock_ledger_writes(session)
    for part in bulk.chunks(sorted(moved)):
        session.execute(
            delete(bulk.LINES).where(
                bulk.LINES.c.invoice_id.in_(part), bulk.LINES.c.kind != "adjustment"
            )
        )
    for invoice_id, end in sorted(moved.items()):
        session.execute(
            update(bulk.INVOICES)
            .where(bulk.INVOICES.c.id == invoice_id, bulk.INVOICES.c.status == "draft")
            .values(period_end=end)
        )
    carrying: set[int] = set()
    for part in bulk.chunks(emptied):
        carrying.update(
            session.scalars(
                select(InvoiceLine.invoice_id).where(InvoiceLine.invoice_id.in_(part)).distinct()
            )
        )
    gone = sorted(set(emptied) - carrying)
    for part in bulk.chunks(gone):
        session.execute(
            delete(bulk.INVOICES).where(
                bulk.INVOICES.c.id.in_(part), bulk.INVOICES.c.status == "draft"
            )
        )
    bulk.refresh_totals(session, sorted(set(moved) - set(gone)))
    session.expire_all()
    return DraftsAligned(moved=len(moved) - len(gone), deleted=len(gone))


def _has_own_lines(session: Session, invoice_id: int) -> bool:
    return (
        session.scalars(
            select(InvoiceLine.id)
            .where(InvoiceLine.invoice_id == invoice_id, InvoiceLine.kind != "adjustment")
            .limit(1)
        ).first()
        is not None
    )
