"""Closing billing periods: quantities from the warehouse, rating, posting, finalizing,
and adjustments for late usage. The billing_close DAG's tasks call these functions;
`meterline close` runs them by hand.

Time is the `as_of` the caller passes (the rollup's data interval end), never now():
a period closes once it ended, in its subscription's timezone, at least the grace
period before `as_of` (DESIGN.md invariant 7).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from billing import bulk, finalize_due
from billing.adjustments import post_adjustments
from billing.charges import ChargeLine, charge_line, line_key
from billing.db import create_ledger_engine, session_factory
from billing.errors import LedgerError
from billing.migrate import upgrade
from billing.models import (
    Customer,
    Invoice,
    InvoiceLine,
    Plan,
    PriceVersion,
    RatingRun,
    RatingRunStaleDay,
    Subscription,
)
from billing.periods import Period, iso_utc, local_midnight, period_containing, periods_ended_by
from billing.posting import (
    ChargeBatch,
    PostResult,
    check_batch,
    post_charges_bulk,
    record_rating_run,
)
from meterline.connections import meter_catalog, open_warehouse
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.quantities import QuantityRow, WindowRequest, batch_quantities
from meters.rollup import dirty_days
from meters.sql_files import query
from meters.warehouse.base import Warehouse
from rating import Discount, Money, RoundingMode, parse_price
from rating.money import ROUNDING
from rating.period import (
    PriceSpec,
    PriceVersionSpec,
    QuantityKey,
    rate_period,
    version_windows,
    windows_needed,
)

CODE_VERSION = "meterline-0.1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- what a rating run saw of the warehouse ---------------------------------------------


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

    def to_json(self) -> dict[str, Any]:
        return {
            "events_ingested_up_to": iso_utc(self.events),
            "stale_days": {d.isoformat(): iso_utc(m) for d, m in sorted(self.stale.items())},
        }


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


# --- the report -------------------------------------------------------------------------


@dataclass(frozen=True)
class NotBilled:
    """A subscription period close could not bill (or, `adjustment`, whose late usage it
    could not adjust), and why: it is left as it was, the others are billed."""

    subscription: str
    customer: str
    period: Period
    reason: str
    adjustment: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "subscription": self.subscription,
            "customer": self.customer,
            "period": [iso_utc(self.period.start), iso_utc(self.period.end)],
            "what": "adjustment" if self.adjustment else "invoice",
            "reason": self.reason,
        }


@dataclass
class CloseReport:
    as_of: datetime
    periods_closed: int = 0
    lines_created: int = 0
    lines_unchanged: int = 0
    invoices_finalized: list[int] = field(default_factory=list)
    periods_checked_for_late_usage: int = 0
    adjustment_lines: int = 0
    not_billed: list[NotBilled] = field(default_factory=list)
    watermark: Watermark | None = None
    rating_run_id: int | None = None

    @property
    def ok(self) -> bool:
        """Every due period was billed and every late usage adjusted."""
        return not self.not_billed

    def by_subscription(self) -> list[dict[str, Any]]:
        """The periods not billed, one entry per subscription and reason."""
        grouped: dict[tuple[str, str, str, bool], list[Period]] = defaultdict(list)
        for item in self.not_billed:
            grouped[(item.subscription, item.customer, item.reason, item.adjustment)].append(
                item.period
            )
        return [
            {
                "subscription": sub,
                "customer": customer,
                "what": "adjustment" if adjustment else "invoice",
                "reason": reason,
                "periods": [[iso_utc(p.start), iso_utc(p.end)] for p in sorted(periods)],
            }
            for (sub, customer, reason, adjustment), periods in sorted(grouped.items())
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "ok": self.ok,
            "periods_closed": self.periods_closed,
            "lines_created": self.lines_created,
            "lines_unchanged": self.lines_unchanged,
            "invoices_finalized": len(self.invoices_finalized),
            "periods_checked_for_late_usage": self.periods_checked_for_late_usage,
            "adjustment_lines": self.adjustment_lines,
            "rating_run_id": self.rating_run_id,
            "watermark": self.watermark.to_json() if self.watermark else None,
            "not_billed": self.by_subscription(),
        }


@dataclass(frozen=True)
class Due:
    subscription: Subscription
    customer: str
    period: Period


class Rater:
    """Prices, discounts and quantities for many periods, each looked up once."""

    def __init__(
        self, session: Session, warehouse: Warehouse, meters: MeterCatalog, rounding: RoundingMode
    ):
        self.session = session
        self.warehouse = warehouse
        self.meters = meters
        self.rounding = rounding
        self._specs: dict[tuple[str, str, str], list[PriceSpec]] = {}
        self._minimums = {p.id: p.minimum_commitment for p in session.scalars(select(Plan))}
        self._currencies: dict[str, set[str]] = defaultdict(set)
        for plan, currency in session.execute(
            select(PriceVersion.plan_id, PriceVersion.currency)
            .where(PriceVersion.is_current.is_(True))
            .distinct()
        ):
            self._currencies[plan].add(currency)

    def specs(self, plan: str, currency: str, tz: str) -> list[PriceSpec]:
        key = (plan, currency, tz)
        if key not in self._specs:
            rows = self.session.scalars(
                select(PriceVersion)
                .where(
                    PriceVersion.plan_id == plan,
                    PriceVersion.currency == currency,
                    PriceVersion.is_current.is_(True),
                )
                .order_by(PriceVersion.price_id, PriceVersion.effective_from)
            ).all()
            grouped: dict[str, list[PriceVersion]] = defaultdict(list)
            for row in rows:
                grouped[row.price_id].append(row)
            specs = []
            for price_id, versions in grouped.items():
                first = versions[0]
                aggregation = (
                    self.meters.get(first.meter).aggregation.value if first.meter else None
                )
                specs.append(
                    PriceSpec(
                        price_id=price_id,
                        meter=first.meter,
                        filter={str(k): str(v) for k, v in (first.filter or {}).items()},
                        versions=[
                            PriceVersionSpec(
                                v.version,
                                local_midnight(v.effective_from, tz),
                                parse_price(
                                    {**v.body, "currency": currency},
                                    name=f"{plan}/{price_id}@{v.version}",
                                ),
                            )
                            for v in versions
                        ],
                        aggregation=aggregation,
                    )
                )
            self._specs[key] = specs
        return self._specs[key]

    def price_gap(
        self, sub: Subscription, specs: Sequence[PriceSpec], period: Period
    ) -> str | None:
        """Why the subscription's period has no price to rate (None when it has one): an
        unknown plan, no price in its currency, or no price version in effect then.
        Invariant 10: such a period is an error, never a 0.00 invoice."""
        plan, currency = sub.plan_id, sub.currency
        if plan not in self._minimums and plan not in self._currencies:
            known = ", ".join(sorted(set(self._minimums) | set(self._currencies))) or "none"
            return f"plan {plan!r} is not in the catalog (its plans: {known})"
        if not specs:
            priced = ", ".join(sorted(self._currencies.get(plan, ()))) or "no currency"
            return f"plan {plan} has no price in {currency} (it is priced in {priced})"
        if not any(version_windows(s, period.start, period.end) for s in specs):
            first = min(v.starts for s in specs for v in s.versions)
            return (
                f"no price of plan {plan} ({currency}) is in effect in the period (the"
                f" earliest takes effect {iso_utc(first)})"
            )
        return None

    def minimum(self, plan: str, currency: str) -> Money | None:
        amount = (self._minimums.get(plan) or {}).get(currency)
        return Money(Decimal(amount), currency) if amount else None

    @staticmethod
    def discount(sub: Subscription, row: Any) -> Discount:
        return Discount(
            price_id=row.price_id,
            percent_off=row.percent_off,
            amount_off=row.amount_off,
            currency=sub.currency if row.amount_off is not None else None,
            valid_from=local_midnight(row.valid_from, sub.timezone),
            valid_to=local_midnight(row.valid_to, sub.timezone) if row.valid_to else None,
        )


@dataclass
class PeriodRating:
    """One subscription period re-rated: its lines by key and the quantities per window;
    or, `error`, why it cannot be rated (then it has no lines)."""

    due: Due
    cycle: Period
    specs: list[PriceSpec]
    lines: list[ChargeLine]
    charges: dict[str, ChargeLine]
    windows: dict[tuple[datetime, datetime], list[QuantityRow]]
    error: str | None = None

    def whole(self) -> list[QuantityRow]:
        return self.windows.get((self.due.period.start, self.due.period.end), [])


# Errors that make one period unratable without saying anything about the others: a
# price body the rating engine refuses, a quantity it refuses (negative, not finite), a
# charge the ledger's rules refuse, decimal overflow.
RATING_ERRORS = (ValueError, ArithmeticError, KeyError)


def _negative_counter(rows: Iterable[QuantityRow], meters: MeterCatalog) -> str | None:
    for row in rows:
        meter = meters.meters.get(row.meter)
        if meter is not None and meter.aggregation.is_counter and row.quantity < 0:
            return (
                f"the quantity of meter {row.meter} is {row.quantity}, negative, which a"
                f" {meter.aggregation.value} meter cannot be (a sum overflowed in the"
                " warehouse, or its data is corrupt)"
            )
    return None


def rate_periods(rater: Rater, due: Sequence[Due], *, raw: bool = False) -> dict[Due, PeriodRating]:
    """Rate each due period. Quantities come from the rollup (what close bills) or, with
    `raw`, from the raw events (what the audit recomputes); all the windows of all the
    periods are read together (`batch_quantities`), one request per distinct (window,
    billing cycle) with the customers that need it. A period that cannot be rated (no
    price, a rating error) gets its `error` and no lines; the others are rated."""
    by_window: dict[tuple[datetime, datetime, datetime, datetime], set[str]] = defaultdict(set)
    needs: dict[Due, set[tuple[datetime, datetime]]] = {}
    cycles: dict[Due, Period] = {}
    specs_of: dict[Due, list[PriceSpec]] = {}
    errors: dict[Due, str] = {}
    for item in due:
        sub = item.subscription
        cycles[item] = period_containing(sub.billing_anchor_day, sub.timezone, item.period.start)
        try:
            specs = rater.specs(sub.plan_id, sub.currency, sub.timezone)
        except RATING_ERRORS as exc:
            specs_of[item] = []
            errors[item] = f"the prices of plan {sub.plan_id} ({sub.currency}) are unusable: {exc}"
            continue
        specs_of[item] = specs
        gap = rater.price_gap(sub, specs, item.period)
        if gap is not None:
            errors[item] = gap
            continue
        needs[item] = windows_needed(specs, item.period.start, item.period.end)
        for start, end in needs[item]:
            by_window[(start, end, cycles[item].start, cycles[item].end)].add(item.customer)
    keys = sorted(by_window)  # (window start, window end, cycle start, cycle end)
    requests = [
        WindowRequest(k[0], k[1], frozenset(by_window[k]), normalize_to=(k[2], k[3])) for k in keys
    ]
    fetched: dict[tuple[datetime, datetime, datetime, datetime], dict[str, list[QuantityRow]]] = {}
    for key, found in zip(
        keys, batch_quantities(rater.warehouse, rater.meters, requests, raw=raw), strict=True
    ):
        per_customer: dict[str, list[QuantityRow]] = defaultdict(list)
        for row in found:
            per_customer[row.customer_id].append(row)
        fetched[key] = per_customer
    out: dict[Due, PeriodRating] = {}
    for item in due:
        sub, cycle, specs = item.subscription, cycles[item], specs_of[item]
        if item in errors:
            out[item] = PeriodRating(item, cycle, specs, [], {}, {}, errors[item])
            continue
        rows = {
            (start, end): fetched[(start, end, cycle.start, cycle.end)].get(item.customer, [])
            for start, end in needs[item]
        }
        window_quantities: dict[tuple[datetime, datetime], dict[QuantityKey, Decimal]] = {
            window: {(r.meter, tuple(sorted(r.dimensions.items()))): r.quantity for r in found}
            for window, found in rows.items()
        }
        error = _negative_counter((r for found in rows.values() for r in found), rater.meters)
        lines: list[ChargeLine] = []
        if error is None:
            try:
                rated = rate_period(
                    specs,
                    start=item.period.start,
                    end=item.period.end,
                    quantities=window_quantities,
                    discounts=[rater.discount(sub, d) for d in sub.discounts],
                    minimum_commitment=rater.minimum(sub.plan_id, sub.currency),
                    rounding=rater.rounding,
                )
                lines = [charge_line(r) for r in rated]
            except RATING_ERRORS as exc:
                error = f"cannot be rated: {exc}"
        out[item] = PeriodRating(
            due=item,
            cycle=cycle,
            specs=specs,
            lines=lines,
            charges={line_key(sub.external_id, item.period, c): c for c in lines},
            windows=rows,
            error=error,
        )
    return out


def inputs_hash(lines: Iterable[ChargeLine]) -> str:
    """The rating run's fingerprint: the content hashes of the lines it rated."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.content_hash().encode())
    return digest.hexdigest()


def _status(session: Session) -> dict[tuple[int, datetime], tuple[int, str, datetime | None]]:
    rows = session.execute(
        select(
            Invoice.subscription_id,
            Invoice.period_start,
            Invoice.id,
            Invoice.status,
            Invoice.finalized_at,
        ).where(Invoice.status != "void")
    )
    return {
        (sid, as_utc(start)): (invoice_id, status, as_utc(done) if done else None)
        for sid, start, invoice_id, status, done in rows
    }


def as_utc(value: datetime) -> datetime:
    """A ledger timestamp in UTC (SQLite returns them naive, in UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def billable_periods(sub: Subscription, as_of: datetime, config: Settings) -> Iterator[Period]:
    """The subscription's periods a close as of `as_of` bills: ended at least the grace
    period before it, and ending after the metering go-live (METERLINE_BILLING_GO_LIVE,
    midnight UTC) when one is set."""
    grace = timedelta(hours=config.finalize_grace_hours)
    go_live = config.billing_go_live
    cutoff = datetime.combine(go_live, time(0), tzinfo=UTC) if go_live else None
    for period in periods_ended_by(sub, as_of - grace):
        if cutoff is None or period.end > cutoff:
            yield period


def close_periods(
    as_of: datetime,
    *,
    config: Settings | None = None,
) -> CloseReport:
    """Close every period that ended the grace period (METERLINE_FINALIZE_GRACE_HOURS)
    before `as_of`; then adjust recent finalized periods whose usage changed (events
    their rating run did not see, within the settings' late_lookback).

    A period that cannot be billed (its plan or currency has no price, a quantity or
    amount no rating or ledger column can take) is reported in `not_billed` with the
    reason and left unbilled (its draft, if any, stays open); every other period is
    billed. The caller decides what a non-empty `not_billed` means (the command exits 1).
    """
    config = config or settings()
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    report = CloseReport(as_of)
    grace = timedelta(hours=config.finalize_grace_hours)
    upgrade(config.ledger_url)
    engine = create_ledger_engine(config.ledger_url)
    make_session = session_factory(engine)
    meters = meter_catalog(config)
    lookback = config.late_lookback
    try:
        with make_session.begin() as session, open_warehouse(config) as warehouse:
            rater = Rater(session, warehouse, meters, ROUNDING)
            status = _status(session)
            due: list[Due] = []
            finalized: list[tuple[Due, datetime]] = []
            subs = session.execute(
                select(Subscription, Customer.external_id)
                .join(Customer)
                .options(selectinload(Subscription.discounts))
            ).all()
            for sub, customer in subs:
                for period in billable_periods(sub, as_of, config):
                    _, state, finalized_at = status.get((sub.id, period.start), (0, "", None))
                    if state != "finalized":
                        due.append(Due(sub, customer, period))
                    elif period.end >= as_of - lookback and finalized_at is not None:
                        finalized.append((Due(sub, customer, period), finalized_at))
            recent_finalized = _with_late_usage(session, warehouse, finalized)
            rated = [d.period for d in (*due, *recent_finalized)]
            if rated:
                report.watermark = rollup_watermark(
                    warehouse,
                    min(p.start for p in rated).date(),
                    max(p.end for p in rated).date(),
                )
            ratings = rate_periods(rater, due)
            adjusting = rate_periods(rater, recent_finalized)
            failed: dict[Due, str] = {}
            for item, rating in ratings.items():
                if rating.error is None:
                    try:
                        check_batch(_batch(item, rating.lines))
                    except LedgerError as exc:
                        rating.error = str(exc)
                if rating.error is not None:
                    failed[item] = rating.error
            if rated and report.watermark is not None:
                good = [r for r in (*ratings.values(), *adjusting.values()) if r.error is None]
                report.rating_run_id = record_rating_run(
                    session,
                    period_start=min(p.start for p in rated),
                    period_end=max(p.end for p in rated),
                    run_at=as_of,
                    code_version=CODE_VERSION,
                    inputs_hash=inputs_hash(line for r in good for line in r.lines),
                    note="billing close",
                    events_watermark=report.watermark.events,
                    stale_days=report.watermark.stale,
                )
            billable = [(d, ratings[d].lines) for d in due if d not in failed]
            posted, refused = _post_isolated(session, billable, report.rating_run_id)
            failed.update(refused)
            report.periods_closed = len(due) - len(failed)
            report.lines_created = posted.created + posted.replaced
            report.lines_unchanged = posted.unchanged
            report.not_billed = [
                NotBilled(d.subscription.external_id, d.customer, d.period, failed[d])
                for d in due
                if d in failed
            ]

            # Late usage of finalized periods: re-rate; the difference becomes adjustment
            # lines on the next open invoice (a no-op when nothing changed).
            report.periods_checked_for_late_usage = len(recent_finalized)
            for item, rating in adjusting.items():
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
                                rating_run_id=report.rating_run_id,
                            )
                        report.adjustment_lines += result.created + result.replaced
                    except LedgerError as exc:
                        reason = str(exc)
                if reason is not None:
                    report.not_billed.append(
                        NotBilled(
                            item.subscription.external_id,
                            item.customer,
                            item.period,
                            f"its late usage cannot be adjusted: {reason}",
                            adjustment=True,
                        )
                    )
            # Every draft whose period ended the grace period ago is final now: the
            # periods just rated, and the drafts carrying corrections (also those of a
            # subscription that has ended, which has no period of its own left); but not
            # the draft of a period that could not be rated.
            unrated = [(d.subscription.id, d.period.start) for d in due if d in failed]
            keep_open = {
                inv.id for inv in bulk.live_invoices(session, unrated, lock=False).values()
            }
            report.invoices_finalized = finalize_due(
                session, as_of=as_of, grace=grace, keep_open=keep_open
            )
    finally:
        engine.dispose()
    return report


def _batch(item: Due, lines: Sequence[ChargeLine]) -> ChargeBatch:
    return ChargeBatch(item.subscription.external_id, item.period, lines)


def _post_isolated(
    session: Session, items: list[tuple[Due, list[ChargeLine]]], rating_run_id: int | None
) -> tuple[PostResult, dict[Due, str]]:
    """Post every period's lines in one bulk call; when the ledger refuses some period
    (a LedgerError), post the halves apart, each in a savepoint, down to the periods that
    fail, which are returned with the reason: one period never stops the others."""
    result = PostResult()
    failed: dict[Due, str] = {}

    def attempt(part: list[tuple[Due, list[ChargeLine]]]) -> None:
        try:
            with session.begin_nested():
                posted = post_charges_bulk(
                    session,
                    [_batch(d, lines) for d, lines in part],
                    rerate=True,
                    rating_run_id=rating_run_id,
                )
        except LedgerError as exc:
            if len(part) == 1:
                failed[part[0][0]] = f"cannot be posted: {exc}"
                return
            middle = len(part) // 2
            attempt(part[:middle])
            attempt(part[middle:])
            return
        result.merge(posted)

    if items:
        attempt(items)
    return result, failed


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


def _with_late_usage(
    session: Session, warehouse: Warehouse, finalized: list[tuple[Due, datetime]]
) -> list[Due]:
    """The finalized periods with events that the latest run rating them did not see
    (an invoice without a recorded run: events ingested after its finalization)."""
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
