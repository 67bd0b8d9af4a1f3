"""Revenue recognition of a month: what `meterline revrec` runs, what reconcile checks and
what the data-lake export writes (docs/revrec.md).

`revrec_schedule(period)` is the schedule's rows recognized in a month (typed
billing.revrec.ScheduleRow, each with a stable `key`); `revrec_period(period)` adds the
balances of every customer, currency and day of the month, and what was billed in it;
`revrec_waterfall(first, last)` the waterfall. Each opens the ledger and the warehouse
itself; `period_of(session, warehouse, meters, ...)` does the same work on stores the
caller holds open (reconcile, the export), and `book_of` + `period_from` read once for
several months. The rules are billing.revrec's; the reads are
revrec_facts'. Months are of local days in each customer's timezone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy.orm import Session

from billing.errors import NotFound
from billing.revrec import (
    Balance,
    BillingEvent,
    RevInvoice,
    Schedule,
    ScheduleRow,
    Waterfall,
    balances,
    build_schedule,
    waterfall,
)
from billing.revrec.balances import days_between
from billing.revrec.model import CATEGORIES
from billing.revrec.waterfall import MAX_WATERFALL_MONTHS, months_between
from billing.views import month_bounds
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.revrec_facts import RevrecFacts, gather
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.warehouse.base import Warehouse

__all__ = [
    "MAX_WATERFALL_MONTHS",
    "Book",
    "CurrencySummary",
    "RevrecPeriod",
    "book_of",
    "month_days",
    "period_from",
    "period_of",
    "revrec_period",
    "revrec_schedule",
    "revrec_waterfall",
    "waterfall_span",
]


def month_days(period: str) -> tuple[date, date]:
    """The first and last day of month YYYY-MM. ValueError for a bad month."""
    first, nxt = month_bounds(period)
    return first, nxt - timedelta(days=1)


@dataclass(frozen=True)
class CurrencySummary:
    """One currency over the month (minor units): its balances summed over customers at
    the end of the day before the month (`opening`) and of its last day (`closing`),
    what it recognized per category and per product line, and what it billed."""

    currency: str
    opening: Balance
    closing: Balance
    recognized: dict[str, int]
    by_product: dict[str, int]
    invoices_billed: int
    invoices_billed_minor: int
    commitments_billed_minor: int


@dataclass
class RevrecPeriod:
    """A month of revenue recognition: the rows recognized on its days, the balances of
    each customer and currency at the end of each of its days (and of the day before),
    the invoices finalized in it, the commitments' billing in it, and the problems found
    (a line whose rows do not add up, a commitment that does not tie to its credit
    ledger)."""

    period: str
    first: date
    last: date
    customer: str | None
    rows: list[ScheduleRow]
    balances: list[Balance]
    invoices: list[RevInvoice]
    commitments: list[BillingEvent]
    problems: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Balance]:
        """The (customer, currency, day) balances where billed = recognized + deferred -
        unbilled does not hold (reconcile's revenue_balance findings)."""
        return [b for b in self.balances if b.gap != 0]

    def closing(self) -> list[Balance]:
        """Each customer's balances at the end of the month's last day."""
        return [b for b in self.balances if b.day == self.last]

    def summaries(self) -> list[CurrencySummary]:
        out = []
        before = self.first - timedelta(days=1)
        for currency in sorted({b.currency for b in self.balances}):
            rows = [r for r in self.rows if r.currency == currency]
            by_category: dict[str, int] = {
                c: sum(r.amount_minor for r in rows if r.category == c) for c in CATEGORIES
            }
            by_product: dict[str, int] = defaultdict(int)
            for row in rows:
                if row.category != "breakage":
                    by_product[row.product] += row.amount_minor
            billed = [i for i in self.invoices if i.currency == currency]
            out.append(
                CurrencySummary(
                    currency=currency,
                    opening=_summed(self.balances, currency, before),
                    closing=_summed(self.balances, currency, self.last),
                    recognized=by_category,
                    by_product=dict(sorted(by_product.items())),
                    invoices_billed=len(billed),
                    invoices_billed_minor=sum(i.total_minor for i in billed),
                    commitments_billed_minor=sum(
                        e.amount_minor for e in self.commitments if e.currency == currency
                    ),
                )
            )
        return out


def _summed(found: Sequence[Balance], currency: str, day: date) -> Balance:
    mine = [b for b in found if b.currency == currency and b.day == day]
    return Balance(
        customer="*",
        currency=currency,
        day=day,
        billed=sum(b.billed for b in mine),
        recognized=sum(b.recognized for b in mine),
        deferred=sum(b.deferred for b in mine),
        unbilled=sum(b.unbilled for b in mine),
        deferred_commitments=sum(b.deferred_commitments for b in mine),
    )


@dataclass(frozen=True)
class Book:
    """The facts and the schedule of some customers, read for recognizing the days
    `first`..`last` (usage days read for the lines reaching into them): enough for the
    months inside those days (`period_from`)."""

    first: date
    last: date
    customer: str | None
    facts: RevrecFacts
    schedule: Schedule


def book_of(
    session: Session,
    warehouse: Warehouse,
    meters: MeterCatalog,
    *,
    first: date,
    last: date,
    customer: str | None = None,
) -> Book:
    """Read the facts of every customer (or one) and build their schedule, for the days
    `first`..`last`. NotFound for a customer the ledger does not hold."""
    facts = gather(session, warehouse, meters, first=first, last=last, customer=customer)
    if customer is not None and customer not in facts.customers:
        raise NotFound(
            f"no customer {customer!r} in the ledger: load it with `meterline customers load`"
        )
    return Book(first, last, customer, facts, build_schedule(facts.lines, facts.grants))


def period_from(book: Book, period: str) -> RevrecPeriod:
    """The month `period` of a book whose days cover it (ValueError otherwise). The
    balances are at the end of each day of the month and of the day before it."""
    first, last = month_days(period)
    if not (book.first <= first and last <= book.last):
        raise ValueError(f"{period} is outside the days {book.first}..{book.last} read")
    facts, schedule = book.facts, book.schedule
    days = days_between(first - timedelta(days=1), last)
    found = balances(schedule.rows, facts.invoices, schedule.billing, days)
    return RevrecPeriod(
        period=period,
        first=first,
        last=last,
        customer=book.customer,
        rows=[r for r in schedule.rows if first <= r.day <= last],
        balances=found,
        invoices=[
            i for i in facts.invoices if i.billed_on is not None and first <= i.billed_on <= last
        ],
        commitments=[e for e in schedule.billing if first <= e.day <= last],
        problems=schedule.problems,
    )


def period_of(
    session: Session,
    warehouse: Warehouse,
    meters: MeterCatalog,
    period: str,
    *,
    customer: str | None = None,
) -> RevrecPeriod:
    """The month `period` (YYYY-MM) of every customer (or one), on open stores."""
    first, last = month_days(period)
    book = book_of(session, warehouse, meters, first=first, last=last, customer=customer)
    return period_from(book, period)


def revrec_period(
    period: str, *, customer: str | None = None, config: Settings | None = None
) -> RevrecPeriod:
    """The month `period` (YYYY-MM) of every customer, or of `customer`. ValueError for
    a month that is not YYYY-MM, NotFound for a customer the ledger does not hold; the
    stores' errors as every command's (exit codes 2, 4)."""
    month_days(period)  # a clear ValueError before any I/O
    config = config or settings()
    meters = meter_catalog(config)
    with ledger_session(config) as session, open_warehouse(config) as warehouse:
        return period_of(session, warehouse, meters, period, customer=customer)


def revrec_schedule(
    period: str, *, customer: str | None = None, config: Settings | None = None
) -> list[ScheduleRow]:
    """The schedule's rows recognized on the days of month `period` (YYYY-MM): typed
    rows, each with a stable `key` (its line's idempotency key, or its grant's ledger
    key, and the day), in line order then grant order. The export's revrec table."""
    return revrec_period(period, customer=customer, config=config).rows


def waterfall_span(first: str, last: str) -> int:
    """How many months `first`..`last` (YYYY-MM) is, both included (0 when `last` is
    before `first`); a waterfall shows at most MAX_WATERFALL_MONTHS."""
    return len(months_between(first, last))


def revrec_waterfall(
    first: str, last: str, *, customer: str | None = None, config: Settings | None = None
) -> Waterfall:
    """Recognized revenue by month of recognition (`first`..`last`, YYYY-MM) against
    month of billing. ValueError for a bad month, `last` before `first`, or more than
    MAX_WATERFALL_MONTHS months."""
    start, _ = month_days(first)
    _, end = month_days(last)
    if end < start:
        raise ValueError(f"--to {last} is before --from {first}")
    if waterfall_span(first, last) > MAX_WATERFALL_MONTHS:
        raise ValueError(f"{first}..{last} is more than {MAX_WATERFALL_MONTHS} months")
    config = config or settings()
    meters = meter_catalog(config)
    with ledger_session(config) as session, open_warehouse(config) as warehouse:
        book = book_of(session, warehouse, meters, first=start, last=end, customer=customer)
    return waterfall(book.schedule.rows, first, last)
