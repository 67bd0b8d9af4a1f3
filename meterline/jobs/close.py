"""Closing billing periods, the billing_close DAG's task (`meterline close` by hand):

  due      the periods due as of a moment (due.py)
  held     the due periods with a day whose events changed since its rollup was built
           (never rolled up, or rolled up before its last ingest): not rated, posted,
           finalized or adjusted; reported with the days and the command to run
  rate     quantities + the ledger's price book -> rated lines (rate.py)
  post     the rated periods -> the ledger, under one rating run (post.py)
  late     finalized periods with late usage: re-rated, adjusted (late.py)
  finalize the drafts whose period ended the grace period ago (post.py), recording the
           credit grants' consumption; then end the term of the grants no open period can
           draw on: their rest expires, or rolls over to the next term's grant

Time is the `as_of` the caller passes (the rollup's data interval end), never now()
(DESIGN.md invariant 7). The ledger is one transaction: a close commits whole or not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    InstanceOf,
    PlainSerializer,
    computed_field,
    field_serializer,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.credits import expire_grants
from billing.credits.available import CreditBook
from billing.models import RatingRun
from billing.periods import Period, iso_utc
from billing.views import month_bounds
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.collector import collector_paused
from meterline.jobs.due import Due, due_periods
from meterline.jobs.late import periods_with_late_usage, post_late_adjustments
from meterline.jobs.post import (
    check_limits,
    finalize_periods,
    post_periods,
    record_run,
)
from meterline.jobs.rate import WarehouseQuantities, rate_periods, read_pricebook
from meterline.jobs.watermarks import (
    EPOCH,
    Watermark,
    rollup_watermark,
    run_watermarks,
)
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.crashpoints import crash_point
from meters.rollup import earliest_event_ingested_after
from meters.warehouse.base import Warehouse

__all__ = [
    "CloseReport",
    "NotBilled",
    "NotRolledUp",
    "close_periods",
    "iso_utc",  # billing.periods: how the report shows an instant
    "not_rolled_up_message",
    "period_due",
]

# An instant as the report shows it: UTC to the second ("2026-11-04T00:00:00Z").
UtcTime = Annotated[datetime, PlainSerializer(iso_utc, return_type=str)]


class NotBilled(BaseModel):
    """Periods of one subscription close could not bill (`what`: invoice), or whose late
    usage it could not adjust (`what`: adjustment), for one reason: they are left as
    they were (a draft stays open), the other subscriptions are billed."""

    model_config = ConfigDict(frozen=True)

    subscription: str
    customer: str
    what: Literal["invoice", "adjustment"]
    reason: str
    periods: tuple[tuple[UtcTime, UtcTime], ...]


def rollup_command(days: Sequence[date]) -> str:
    """The command that rebuilds `days` (sorted): `meterline rollup --day D` for one day,
    `meterline backfill --from FIRST --to LAST` for several."""
    if len(days) == 1:
        return f"meterline rollup --day {days[0].isoformat()}"
    return f"meterline backfill --from {days[0].isoformat()} --to {days[-1].isoformat()}"


class NotRolledUp(BaseModel):
    """A due period close did not bill (`what`: invoice; nothing posted, its draft if
    any left open) or whose late usage it did not adjust (`what`: adjustment), because
    the UTC `days` of it hold events their rollup has not read: never rolled up, or
    rolled up before their last ingest (meters.rollup.dirty_days). An invoice is never
    finalized from a rollup that misses days (DESIGN.md invariant 10). `command` rebuilds
    them; the next close then bills the period."""

    model_config = ConfigDict(frozen=True)

    subscription: str
    customer: str
    what: Literal["invoice", "adjustment"]
    period: tuple[UtcTime, UtcTime]
    days: tuple[date, ...]
    command: str


class CloseReport(BaseModel):
    """What a close did. `ok`: every due period was billed and every late usage adjusted
    (the command exits 1 otherwise). `not_rolled_up` holds the periods held back for
    days whose rollup is stale, `not_billed` those that cannot be billed.
    `invoices_finalized` holds the ids (JSON: their count); `watermark` is what the
    rating run saw of the warehouse (JSON: events_ingested_up_to and stale_days, UTC
    instants). Printed as JSON through meterline.output.json_text."""

    model_config = ConfigDict(frozen=True)

    as_of: AwareDatetime
    periods_closed: int
    lines_created: int
    lines_unchanged: int
    invoices_finalized: tuple[int, ...]
    periods_checked_for_late_usage: int
    adjustment_lines: int
    rating_run_id: int | None
    watermark: InstanceOf[Watermark] | None
    not_billed: tuple[NotBilled, ...]
    not_rolled_up: tuple[NotRolledUp, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.not_billed and not self.not_rolled_up

    @field_serializer("invoices_finalized")
    def _count(self, ids: tuple[int, ...]) -> int:
        return len(ids)

    @field_serializer("watermark")
    def _seen(self, mark: Watermark | None) -> dict[str, Any] | None:
        if mark is None:
            return None
        return {
            "events_ingested_up_to": iso_utc(mark.events),
            "stale_days": {day: iso_utc(up_to) for day, up_to in sorted(mark.stale.items())},
        }

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data, as `--json` prints it (the billing_close DAG's result)."""
        from meterline.output import jsonable

        doc: dict[str, Any] = jsonable(self)
        return doc


def close_periods(as_of: datetime, *, config: Settings | None = None) -> CloseReport:
    """Close every period that ended the grace period (METERLINE_FINALIZE_GRACE_HOURS)
    before `as_of`; then adjust finalized periods whose usage changed (events their
    rating run did not see): those that ended within the settings' late_lookback, and
    older ones holding events of the ingests since the previous close (_late_since).

    A period with a UTC day whose events changed since its rollup was built (or that was
    never rolled up) is neither rated, posted, finalized nor adjusted: it is reported in
    `not_rolled_up` with the days and the command that rebuilds them.

    A period that cannot be billed (its plan or currency has no price, a quantity or
    amount no rating or ledger column can take) is reported in `not_billed` with the
    reason and left unbilled (its draft, if any, stays open); every other period is
    billed. The caller decides what a non-empty `not_billed` means (the command exits 1).
    Raises ValueError for a naive `as_of`."""
    config = config or settings()
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    meters = meter_catalog(config)
    with (
        collector_paused(),
        ledger_session(config, write=True) as session,
        open_warehouse(config) as warehouse,
    ):
        report = _close(session, warehouse, meters, as_of, config)
    # Committed: a close killed here is closed; running it again changes nothing.
    crash_point("close.after_finalize")
    return report


def _close(
    session: Session, warehouse: Warehouse, meters: MeterCatalog, as_of: datetime, config: Settings
) -> CloseReport:
    due = due_periods(session, as_of, config, late_since=_late_since(session, warehouse))
    late = periods_with_late_usage(session, warehouse, due.finalized)
    seen, held = _rollup_readiness(warehouse, [*due.open, *late])
    to_bill = [d for d in due.open if d not in held]
    to_adjust = [d for d in late if d not in held]
    pricebook = read_pricebook(session, meters)
    rated = [*to_bill, *to_adjust]
    credits = CreditBook.read(session, {d.customer for d in rated})
    ratings = rate_periods(pricebook, rated, WarehouseQuantities(warehouse, meters), credits)
    billing = {d: ratings[d] for d in to_bill}
    check_limits(billing)
    run_id = None
    if seen is not None and ratings:
        run_id = record_run(
            session,
            at=as_of,
            periods=[d.period for d in ratings],
            ratings=ratings.values(),
            seen=seen,
            note="billing close",
        )
    posted = post_periods(session, billing, run_id)
    adjusted = post_late_adjustments(session, {d: ratings[d] for d in to_adjust}, run_id)
    # Posted but not committed: the close is one transaction, a kill here loses all of it.
    crash_point("close.after_post")
    open_periods = set(due.open)
    # A draft whose period waits for the rollup stays open, like one that failed.
    keep_open = [*posted.failed, *(d for d in held if d in open_periods)]
    grace = timedelta(hours=config.finalize_grace_hours)
    finalized = finalize_periods(session, as_of, grace, keep_open)
    # Breakage or rollover (docs/credits.md, "Expiry", "Rollover"): a grant expired by
    # `as_of - grace` can pay no period still open, since every period ending by then was
    # just finalized (and drew on it). Its rest expires, or moves to the next term's grant
    # (created as of this close), which pays the periods not finalized yet.
    expire_grants(session, as_of=as_of - grace, at=as_of)
    return CloseReport(
        as_of=as_of,
        periods_closed=len(to_bill) - len(posted.failed),
        lines_created=posted.result.created + posted.result.replaced,
        lines_unchanged=posted.result.unchanged,
        invoices_finalized=tuple(finalized),
        periods_checked_for_late_usage=len(to_adjust),
        adjustment_lines=adjusted.lines,
        rating_run_id=run_id,
        watermark=seen,
        not_billed=_not_billed(
            [(d, reason, False) for d, reason in posted.failed.items()]
            + [
                (d, f"its late usage cannot be adjusted: {reason}", True)
                for d, reason in adjusted.failed.items()
            ]
        ),
        not_rolled_up=_not_rolled_up(held, open_periods),
    )


def _rollup_readiness(
    warehouse: Warehouse, periods: Sequence[Due]
) -> tuple[Watermark | None, dict[Due, list[date]]]:
    """What this run sees of the rollup (None when no period is rated), and the periods
    holding days whose events changed since their rollup: those are neither posted nor
    finalized nor adjusted until the days are rolled up (an invoice is never finalized
    from a rollup that misses events). Read before the quantities: an event ingested
    meanwhile is then at worst called late, never called seen."""
    if not periods:
        return None, {}
    first = min(d.period.start for d in periods)
    last = max(d.period.end for d in periods)
    seen = rollup_watermark(warehouse, first.date(), last.date())
    stale = set(seen.stale)
    return seen, {d: days for d in periods if (days := _stale_days(d.period, stale))}


def _not_rolled_up(
    held: Mapping[Due, list[date]], open_periods: set[Due]
) -> tuple[NotRolledUp, ...]:
    """The held periods as the report lists them, by subscription then period."""
    return tuple(
        NotRolledUp(
            subscription=d.subscription.external_id,
            customer=d.customer,
            what="invoice" if d in open_periods else "adjustment",
            period=(d.period.start, d.period.end),
            days=tuple(days),
            command=rollup_command(days),
        )
        for d, days in sorted(
            held.items(), key=lambda kv: (kv[0].subscription.external_id, kv[0].period)
        )
    )


def not_rolled_up_message(report: Mapping[str, Any]) -> str | None:
    """One line for a close report's JSON (`CloseReport.to_json`, what the billing_close
    DAG's close task returns) whose `not_rolled_up` is not empty: how many periods wait
    for which days, and the commands to run; None when every period could be read."""
    held = report.get("not_rolled_up") or []
    if not held:
        return None
    commands = sorted({str(h["command"]) for h in held})
    days = sorted({str(d) for h in held for d in h["days"]})
    subs = len({h["subscription"] for h in held})
    return (
        f"{len(held)} period(s) of {subs} subscription(s) were not closed: days"
        f" {', '.join(days[:5])}{' ...' if len(days) > 5 else ''} hold events their rollup"
        f" has not read; run {'; '.join(f'`{c}`' for c in commands[:3])}"
        f"{' ...' if len(commands) > 3 else ''}, then close again"
    )


def _stale_days(period: Period, stale: set[date]) -> list[date]:
    """The UTC days of `period` [start, end) among `stale`, sorted."""
    first = period.start.astimezone(UTC).date()
    last = (period.end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return sorted(day for day in stale if first <= day <= last)


def _late_since(session: Session, warehouse: Warehouse) -> datetime | None:
    """The earliest event time of the ingests the previous billing close may not have
    seen (ingested after its watermark's earliest instant, less a day for an ingest
    still running when it read the warehouse): finalized periods ending after it are
    checked for late usage, however long ago they ended. None when no ingest since."""
    previous = session.scalar(
        select(RatingRun.id)
        .where(RatingRun.note == "billing close")
        .order_by(RatingRun.id.desc())
        .limit(1)
    )
    after = EPOCH
    if previous is not None:
        mark = run_watermarks(session, [previous])[previous]
        after = max(EPOCH, mark.earliest() - timedelta(days=1))
    return earliest_event_ingested_after(warehouse, after)


def _not_billed(failed: Iterable[tuple[Due, str, bool]]) -> tuple[NotBilled, ...]:
    """One entry per subscription, reason and kind (adjustment or not), periods sorted."""
    grouped: dict[tuple[str, str, str, bool], list[Period]] = defaultdict(list)
    for item, reason, adjustment in failed:
        key = (item.subscription.external_id, item.customer, reason, adjustment)
        grouped[key].append(item.period)
    return tuple(
        NotBilled(
            subscription=sub,
            customer=customer,
            what="adjustment" if adjustment else "invoice",
            reason=reason,
            periods=tuple((p.start, p.end) for p in sorted(periods)),
        )
        for (sub, customer, reason, adjustment), periods in sorted(grouped.items())
    )


# A period ends at local midnight; the last local midnight of a month is in the
# westernmost zone, UTC-12 (tz database: Etc/GMT+12), 12 hours after the UTC one.
LATEST_MIDNIGHT_AFTER_UTC = timedelta(hours=12)


def period_due(month: str, grace_hours: int) -> datetime:
    """The instant (UTC) by which every billing period that ends in `month` (YYYY-MM),
    in its subscription's timezone, has ended the grace period: `close --period`'s as-of.
    Found by the new-user trial: the month's UTC end + grace left an America/Los_Angeles
    customer's period unclosed, silently."""
    month_end = datetime.combine(month_bounds(month)[1], time(0), tzinfo=UTC)
    return month_end + LATEST_MIDNIGHT_AFTER_UTC + timedelta(hours=grace_hours)
