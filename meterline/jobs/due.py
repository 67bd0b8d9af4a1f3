"""What a close as of a moment must bill: the subscription periods that are due.

Time is the `as_of` the caller passes (the rollup's data interval end), never now(): a
period is due once it ended, in its subscription's timezone, at least the grace period
(METERLINE_FINALIZE_GRACE_HOURS) before `as_of` (DESIGN.md invariant 7).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing.models import Customer, Invoice, Subscription
from billing.periods import Period, periods_ended_by
from meterline.jobs.watermarks import as_utc
from meterline.settings import Settings


@dataclass(frozen=True)
class Due:
    """One subscription period to rate: the subscription (its discounts loaded), its
    customer's external id, and the period [start, end) in UTC."""

    subscription: Subscription
    customer: str
    period: Period


@dataclass(frozen=True)
class DuePeriods:
    """`open`: due periods without a finalized invoice (to rate, post and finalize);
    `finalized`: finalized due periods, with the time of finalization, to check for late
    usage: those that ended within the late-usage lookback (Settings.late_lookback: the
    maximum event age plus 2 days) before `as_of`, or after `late_since` (the earliest
    event of the ingests since the previous close: a backfill of older history)."""

    open: list[Due]
    finalized: list[tuple[Due, datetime]]


def billable_periods(sub: Subscription, as_of: datetime, config: Settings) -> Iterator[Period]:
    """The subscription's periods a close as of `as_of` bills: ended at least the grace
    period before it, and ending after the metering go-live (METERLINE_BILLING_GO_LIVE,
    midnight UTC) when one is set."""
    grace = timedelta(hours=config.finalize_grace_hours)
    go_live = config.billing_go_live
    cutoff = datetime.combine(go_live, time(0), tzinfo=UTC) if go_live else None
    yield from periods_ended_by(sub, as_of - grace, ending_after=cutoff)


def due_periods(
    session: Session, as_of: datetime, config: Settings, *, late_since: datetime | None = None
) -> DuePeriods:
    """Every subscription's billable periods as of `as_of`, split by whether the period's
    live (not void) invoice is finalized. Finalized periods are kept (to check for late
    usage) when they ended after `as_of` less the late lookback, or after `late_since`."""
    finalized_at = _finalized(session)
    check_from = as_of - config.late_lookback
    if late_since is not None:
        check_from = min(check_from, late_since)
    out = DuePeriods([], [])
    subs = session.execute(
        select(Subscription, Customer.external_id)
        .join(Customer)
        .options(selectinload(Subscription.discounts))
    ).all()
    for sub, customer in subs:
        for period in billable_periods(sub, as_of, config):
            key = (sub.id, period.start)
            if key not in finalized_at:
                out.open.append(Due(sub, customer, period))
                continue
            done = finalized_at[key]
            if period.end >= check_from and done is not None:
                out.finalized.append((Due(sub, customer, period), done))
    return out


def _finalized(session: Session) -> dict[tuple[int, datetime], datetime | None]:
    """When the finalized invoice of each (subscription, period start) was finalized."""
    rows = session.execute(
        select(Invoice.subscription_id, Invoice.period_start, Invoice.finalized_at).where(
            Invoice.status == "finalized"
        )
    )
    return {(sid, as_utc(start)): as_utc(done) if done else None for sid, start, done in rows}
