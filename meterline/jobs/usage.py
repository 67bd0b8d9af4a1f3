"""A customer's usage so far in its current billing periods: what `meterline usage` and the
HTTP service's usage endpoint run (docs/usage-preview.md). The preview of the invoice
each period would end with (meterline/jobs/preview.py) shares what is here.

Rated by close's own code path: the ledger's price book (meterline.jobs.rate:
read_pricebook), `rate_periods` (plan segments, price versions, tiers, proration,
discounts; rating/period.py), over live quantities (meters.quantities.LiveCut): the
rollup where it holds every event of the customer's day, and for the UTC days it does not
hold yet (never rolled up, or events ingested since the day's build) and the day in
progress, the hourly rows the rollup's own build queries make of the raw events, merged
by the same window and gauge queries close reads. One set of aggregation rules.

Rules:
- The current period as of T is the subscription's period T falls in or ends at
  (start < T <= end): as of a period's end, usage is that whole period. A subscription
  whose first period starts at or after T has none yet (`not_started`); one that ended
  before T has none any more (`ended`); both are listed, with no prices.
- Usage as of T counts the events timestamped before T that were ingested up to the
  latest committed ingest (`computed_through` is the earlier of the two: the instant the
  numbers are complete up to, as far as ingests tell).
- Each price is rated as if the period ended at the end of T's UTC hour (the rollup's
  grain; a time-weighted gauge holds its level to it): usage prices on the quantity so
  far (tiers as close would apply them to it), fixed fees prorated to the time elapsed.
  Discounts, credits and the minimum commitment apply to the whole period: the preview
  shows them.
- Only the customer's rows are read: its subscriptions, its events by the warehouse's
  sort keys (meter, customer_id, time), the rollup state of the days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing.errors import NotFound
from billing.models import Customer, Subscription
from billing.money import from_minor
from billing.periods import Period, local_midnight, subscription_period_containing
from billing.plan_changes import changes_of, plan_at
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.due import Due
from meterline.jobs.rate import PeriodRating, rate_periods, read_pricebook
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.quantities import (
    LiveCut,
    QuantityRow,
    WindowRequest,
    batch_quantities,
    ingest_watermark,
    live_cut,
)
from meters.warehouse.base import Warehouse

__all__ = [
    "CustomerUsage",
    "LiveQuantities",
    "MeterUsage",
    "PriceUsage",
    "SegmentUsage",
    "Standing",
    "SubscriptionUsage",
    "UnknownCustomer",
    "customer_usage",
    "standing_of",
    "usage_of",
]

Status = Literal["current", "not_started", "ended"]
HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# An instant just before another: datetimes are whole microseconds.
_TICK = timedelta(microseconds=1)


class UnknownCustomer(NotFound):
    """A customer id the ledger does not hold (the command line's exit code 3)."""


@dataclass(frozen=True)
class LiveQuantities:
    """Close's QuantitySource (meterline.jobs.rate) over a live cut of the warehouse: the
    rollup where complete, the rollup's own rows of the raw events elsewhere, up to
    `cut.until`."""

    warehouse: Warehouse
    meters: MeterCatalog
    cut: LiveCut

    def read(self, requests: Sequence[WindowRequest]) -> list[list[QuantityRow]]:
        return batch_quantities(self.warehouse, self.meters, requests, live=self.cut)


@dataclass(frozen=True)
class Standing:
    """Where one subscription stands as of an instant: its current period (`current`:
    start < as_of <= end, clipped to the subscription's own start and end), or why it has
    none (`not_started`, with `starts_at`; `ended`, with `ended_at`); and the plan in
    effect then (its first plan before it starts, its last after it ends)."""

    subscription: Subscription
    customer: str
    status: Status
    plan: str
    period: Period | None = None
    starts_at: datetime | None = None
    ended_at: datetime | None = None


def standing_of(sub: Subscription, customer: str, plan: str, as_of: datetime) -> Standing:
    """The subscription's standing as of `as_of` (Standing)."""
    starts = local_midnight(sub.start_date, sub.timezone)
    ends = local_midnight(sub.end_date, sub.timezone) if sub.end_date is not None else None
    if as_of <= starts:
        return Standing(sub, customer, "not_started", plan, starts_at=starts)
    if ends is not None and as_of > ends:
        return Standing(sub, customer, "ended", plan, ended_at=ends)
    period = subscription_period_containing(sub, as_of - _TICK)
    assert period is not None  # starts < as_of <= ends
    return Standing(sub, customer, "current", plan, period=period)


@dataclass(frozen=True)
class CustomerRows:
    """What the ledger holds of one customer for its usage: its external id and its
    subscriptions (discounts loaded), each with its standing as of the instant asked."""

    customer: str
    standings: list[Standing]

    @property
    def subscription_ids(self) -> list[int]:
        return [s.subscription.id for s in self.standings]


def read_customer(session: Session, customer: str, as_of: datetime) -> CustomerRows:
    """The customer's subscriptions and where each stands as of `as_of`, in subscription
    order. UnknownCustomer for an id the ledger does not hold."""
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    as_of = as_of.astimezone(UTC)
    row = session.scalar(select(Customer.id).where(Customer.external_id == customer))
    if row is None:
        raise UnknownCustomer(
            f"no customer {customer!r} in the ledger: `meterline customers load` creates them"
        )
    subs = session.scalars(
        select(Subscription)
        .where(Subscription.customer_id == row)
        .options(selectinload(Subscription.discounts))
        .order_by(Subscription.external_id)
    ).all()
    changes = changes_of(session, [s.id for s in subs])
    return CustomerRows(
        customer,
        [
            standing_of(s, customer, plan_at(s.plan_id, changes.get(s.id, ()), as_of), as_of)
            for s in subs
        ],
    )


def read_cut(
    warehouse: Warehouse,
    meters: MeterCatalog,
    customer: str,
    periods: Iterable[Period],
    as_of: datetime,
    config: Settings,
) -> LiveCut:
    """The live cut of the customer's quantities for `periods` as of `as_of`: the days to
    read raw from the first period's start, and for gauges from the late-event lookback
    before it (a level is carried into a period from however long ago; older days are
    as close sees them). No period: only the latest ingest is read (nothing is rated)."""
    starts = [p.start for p in periods]
    if not starts:
        mark = ingest_watermark(warehouse)
        return LiveCut(as_of, mark if mark is not None else EPOCH)
    since = min(starts)
    return live_cut(
        warehouse,
        meters,
        [customer],
        since=since,
        until=as_of,
        gauges_since=since - config.late_lookback,
    )


def computed_through(cut: LiveCut, as_of: datetime) -> datetime | None:
    """The instant the numbers are complete up to: the earlier of `as_of` and the latest
    committed ingest; None when nothing was ever ingested."""
    if cut.watermark <= EPOCH:
        return None
    return min(as_of, cut.watermark)


# --- the result ---------------------------------------------------------------------------


class MeterUsage(BaseModel):
    """A meter's billable quantity so far in one of its dimension groups (as close reads
    it: a sum, count, maximum, distinct count, latest level, or a time-weighted level
    divided by the billing cycle), and the events behind it."""

    model_config = ConfigDict(frozen=True)

    meter: str
    dimensions: dict[str, str]
    quantity: Decimal
    events: int


class SegmentUsage(BaseModel):
    """The part [start, end) of the rated window in which one plan was in effect (a plan
    change splits a period into such segments; a period without one is one segment), and
    the meters' quantities in that part, read as `meters` reads the whole window."""

    model_config = ConfigDict(frozen=True)

    plan: str
    start: datetime
    end: datetime
    meters: tuple[MeterUsage, ...] = ()


class PriceUsage(BaseModel):
    """One price of the plan rated on the usage so far: its quantity, amount (major units,
    rounded once to the currency's minor unit) and amount in minor units, and how it was
    reached (`description`, rating's own words)."""

    model_config = ConfigDict(frozen=True)

    price_id: str
    price_version: str
    kind: Literal["usage", "flat"]
    group: str | None
    meter: str | None
    quantity: Decimal
    unit_amount: Decimal | None
    amount: Decimal
    amount_minor: int
    currency: str
    description: str


class SubscriptionUsage(BaseModel):
    """One subscription's usage as of the instant asked: its current period, rated over
    [period_start, usage_end) (the end of the instant's UTC hour, at most the period's
    end); or its status and no prices when it has no current period. `error`: why the
    period cannot be rated (no price for its plan or currency, ...), as close says it.

    `meters`: the quantities of the whole window, also when a plan change splits it
    (read over the window as one, so a sum or count is the segments' sum, a maximum their
    maximum, a distinct count counts each value once); `segments`: each plan's part of the
    window with its own quantities, in time order (one when no change falls inside);
    `prices`: one line per price as close posts it, a price both plans have rated part by
    part (its description names each plan's part)."""

    model_config = ConfigDict(frozen=True)

    subscription: str
    plan: str
    currency: str
    timezone: str
    status: Status
    period_start: datetime | None = None
    period_end: datetime | None = None
    usage_end: datetime | None = None
    starts_at: datetime | None = None
    ended_at: datetime | None = None
    meters: tuple[MeterUsage, ...] = ()
    segments: tuple[SegmentUsage, ...] = ()
    prices: tuple[PriceUsage, ...] = ()
    amount: Decimal = Decimal(0)
    amount_minor: int = 0
    error: str | None = None


class CustomerUsage(BaseModel):
    """A customer's usage as of `as_of` (every event timestamped before it and ingested up
    to the latest committed ingest): `computed_through` the earlier of the two (None: no
    ingest yet); `rolled_up_through` the instant before which every day was read from the
    rollup; `raw_days` the UTC days read from the raw events instead (not rolled up yet,
    with events ingested since their build, or the day of `as_of`). Printed as JSON
    through meterline.output.json_text."""

    model_config = ConfigDict(frozen=True)

    customer: str
    as_of: datetime
    computed_through: datetime | None
    rolled_up_through: datetime
    raw_days: tuple[date, ...]
    subscriptions: tuple[SubscriptionUsage, ...]

    @property
    def ok(self) -> bool:
        """Whether every current period could be rated."""
        return all(s.error is None for s in self.subscriptions)


# --- the job ------------------------------------------------------------------------------


def customer_usage(
    customer: str, as_of: datetime, *, config: Settings | None = None
) -> CustomerUsage:
    """The customer's usage as of `as_of` (module docstring), opening the ledger (read
    only) and the warehouse. Raises UnknownCustomer (exit code 3), ValueError for a naive
    `as_of`."""
    config = config or settings()
    meters = meter_catalog(config)
    with ledger_session(config) as session, open_warehouse(config) as warehouse:
        return usage_of(session, warehouse, meters, customer, as_of, config=config)


def usage_end(period: Period, as_of: datetime) -> datetime:
    """The end of the window usage as of `as_of` rates: the end of `as_of`'s UTC hour,
    at most the period's end (periods start and end on whole UTC hours)."""
    utc = as_of.astimezone(UTC)
    floor = utc.replace(minute=0, second=0, microsecond=0)
    end = floor if floor == utc else floor + HOUR
    return min(end, period.end)


def usage_of(
    session: Session,
    warehouse: Warehouse,
    meters: MeterCatalog,
    customer: str,
    as_of: datetime,
    *,
    config: Settings | None = None,
) -> CustomerUsage:
    """The customer's usage as of `as_of`, on an open ledger session and warehouse (the
    HTTP service keeps them open; `meters`: the loaded catalog's, meter_catalog). Reads
    only the customer's rows. Raises UnknownCustomer, ValueError for a naive `as_of`."""
    config = config or settings()
    rows = read_customer(session, customer, as_of)
    as_of = as_of.astimezone(UTC)
    current = [s for s in rows.standings if s.period is not None]
    due = {
        s.subscription.id: Due(
            s.subscription, customer, Period(s.period.start, usage_end(s.period, as_of))
        )
        for s in current
        if s.period is not None
    }
    cut = read_cut(warehouse, meters, customer, [d.period for d in due.values()], as_of, config)
    ratings: dict[Due, PeriodRating] = {}
    if due:
        pricebook = read_pricebook(session, meters, subscription_ids=rows.subscription_ids)
        ratings = rate_periods(
            pricebook, list(due.values()), LiveQuantities(warehouse, meters, cut), whole=True
        )
    return CustomerUsage(
        customer=customer,
        as_of=as_of,
        computed_through=computed_through(cut, as_of),
        rolled_up_through=cut.rolled_up_through,
        raw_days=cut.raw_days,
        subscriptions=tuple(
            _subscription_usage(s, ratings.get(due[s.subscription.id]) if s.period else None)
            for s in rows.standings
        ),
    )


def _meters(rows: Iterable[QuantityRow]) -> tuple[MeterUsage, ...]:
    return tuple(
        MeterUsage(meter=r.meter, dimensions=r.dimensions, quantity=r.quantity, events=r.events)
        for r in rows
    )


def _subscription_usage(standing: Standing, rating: PeriodRating | None) -> SubscriptionUsage:
    sub = standing.subscription
    head = SubscriptionUsage(
        subscription=sub.external_id,
        plan=standing.plan,
        currency=sub.currency,
        timezone=sub.timezone,
        status=standing.status,
        starts_at=standing.starts_at,
        ended_at=standing.ended_at,
    )
    if rating is None or standing.period is None:
        return head
    meters = _meters(rating.whole())
    segments = tuple(
        SegmentUsage(
            plan=seg.plan,
            start=seg.start,
            end=seg.end,
            meters=_meters(rating.windows.get((seg.start, seg.end), [])),
        )
        for seg in (rating.prices.segments if rating.prices is not None else ())
    )
    prices = tuple(
        PriceUsage(
            price_id=line.price_id,
            price_version=line.price_version,
            kind="usage" if line.kind == "usage" else "flat",
            group=line.group,
            meter=line.meter,
            quantity=line.quantity,
            unit_amount=line.unit_amount,
            amount=line.amount,
            amount_minor=line.amount_minor,
            currency=line.currency,
            description=line.description,
        )
        for line in rating.lines
        if line.kind in ("usage", "flat")
    )
    minor = sum(p.amount_minor for p in prices)
    return head.model_copy(
        update={
            "period_start": standing.period.start,
            "period_end": standing.period.end,
            "usage_end": rating.due.period.end,
            "meters": meters,
            "segments": segments,
            "prices": prices,
            "amount": from_minor(minor, sub.currency),
            "amount_minor": minor,
            "error": rating.error,
        }
    )
