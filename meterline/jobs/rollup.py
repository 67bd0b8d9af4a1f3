"""The steps the DAGs run, as plain functions: an engineer can run each by hand
(`meterline rollup`, `meterline backfill`), and a DAG task is a thin call to one.

Time comes from the data interval the caller passes, never from the clock
(DESIGN.md invariant 7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from meterline.connections import meter_catalog, open_warehouse
from meterline.settings import Settings, settings
from meters.ingest.journal import repair
from meters.rollup import (
    RollupResult,
    plan_scan,
    rebuild_day,
    record_scan,
    scan_dirty_days,
)


@dataclass
class RollupReport:
    day: date
    rebuilt: list[dict[str, Any]] = field(default_factory=list)
    # Ingests whose process died before they committed, rolled back before the build.
    rolled_back_ingests: list[str] = field(default_factory=list)
    # The day ranges [first, last] the scan for changed days read (none without `late`).
    scanned: list[tuple[date, date]] = field(default_factory=list)

    @property
    def late_days(self) -> list[str]:
        return [r["day"] for r in self.rebuilt if r["day"] != self.day.isoformat()]

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "rebuilt": self.rebuilt,
            "late_days": self.late_days,
            "rolled_back_ingests": self.rolled_back_ingests,
            "scanned": [[first.isoformat(), last.isoformat()] for first, last in self.scanned],
        }


def _result(result: RollupResult) -> dict[str, Any]:
    doc = asdict(result)
    doc["day"] = result.day.isoformat()
    doc["watermark"] = result.watermark.isoformat() if result.watermark else None
    return doc


def rollup_day(
    day: date,
    *,
    config: Settings | None = None,
    late: bool = True,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> RollupReport:
    """Rebuild `day`'s rollup; with `late`, then every earlier day whose events changed
    since its last build, however old: the days of the late-event lookback
    (Settings.late_lookback) and every day an ingest committed or rolled back since the
    previous scan wrote (meters.rollup.plan_scan: a history ingested with `--as-of`, a
    day older than the lookback). The scan is recorded once every day it found is rebuilt.

    `on_progress(days_rebuilt, days_to_rebuild)` is called after each day (the total is
    None until the late days are known), e.g. with a meterline.output.progress tracker."""
    report = RollupReport(day)
    tick = on_progress or (lambda _done, _total: None)
    config = config or settings()
    with open_warehouse(config) as warehouse:
        # An interrupted ingest's rows must not be rolled up: remove them first (the days
        # they touched then differ from their recorded row counts and are rebuilt).
        report.rolled_back_ingests = [run.ingest_id for run in repair(warehouse)]
        catalog = meter_catalog(config)
        report.rebuilt.append(_result(rebuild_day(warehouse, catalog, day)))
        tick(1, None if late else 1)
        if late:
            plan = plan_scan(
                warehouse, up_to=day - timedelta(days=1), lookback_from=day - config.late_lookback
            )
            report.scanned = list(plan.ranges)
            earlier_days = scan_dirty_days(warehouse, plan, catalog)
            tick(1, 1 + len(earlier_days))
            for earlier in earlier_days:
                report.rebuilt.append(_result(rebuild_day(warehouse, catalog, earlier)))
                tick(len(report.rebuilt), 1 + len(earlier_days))
            record_scan(warehouse, plan, day=day, dirty=len(earlier_days))
    return report


def days_between(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def backfill(
    first: date,
    last: date,
    *,
    config: Settings | None = None,
    on_day: Callable[[RollupReport], None] | None = None,
) -> list[RollupReport]:
    """The nightly rollup for each day in order, exactly as the scheduled runs do it."""
    reports = []
    for day in days_between(first, last):
        report = rollup_day(day, config=config)
        reports.append(report)
        if on_day:
            on_day(report)
    return reports


def day_end(day: date) -> datetime:
    """The end of a UTC day (00:00 UTC the next day): its data interval's end."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def days_to_roll_up(
    *,
    conf_day: object = None,
    ingest_events: Sequence[Mapping[str, object]] = (),
    interval: tuple[datetime, datetime] | None = None,
) -> tuple[list[date], datetime]:
    """The UTC day(s) a usage_rollup run rolls up, in order, and its "as of" time (the
    end of the last one), from what triggered it: a day named in the run's conf
    (``{"day": "YYYY-MM-DD"}``); else the days the triggering usage_ingest events name
    (their extra's "day"; each once); else the data interval's first day (a backfill
    or a manual run of the daily timetable).

    Raises ValueError for a conf day that is not YYYY-MM-DD, or asset events that name
    no day (an event not published by usage_ingest)."""
    if conf_day is not None:
        try:
            days = [date.fromisoformat(str(conf_day))]
        except ValueError:
            raise ValueError(f"conf day {conf_day!r} is not a day YYYY-MM-DD") from None
    elif ingest_events:
        named = {str(extra["day"]) for extra in ingest_events if extra.get("day")}
        if not named:
            raise ValueError(
                "the triggering usage_events asset events name no day; trigger with conf"
                " {'day': 'YYYY-MM-DD'}"
            )
        days = sorted(date.fromisoformat(day) for day in named)
    elif interval is not None:
        days = [interval[0].astimezone(UTC).date()]
    else:
        raise ValueError("nothing names a day to roll up")
    return days, day_end(days[-1])
