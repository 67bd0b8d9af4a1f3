"""What the support console (meterline/service/console.py) reads that no other job reads
yet: customers found by id or name, and a customer's usage so far day by day.

The day-by-day usage is the usage job's own (meterline.jobs.usage: usage_of) as of the
end of each day of the current period, on one ledger session and one warehouse
connection: each day's figures are the usage so far at that day's end, and what a day
added is the difference from the day before (for a gauge, the level moves rather than
adds up: the page shows the quantity so far, not a sum).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from billing.models import Customer
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.usage import CustomerUsage, usage_of
from meterline.settings import Settings, settings

__all__ = ["CustomerMatch", "DailyUsage", "UsageDay", "daily_usage", "search_customers"]

#: At most this many days are computed (a period longer than a month shows its last ones).
MAX_DAYS = 62


@dataclass(frozen=True)
class CustomerMatch:
    customer: str
    name: str
    currency: str


def search_customers(
    text: str, *, limit: int = 50, config: Settings | None = None
) -> list[CustomerMatch]:
    """Customers whose id is `text`, then those whose id or name contains it (any case),
    by id; at most `limit`. An empty text finds none."""
    wanted = text.strip()
    if not wanted:
        return []
    pattern = "%" + wanted.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern += "%"
    with ledger_session(config or settings()) as session:
        rows = session.execute(
            select(Customer.external_id, Customer.name, Customer.currency)
            .where(
                or_(
                    Customer.external_id == wanted,
                    func.lower(Customer.external_id).like(pattern, escape="\\"),
                    func.lower(Customer.name).like(pattern, escape="\\"),
                )
            )
            .order_by(Customer.external_id != wanted, Customer.external_id)
            .limit(limit)
        ).all()
    return [CustomerMatch(r[0], r[1], r[2]) for r in rows]


@dataclass(frozen=True)
class UsageDay:
    """One local day of a subscription's current period: the usage so far at its end
    (`as_of`: the day's end, or the instant asked for the day in progress)."""

    day: date
    as_of: datetime
    usage: CustomerUsage


@dataclass(frozen=True)
class DailyUsage:
    """The usage as of the instant asked, and as of the end of each day of the periods."""

    now: CustomerUsage
    days: list[UsageDay]


def daily_usage(customer: str, as_of: datetime, *, config: Settings | None = None) -> DailyUsage:
    """The customer's usage as of `as_of` (meterline.jobs.usage), and as of the end of each
    local day (the first current subscription's timezone) from its period's start to
    `as_of`. Raises UnknownCustomer (exit code 3), ValueError for a naive `as_of`."""
    config = config or settings()
    meters = meter_catalog(config)
    with ledger_session(config) as session, open_warehouse(config) as warehouse:
        now = usage_of(session, warehouse, meters, customer, as_of, config=config)
        current = [s for s in now.subscriptions if s.period_start is not None]
        if not current:
            return DailyUsage(now, [])
        zone = ZoneInfo(current[0].timezone)
        start = min(s.period_start for s in current if s.period_start is not None)
        first = start.astimezone(zone).date()
        last = as_of.astimezone(zone).date()
        days: list[UsageDay] = []
        day = max(first, last - timedelta(days=MAX_DAYS - 1))
        while day <= last:
            end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
            moment = min(end.astimezone(UTC), as_of.astimezone(UTC))
            usage = (
                now
                if moment == as_of.astimezone(UTC)
                else usage_of(session, warehouse, meters, customer, moment, config=config)
            )
            days.append(UsageDay(day, moment, usage))
            day += timedelta(days=1)
        return DailyUsage(now, days)
