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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing import finalize_due
from billing.adjustments import post_adjustments
from billing.catalog import load_catalog
from billing.charges import ChargeLine, line_key
from billing.db import create_ledger_engine, session_factory
from billing.migrate import upgrade
from billing.models import Customer, Invoice, Plan, PriceVersion, Subscription
from billing.periods import Period, local_midnight, period_containing, periods_ended_by
from billing.posting import ChargeBatch, post_charges_bulk, record_rating_run
from meterline.app import meter_catalog, open_warehouse
from meterline.period_charges import (
    PriceSpec,
    PriceVersionSpec,
    QuantityKey,
    rate_period,
    windows_needed,
)
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.quantities import QuantityRow, WindowRequest, batch_quantities
from meters.sql_files import query
from meters.warehouse import Warehouse
from rating import Discount, Money, RoundingMode, parse_price

CODE_VERSION = "meterline-0.1"
# Charges are rounded half-up (the catalog's default; its rounding_mode key is not read
# yet). The audit rates with this same mode.
ROUNDING = RoundingMode.HALF_UP


@dataclass
class CloseReport:
    as_of: datetime
    periods_closed: int = 0
    lines_created: int = 0
    lines_unchanged: int = 0
    invoices_finalized: list[int] = field(default_factory=list)
    periods_checked_for_late_usage: int = 0
    adjustment_lines: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "periods_closed": self.periods_closed,
            "lines_created": self.lines_created,
            "lines_unchanged": self.lines_unchanged,
            "invoices_finalized": len(self.invoices_finalized),
            "periods_checked_for_late_usage": self.periods_checked_for_late_usage,
            "adjustment_lines": self.adjustment_lines,
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

    def minimum(self, plan: str, currency: str) -> Money | None:
        amount = (self._minimums.get(plan) or {}).get(currency)
        return Money(Decimal(amount), currency) if amount else None

    def rate(self, due: Sequence[Due]) -> dict[Due, list[ChargeLine]]:
        """Charge lines for each due period, from the rollup."""
        return {item: rating.lines for item, rating in rate_periods(self, due).items()}

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
    """One subscription period re-rated: its lines by key and the quantities per window."""

    due: Due
    cycle: Period
    specs: list[PriceSpec]
    lines: list[ChargeLine]
    charges: dict[str, ChargeLine]
    windows: dict[tuple[datetime, datetime], list[QuantityRow]]

    def whole(self) -> list[QuantityRow]:
        return self.windows.get((self.due.period.start, self.due.period.end), [])


def rate_periods(rater: Rater, due: Sequence[Due], *, raw: bool = False) -> dict[Due, PeriodRating]:
    """Rate each due period. Quantities come from the rollup (what close bills) or, with
    `raw`, from the raw events (what the audit recomputes); all the windows of all the
    periods are read together (`batch_quantities`), one request per distinct (window,
    billing cycle) with the customers that need it."""
    by_window: dict[tuple[datetime, datetime, datetime, datetime], set[str]] = defaultdict(set)
    needs: dict[Due, set[tuple[datetime, datetime]]] = {}
    cycles: dict[Due, Period] = {}
    for item in due:
        sub = item.subscription
        cycles[item] = period_containing(sub.billing_anchor_day, sub.timezone, item.period.start)
        specs = rater.specs(sub.plan_id, sub.currency, sub.timezone)
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
        sub, cycle = item.subscription, cycles[item]
        rows = {
            (start, end): fetched[(start, end, cycle.start, cycle.end)].get(item.customer, [])
            for start, end in needs[item]
        }
        window_quantities: dict[tuple[datetime, datetime], dict[QuantityKey, Decimal]] = {
            window: {(r.meter, tuple(sorted(r.dimensions.items()))): r.quantity for r in found}
            for window, found in rows.items()
        }
        specs = rater.specs(sub.plan_id, sub.currency, sub.timezone)
        lines = rate_period(
            specs,
            start=item.period.start,
            end=item.period.end,
            quantities=window_quantities,
            discounts=[rater.discount(sub, d) for d in sub.discounts],
            minimum_commitment=rater.minimum(sub.plan_id, sub.currency),
            rounding=rater.rounding,
        )
        out[item] = PeriodRating(
            due=item,
            cycle=cycle,
            specs=specs,
            lines=lines,
            charges={line_key(sub.external_id, item.period, c): c for c in lines},
            windows=rows,
        )
    return out


def inputs_hash(lines: Iterable[ChargeLine]) -> str:
    """The rating run's fingerprint: the content hashes of the lines it rated."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.content_hash().encode())
    return digest.hexdigest()


def _status(session: Session) -> dict[tuple[int, datetime], tuple[str, datetime | None]]:
    rows = session.execute(
        select(
            Invoice.subscription_id, Invoice.period_start, Invoice.status, Invoice.finalized_at
        ).where(Invoice.status != "void")
    )
    return {
        (sid, as_utc(start)): (status, as_utc(done) if done else None)
        for sid, start, status, done in rows
    }


def as_utc(value: datetime) -> datetime:
    """A ledger timestamp in UTC (SQLite returns them naive, in UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def late_customers(
    warehouse: Warehouse, start: datetime, end: datetime, since: datetime
) -> set[str]:
    rows = warehouse.query_rows(
        query("quantities/late_customers"), {"start": start, "end": end, "since": since}
    )
    return {str(r[0]) for r in rows}


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
    before `as_of`; then adjust recent finalized periods whose usage changed (late
    events, within the settings' late_lookback)."""
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
        with make_session.begin() as session:
            load_catalog(session, config.catalog_path)
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
                    state, finalized_at = status.get((sub.id, period.start), ("", None))
                    if state != "finalized":
                        due.append(Due(sub, customer, period))
                    elif period.end >= as_of - lookback and finalized_at is not None:
                        finalized.append((Due(sub, customer, period), finalized_at))
            recent_finalized = _with_late_usage(warehouse, finalized)
            charges = rater.rate(due)
            run_id = None
            if due:
                run_id = record_rating_run(
                    session,
                    period_start=min(d.period.start for d in due),
                    period_end=max(d.period.end for d in due),
                    run_at=as_of,
                    code_version=CODE_VERSION,
                    inputs_hash=inputs_hash(line for lines in charges.values() for line in lines),
                    note="billing close",
                )
            posted = post_charges_bulk(
                session,
                [ChargeBatch(d.subscription.external_id, d.period, charges[d]) for d in due],
                rerate=True,
                rating_run_id=run_id,
            )
            report.periods_closed = len(due)
            report.lines_created = posted.created + posted.replaced
            report.lines_unchanged = posted.unchanged

            # Late usage of finalized periods: re-rate; the difference becomes adjustment
            # lines on the next open invoice (a no-op when nothing changed).
            report.periods_checked_for_late_usage = len(recent_finalized)
            for item, lines in rater.rate(recent_finalized).items():
                result = post_adjustments(
                    session,
                    item.subscription.external_id,
                    item.period,
                    lines,
                    rerate=True,
                    rating_run_id=run_id,
                )
                report.adjustment_lines += result.created + result.replaced
            # Every draft whose period ended the grace period ago is final now: the
            # periods just rated, and the drafts carrying corrections (also those of a
            # subscription that has ended, which has no period of its own left).
            report.invoices_finalized = finalize_due(session, as_of=as_of, grace=grace)
    finally:
        engine.dispose()
    return report


def _with_late_usage(warehouse: Warehouse, finalized: list[tuple[Due, datetime]]) -> list[Due]:
    """The finalized periods whose customer got events after the invoice was finalized."""
    if not finalized:
        return []
    start = min(d.period.start for d, _ in finalized)
    end = max(d.period.end for d, _ in finalized)
    since = min(at for _, at in finalized)
    late = late_customers(warehouse, start, end, since)
    return [d for d, _ in finalized if d.customer in late]
