"""Late usage of finalized periods: which periods have events the rating run that last
rated them did not see (DESIGN.md invariant 7), and their correction: the period
re-rated, the difference posted as adjustment lines on the next open invoice
(DESIGN.md invariant 5; a no-op when nothing changed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import bulk
from billing.adjustments import post_adjustments
from billing.errors import LedgerError
from billing.models import Invoice, InvoiceLine
from meterline.jobs.due import Due
from meterline.jobs.rate import PeriodRating
from meterline.jobs.watermarks import LateWindow, Watermark, as_utc, late_events, run_watermarks
from meters.warehouse.base import Warehouse


@dataclass
class Adjusted:
    """Adjustment lines posted (created or replaced), and the periods whose late usage
    could not be adjusted, with the reason."""

    lines: int = 0
    failed: dict[Due, str] = field(default_factory=dict)


def periods_with_late_usage(
    session: Session, warehouse: Warehouse, finalized: Sequence[tuple[Due, datetime]]
) -> list[Due]:
    """The finalized periods (with the time each was finalized) that have events the
    latest run rating them did not see; for an invoice without a recorded run, events
    ingested after its finalization."""
    if not finalized:
        return []
    runs = _period_runs(session, [d for d, _ in finalized])
    marks = run_watermarks(session, runs.values())
    windows = []
    for i, (item, finalized_at) in enumerate(finalized):
        run = runs.get((item.subscription.id, item.period.start))
        seen = marks.get(run) if run is not None else None
        windows.append(
            LateWindow(
                i,
                item.customer,
                item.period.start,
                item.period.end,
                seen or Watermark(finalized_at),
            )
        )
    late = late_events(warehouse, windows)
    return [item for i, (item, _) in enumerate(finalized) if late.get(i)]


def post_late_adjustments(
    session: Session, ratings: Mapping[Due, PeriodRating], rating_run_id: int | None
) -> Adjusted:
    """Post each re-rated finalized period's difference as adjustment lines, each period
    in a savepoint: one the ledger refuses (or that could not be re-rated) is `failed`
    and the others are adjusted."""
    out = Adjusted()
    for item, rating in ratings.items():
        reason = rating.error
        if reason is None:
            try:
                with session.begin_nested():
                    result = post_adjustments(
                        session,
                        item.subscription.external_id,
                        item.period,
                        rating.lines,
                        rerate=True,
                        rating_run_id=rating_run_id,
                    )
                out.lines += result.created + result.replaced
            except LedgerError as exc:
                reason = str(exc)
        if reason is not None:
            out.failed[item] = reason
    return out


def _period_runs(session: Session, periods: Sequence[Due]) -> dict[tuple[int, datetime], int]:
    """The latest rating run that rated each (subscription, period): the one that posted
    its lines, or a later one that posted adjustments correcting it."""
    if not periods:
        return {}
    sub_ids = sorted({d.subscription.id for d in periods})
    first = min(d.period.start for d in periods)
    out: dict[tuple[int, datetime], int] = {}
    for part in bulk.chunks(sub_ids):
        for sub_id, start, run_id in session.execute(
            select(
                Invoice.subscription_id,
                InvoiceLine.service_period_start,
                func.max(InvoiceLine.rating_run_id),
            )
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(
                Invoice.subscription_id.in_(part),
                Invoice.status != "void",
                InvoiceLine.service_period_start >= first,
                InvoiceLine.rating_run_id.is_not(None),
            )
            .group_by(Invoice.subscription_id, InvoiceLine.service_period_start)
        ):
            if run_id is not None:
                out[(sub_id, as_utc(start))] = run_id
    return out
