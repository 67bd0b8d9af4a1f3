"""Late usage of finalized periods: which periods have events the rating run that last
rated them did not see (DESIGN.md invariant 7), and their correction: the period
re-rated, the difference posted as adjustment lines on the next open invoice
(DESIGN.md invariant 5; a no-op when nothing changed).

A late event of a carry-forward meter (latest, time_weighted: a reading holds its value
until the next reading of its series, docs/rating.md) changes every period its value
reaches into, not only the period it is dated in: a seat reading dated in September
also changes October's seat count when no later reading supersedes it before October.
Each such period is late too, so each is re-rated and adjusted once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import bulk
from billing.adjustments import post_adjustments
from billing.catalog import current_catalog
from billing.errors import LedgerError
from billing.models import Invoice, InvoiceLine
from meterline.jobs.due import Due
from meterline.jobs.rate import PeriodRating
from meterline.jobs.watermarks import LateWindow, Watermark, as_utc, late_events, run_watermarks
from meters.catalog import Aggregation, MeterCatalog
from meters.rollup import definition_params
from meters.sql_files import query
from meters.warehouse.base import Warehouse

#: Aggregations whose value carries into later periods: a reading holds until the next.
CARRIED = (Aggregation.LATEST, Aggregation.TIME_WEIGHTED)

LateByMeter = dict[str, tuple[int, Decimal, datetime]]


@dataclass
class Adjusted:
    """Adjustment lines posted (created or replaced), and the periods whose late usage
    could not be adjusted, with the reason."""

    lines: int = 0
    failed: dict[Due, str] = field(default_factory=dict)


def periods_with_late_usage(
    session: Session,
    warehouse: Warehouse,
    finalized: Sequence[tuple[Due, datetime]],
    meters: MeterCatalog | None = None,
) -> list[Due]:
    """The finalized periods (with the time each was finalized) that have events the
    latest run rating them did not see; for an invoice without a recorded run, events
    ingested after its finalization. Late are the events dated in the period and the
    readings of carry-forward meters dated before it whose value reaches into it
    (carried_late_events). `meters`: the catalog's meters (default: the catalog loaded
    in the ledger)."""
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
    carried = carried_late_events(
        warehouse, meters if meters is not None else current_catalog(session).meters, windows
    )
    return [item for i, (item, _) in enumerate(finalized) if late.get(i) or carried.get(i)]


def carried_late_events(
    warehouse: Warehouse, meters: MeterCatalog, windows: Sequence[LateWindow]
) -> dict[int, LateByMeter]:
    """Per window id and meter: (events, value sum, last ingest) of the late readings of
    carry-forward meters (CARRIED) dated before the window whose value reaches into it:
    for time_weighted, the reading still holds at the window's start; for latest, at its
    end (no later reading of its series, by timestamp then event_id, before the end).
    Late means as in watermarks.late_events: not seen by the window's run."""
    carried = sorted(n for n, m in meters.meters.items() if m.aggregation in CARRIED)
    if not carried or not windows:
        return {}
    since = min(w.seen.earliest() for w in windows)
    first = {
        str(customer): as_utc(at)
        for customer, at in warehouse.query_rows(
            query("audit/late_carried_candidates"),
            {
                "customer_ids": sorted({w.customer for w in windows}),
                "meters": carried,
                "since": since,
                "before": max(w.start for w in windows),
            },
        )
    }
    wanted = [w for w in windows if w.customer in first and first[w.customer] < w.start]
    if not wanted:
        return {}
    marks = sorted({w.seen for w in wanted if w.seen.stale}, key=lambda m: sorted(m.stale.items()))
    index = {mark: i + 1 for i, mark in enumerate(marks)}
    definitions = definition_params(meters)
    rows = warehouse.query_rows(
        query("audit/late_carried_by_window"),
        {
            "windows": [
                (w.id, w.customer, w.start, w.end, w.seen.events, index.get(w.seen, 0))
                for w in wanted
            ],
            "stale": [dict(m.stale) for m in marks],
            "customer_ids": sorted({w.customer for w in wanted}),
            "meters": carried,
            "latest_meters": [
                n for n in carried if meters.meters[n].aggregation is Aggregation.LATEST
            ],
            "dimensions": definitions["dimensions"],
            "filters": definitions["filters"],
            "from": min(first[w.customer] for w in wanted),
            "end": max(w.end for w in wanted),
            "since": min(w.seen.earliest() for w in wanted),
        },
    )
    out: dict[int, LateByMeter] = {}
    for wid, meter, events, value_sum, latest in rows:
        out.setdefault(int(wid), {})[str(meter)] = (int(events), Decimal(value_sum), as_utc(latest))
    return out


def post_late_adjustments(
    session: Session, ratings: Mapping[Due, PeriodRating], rating_run_id: int | None
) -> Adjusted:
    """Post each re-rated finalized period's difference as adjustment lines, each period
    in a savepoint: one the ledger refuses (or that could not be re-rated) is `failed`
    and the others are adjusted. The session's objects are expired once, after the last
    (post_adjustments reads none that another period's writes change)."""
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
                        expire=False,
                    )
                out.lines += result.created + result.replaced
            except LedgerError as exc:
                reason = str(exc)
        if reason is not None:
            out.failed[item] = reason
    if ratings:
        session.expire_all()
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
