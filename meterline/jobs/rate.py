"""The rate step: due periods + billable quantities + the price book -> rated lines.

Quantities come from the warehouse (`WarehouseQuantities`: the rollup, which close bills,
or the raw events, which the audit recomputes), all the windows of all the periods read
together; prices, discounts and minimums from the ledger's price book
(billing/pricebook.py); the arithmetic is rating's (rating/period.py). Each rated line
is also mapped to the ledger line it posts as (billing.charges.charge_line), so that a
line the ledger would refuse makes its period unratable here, before anything posts.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy.orm import Session

from billing.charges import ChargeLine, charge_line, line_key
from billing.credits.available import CreditBook
from billing.periods import Period, period_containing
from billing.pricebook import PeriodPrices, PriceBook
from meterline.jobs.due import Due
from meters.catalog import MeterCatalog
from meters.quantities import QuantityRow, WindowRequest, batch_quantities
from meters.warehouse.base import Warehouse
from rating import PriceSpec, RatedLine
from rating.period import QuantityKey, apply_credits
from rating.plan_change import rate_segments, segment_windows

# Errors that make one period unratable without saying anything about the others: a
# price body the rating engine refuses, a quantity it refuses (negative, not finite), a
# charge the ledger's rules refuse, decimal overflow.
RATING_ERRORS = (ValueError, ArithmeticError, KeyError)

Span = tuple[datetime, datetime]
# A quantity request's key: the window [start, end) and the billing cycle [start, end)
# a time-weighted quantity is normalized to.
WindowKey = tuple[datetime, datetime, datetime, datetime]


class QuantitySource(Protocol):
    """Where rating reads billable quantities, and the meters they are of."""

    @property
    def meters(self) -> MeterCatalog: ...

    def read(self, requests: Sequence[WindowRequest]) -> Sequence[Sequence[QuantityRow]]:
        """One list of rows per request, in the order given."""
        ...


@dataclass(frozen=True)
class WarehouseQuantities:
    """The warehouse's quantities: the rollup's (what close bills) or, with `raw`, those
    of `usage_events` itself (what the audit recomputes)."""

    warehouse: Warehouse
    meters: MeterCatalog
    raw: bool = False

    def read(self, requests: Sequence[WindowRequest]) -> list[list[QuantityRow]]:
        return batch_quantities(self.warehouse, self.meters, requests, raw=self.raw)


@dataclass
class PeriodRating:
    """One subscription period rated: its rated lines, the ledger lines they post as (by
    key in `charges`), and the quantities per window; or, `error`, why it cannot be rated
    (then it has no lines)."""

    due: Due
    cycle: Period
    specs: list[PriceSpec]
    rated: list[RatedLine] = field(default_factory=list)
    lines: list[ChargeLine] = field(default_factory=list)
    charges: dict[str, ChargeLine] = field(default_factory=dict)
    windows: dict[Span, list[QuantityRow]] = field(default_factory=dict)
    error: str | None = None
    prices: PeriodPrices | None = None  # its plan segments and minimum (plan changes)

    def whole(self) -> list[QuantityRow]:
        """The quantities of the whole period."""
        return self.windows.get((self.due.period.start, self.due.period.end), [])


def read_pricebook(
    session: Session, meters: MeterCatalog, *, subscription_ids: Iterable[int] | None = None
) -> PriceBook:
    """The ledger's price book, with the aggregation of each meter of `meters` (and the
    plan changes of `subscription_ids` only, when given: PriceBook.read)."""
    return PriceBook.read(
        session,
        {name: m.aggregation.value for name, m in meters.meters.items()},
        subscription_ids=subscription_ids,
    )


def rate_periods(
    pricebook: PriceBook,
    due: Sequence[Due],
    quantities: QuantitySource,
    credits: CreditBook | None = None,
    *,
    whole: bool = False,
) -> dict[Due, PeriodRating]:
    """Rate each due period: one read of every (window, billing cycle) the periods need,
    with the customers that need it, then rating per period. A period that cannot be
    rated (no price, a quantity or amount rating or the ledger refuses) gets its `error`
    and no lines; the others are rated. With `credits` (the customers' grants, read once
    per close), each period's usage is drawn down from the grants available to it, the
    periods of a customer in time order (billing/credits/available.py). With `whole`, the
    whole period's window is read too when plan changes split it into segments (their
    windows are what rating reads), so `PeriodRating.whole()` holds the period's
    quantities either way (the usage job's meters)."""
    read = read_periods(pricebook, due, quantities, whole=whole)
    return rate_read(pricebook, read, quantities.meters, credits)


@dataclass
class ReadPeriods:
    """rate_periods' first half: the due periods prepared (billing cycle, prices, the
    windows to read, or why they cannot be rated) and the quantity rows read for them,
    per window key and customer."""

    ratings: dict[Due, PeriodRating]
    found: dict[WindowKey, dict[str, list[QuantityRow]]]

    def of_customers(self, customers: Collection[str]) -> ReadPeriods:
        """The same read, for the periods of these customers only."""
        return ReadPeriods(
            {d: r for d, r in self.ratings.items() if d.customer in customers}, self.found
        )

    def quantities_by_customer(self) -> dict[str, list[tuple[object, ...]]]:
        """Per customer: every row read for it, whole (window key, meter, dimensions,
        the quantity's text, events), sorted. Equal for a customer in two reads: its
        periods rate the same from either, window rows included (the text, so that 5
        and 5.000 count as different)."""
        out: dict[str, list[tuple[object, ...]]] = defaultdict(list)
        for key, per_customer in self.found.items():
            for customer, rows in per_customer.items():
                out[customer] += [
                    (key, r.meter, tuple(sorted(r.dimensions.items())), str(r.quantity), r.events)
                    for r in rows
                ]
        return {customer: sorted(rows) for customer, rows in out.items()}


def read_periods(
    pricebook: PriceBook,
    due: Sequence[Due],
    quantities: QuantitySource,
    *,
    whole: bool = False,
) -> ReadPeriods:
    """Prepare the due periods and read every window they need (rate_periods)."""
    ratings = {item: _prepare(pricebook, item, whole) for item in due}
    return ReadPeriods(ratings, _read(quantities, ratings.values()))


def rate_read(
    pricebook: PriceBook,
    read: ReadPeriods,
    meters: MeterCatalog,
    credits: CreditBook | None = None,
) -> dict[Due, PeriodRating]:
    """Rate the periods of a read (rate_periods), a customer's periods in time order."""
    ratings = read.ratings
    rerated = frozenset((d.subscription.external_id, d.period.start) for d in ratings)
    for item in sorted(ratings, key=lambda d: (d.customer, d.period.start, d.period.end)):
        rating = ratings[item]
        if rating.error is None:
            _rate(pricebook, rating, read.found, meters, credits, rerated)
    return ratings


def _prepare(pricebook: PriceBook, item: Due, whole: bool = False) -> PeriodRating:
    """The period's billing cycle and prices, or why it has none to rate."""
    sub = item.subscription
    cycle = period_containing(sub.billing_anchor_day, sub.timezone, item.period.start)
    rating = PeriodRating(item, cycle, [])
    try:
        rating.prices = pricebook.period_prices(sub, item.period)
    except RATING_ERRORS as exc:
        rating.error = f"the prices of plan {sub.plan_id} ({sub.currency}) are unusable: {exc}"
        return rating
    rating.specs, rating.error = rating.prices.specs, rating.prices.gap
    if rating.error is None:
        needed = segment_windows(rating.prices.segments)
        if whole:
            needed.add((item.period.start, item.period.end))
        rating.windows = {window: [] for window in needed}
    return rating


def _read(
    quantities: QuantitySource, ratings: Iterable[PeriodRating]
) -> dict[WindowKey, dict[str, list[QuantityRow]]]:
    """The rows of every window the ratings need, per window key and customer."""
    customers: dict[WindowKey, set[str]] = defaultdict(set)
    for rating in ratings:
        if rating.error is None:
            for start, end in rating.windows:
                customers[(start, end, rating.cycle.start, rating.cycle.end)].add(
                    rating.due.customer
                )
    keys = sorted(customers)
    requests = [WindowRequest(k[0], k[1], frozenset(customers[k]), (k[2], k[3])) for k in keys]
    out: dict[WindowKey, dict[str, list[QuantityRow]]] = {}
    for key, rows in zip(keys, quantities.read(requests), strict=True):
        per_customer: dict[str, list[QuantityRow]] = defaultdict(list)
        for row in rows:
            per_customer[row.customer_id].append(row)
        out[key] = per_customer
    return out


def _rate(
    pricebook: PriceBook,
    rating: PeriodRating,
    found: Mapping[WindowKey, Mapping[str, list[QuantityRow]]],
    meters: MeterCatalog,
    credits: CreditBook | None = None,
    rerated: frozenset[tuple[str, datetime]] = frozenset(),
) -> None:
    """Rate one period from the rows read: its lines (with its credit lines), or its
    error."""
    item, cycle = rating.due, rating.cycle
    sub, period = item.subscription, item.period
    rating.windows = {
        (start, end): found[(start, end, cycle.start, cycle.end)].get(item.customer, [])
        for start, end in rating.windows
    }
    rows = [row for window in rating.windows.values() for row in window]
    rating.error = negative_counter(rows, meters)
    if rating.error is not None:
        return
    quantities: dict[Span, dict[QuantityKey, Decimal]] = {
        window: {(r.meter, tuple(sorted(r.dimensions.items()))): r.quantity for r in window_rows}
        for window, window_rows in rating.windows.items()
    }
    assert rating.prices is not None  # set by _prepare when it found no error
    try:
        rated = rate_segments(
            rating.prices.segments,
            quantities=quantities,
            discounts=pricebook.discounts(sub),
            minimum_commitment=rating.prices.minimum,
            cycle=(cycle.start, cycle.end),
        )
        if credits is not None:
            ref = (sub.external_id, period.start)
            grants = credits.grants_for(item.customer, ref, period.end, rerated)
            rated = apply_credits(
                rated, grants, period_end=period.end, subscription=sub.external_id
            )
        lines = [charge_line(r) for r in rated]
    except RATING_ERRORS as exc:
        rating.error = f"cannot be rated: {exc}"
        return
    if credits is not None:
        credits.take(
            (sub.external_id, period.start),
            [(r.grant_id, r.quantity) for r in rated if r.grant_id is not None],
        )
    rating.rated, rating.lines = rated, lines
    rating.charges = {line_key(sub.external_id, period, c): c for c in lines}


def negative_counter(rows: Iterable[QuantityRow], meters: MeterCatalog) -> str | None:
    """Why the quantities cannot be rated when a counter's (sum, count, unique_count) is
    negative, which only an overflow in the warehouse or corrupt data can give; None
    otherwise."""
    for row in rows:
        meter = meters.meters.get(row.meter)
        if meter is not None and meter.aggregation.is_counter and row.quantity < 0:
            return (
                f"the quantity of meter {row.meter} is {row.quantity}, negative, which a"
                f" {meter.aggregation.value} meter cannot be (a sum overflowed in the"
                " warehouse, or its data is corrupt)"
            )
    return None


def inputs_hash(lines: Iterable[ChargeLine]) -> str:
    """The rating run's fingerprint: the content hashes of the lines it rated."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.content_hash().encode())
    return digest.hexdigest()
