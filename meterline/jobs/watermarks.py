"""What a rating run saw of the warehouse (DESIGN.md invariant 7), and the events it did
not see: late for the lines it produced, whatever the clock said when they arrived.

Close records the watermark of each run (billing.posting.record_rating_run) and, for a
finalized period, looks for events the run that last rated it did not see (late.py); the
audit reads the same watermarks to explain a line's late events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import bulk
from billing.models import RatingRun, RatingRunStaleDay
from meters.rollup import dirty_days
from meters.sql_files import query
from meters.warehouse.base import Warehouse

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_utc(value: datetime) -> datetime:
    """A ledger timestamp in UTC (SQLite returns them naive, in UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Watermark:
    """What a rating run saw (DESIGN.md invariant 7): every event ingested up to `events`,
    except on the UTC days of `stale`, whose rollup was older when the run read it: of
    those it saw the events ingested up to the day's own watermark (the epoch for a day
    never rolled up). An event the run did not see is late for the lines it produced,
    whatever the clock said when it was ingested."""

    events: datetime
    stale: Mapping[date, datetime] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.events, tuple(sorted(self.stale.items()))))

    def seen_up_to(self, day: date) -> datetime:
        return self.stale.get(day, self.events)

    def saw(self, timestamp: datetime, ingested_at: datetime) -> bool:
        return ingested_at <= self.seen_up_to(timestamp.astimezone(UTC).date())

    def earliest(self) -> datetime:
        """The earliest instant up to which the run saw every day's events."""
        return min([self.events, *self.stale.values()])


def events_watermark(warehouse: Warehouse) -> datetime | None:
    """The latest ingest time of any event (None for an empty warehouse)."""
    ((latest, count),) = warehouse.query_rows(query("audit/events_watermark"))
    return as_utc(latest) if int(count) else None


def rollup_watermark(warehouse: Warehouse, first: date, last: date) -> Watermark:
    """What a close reading the rollup now sees of the days first..last: every event
    ingested so far, except on the days whose rollup is stale (dirty_days), where it sees
    only what the day's last build read: the events ingested up to the build's watermark;
    none it can tell apart (the epoch) when events ingested at or before that watermark
    arrived after the build. Read before the quantities: an event ingested meanwhile is
    then at worst called late, never called seen."""
    events = events_watermark(warehouse) or EPOCH
    stale = dirty_days(warehouse, up_to=last, since=first)
    marks: dict[date, datetime] = {}
    if stale:
        for day, mark, raw_rows, rows_now in warehouse.query_rows(
            query("audit/rollup_watermarks"),
            {
                "days": list(stale),
                "start": datetime.combine(min(stale), time(0), tzinfo=UTC),
                "end": datetime.combine(max(stale) + timedelta(days=1), time(0), tzinfo=UTC),
            },
        ):
            marks[day] = as_utc(mark) if int(rows_now) <= int(raw_rows) else EPOCH
    return Watermark(events, {day: min(marks.get(day, EPOCH), events) for day in stale})


def run_watermarks(session: Session, run_ids: Iterable[int]) -> dict[int, Watermark]:
    """The watermark of each rating run. A run recorded before watermarks were kept saw,
    as far as anyone can tell, what was ingested by its logical time (`run_at`)."""
    ids = sorted(set(run_ids))
    out: dict[int, Watermark] = {}
    stale: dict[int, dict[date, datetime]] = defaultdict(dict)
    for part in bulk.chunks(ids):
        for run_id, day, mark in session.execute(
            select(
                RatingRunStaleDay.rating_run_id, RatingRunStaleDay.day, RatingRunStaleDay.watermark
            ).where(RatingRunStaleDay.rating_run_id.in_(part))
        ):
            stale[run_id][day] = as_utc(mark)
        for run_id, events, run_at in session.execute(
            select(RatingRun.id, RatingRun.events_watermark, RatingRun.run_at).where(
                RatingRun.id.in_(part)
            )
        ):
            out[run_id] = Watermark(as_utc(events or run_at), stale.get(run_id, {}))
    return out


@dataclass(frozen=True)
class LateWindow:
    """A customer's window [start, end) and what the run that rated it saw."""

    id: int
    customer: str
    start: datetime
    end: datetime
    seen: Watermark


def late_events(
    warehouse: Warehouse, windows: Sequence[LateWindow]
) -> dict[int, dict[str, tuple[int, Decimal, datetime]]]:
    """Per window id and meter: (events, value sum, last ingest) of the window's events
    that its run did not see (late events)."""
    out: dict[int, dict[str, tuple[int, Decimal, datetime]]] = defaultdict(dict)
    if not windows:
        return out
    marks = sorted({w.seen for w in windows if w.seen.stale}, key=lambda m: sorted(m.stale.items()))
    index = {mark: i + 1 for i, mark in enumerate(marks)}
    rows = warehouse.query_rows(
        query("audit/late_by_window"),
        {
            "windows": [
                (w.id, w.customer, w.start, w.end, w.seen.events, index.get(w.seen, 0))
                for w in windows
            ],
            "stale": [dict(m.stale) for m in marks],
            "customer_ids": sorted({w.customer for w in windows}),
            "start": min(w.start for w in windows),
            "end": max(w.end for w in windows),
            "since": min(w.seen.earliest() for w in windows),
        },
    )
    for wid, meter, events, value_sum, latest in rows:
        out[int(wid)][str(meter)] = (int(events), Decimal(value_sum), as_utc(latest))
    return out
