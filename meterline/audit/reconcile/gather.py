"""Reconcile's I/O: read one month's facts from the ledger and the warehouse, hand them to
the pure checks (`meterline.audit.reconcile.checks`), judge the findings against the
acknowledgements the ledger holds.

Several months (`reconcile_after_close`, the billing_close DAG's last task) share one
ledger session, one warehouse connection, one price book, and one read of the
subscriptions, customers and live invoices.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cached_property

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.credits import audit_grants
from billing.models import Customer, Invoice, Subscription
from billing.periods import local_midnight
from billing.views import month_bounds
from meterline.audit import ledger
from meterline.audit.errors import AuditError
from meterline.audit.facts import (
    GrantFacts,
    IngestFacts,
    MissingPeriod,
    PostedLine,
    ReconcileFacts,
    RevenueFacts,
    RevenueGap,
    StoredCount,
    Unattributed,
    UsageTotals,
)
from meterline.audit.findings import JudgedFinding, acknowledgements
from meterline.audit.reconcile.checks import reconcile
from meterline.audit.reconcile.report import ReconcileReport
from meterline.audit.rerating import Rerater, period_facts
from meterline.audit.scope import unknown_customer
from meterline.audit.warehouse import UsageWindow, usage_totals
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.collector import collector_paused
from meterline.jobs.due import billable_periods
from meterline.jobs.rate import RATING_ERRORS
from meterline.jobs.revrec import Book as RevrecBook
from meterline.jobs.revrec import book_of as revrec_book
from meterline.jobs.revrec import month_days
from meterline.jobs.revrec import period_from as revrec_period_from
from meterline.jobs.watermarks import LateWindow, Watermark, as_utc, late_events, run_watermarks
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.rollup import dirty_days
from meters.sql_files import query
from meters.warehouse.base import Warehouse

# Subscription spans of customers with none end "never".
_FAR = datetime(2200, 1, 1, tzinfo=UTC)


def reconcile_period(
    period: str,
    *,
    customer: str | None = None,
    as_of: datetime | None = None,
    config: Settings | None = None,
) -> ReconcileReport:
    """Reconcile the invoices whose period starts in month YYYY-MM (local time): intake,
    raw events, rollup, re-rated and posted lines, totals, drift, unattributed usage.
    With `as_of`, periods of the month that were due by then and have no invoice fail.
    ValueError for a month that is not YYYY-MM."""
    month_bounds(period)  # a clear ValueError for a bad month, before any I/O
    with _reader(config or settings()) as reader:
        report = reader.report(period, customer, as_of)
        reader.require_customer(customer, [report], period)
        return report


def reconcile_after_close(
    as_of: datetime, *, customer: str | None = None, config: Settings | None = None
) -> list[ReconcileReport]:
    """The billing_close DAG's last task: reconcile every month a close as of `as_of`
    could touch (months_to_reconcile), checking also that no due period was left
    without an invoice. AuditError (exit code 3) for a customer that neither the ledger
    holds nor has usage in those months."""
    with _reader(config or settings()) as reader:
        months = reader.months(as_of)
        if months:
            reader.revenue_span = (month_days(months[0])[0], month_days(months[-1])[1])
        reports = [reader.report(m, customer, as_of) for m in months]
        reader.require_customer(customer, reports, ", ".join(months) or "no month")
        return reports


def find_finding(
    finding_id: str,
    *,
    period: str | None = None,
    as_of: datetime | None = None,
    customer: str | None = None,
    config: Settings | None = None,
) -> JudgedFinding:
    """The finding with this id among those `meterline audit reconcile` lists with the
    same scope: the month `period` (with `as_of`, also its periods due by then without
    an invoice), or without `period` every month a close as of `as_of` can touch.
    AuditError (exit code 3) when no finding of that reconcile has the id: a finding
    that does not exist (or no longer does: its values changed) is never acknowledged.
    ValueError when neither `period` nor `as_of` is given."""
    if period is None and as_of is None:
        raise ValueError("give the month (or the close time) whose reconcile lists the finding")
    if period is not None:
        reports = [reconcile_period(period, customer=customer, as_of=as_of, config=config)]
        scope = period
    else:
        assert as_of is not None
        reports = reconcile_after_close(as_of, customer=customer, config=config)
        scope = f"the months a close as of {as_of.isoformat().replace('+00:00', 'Z')} can change"
    scope += f" for customer {customer}" if customer else ""
    findings = [f for r in reports for f in r.findings]
    for found in findings:
        if found.id == finding_id:
            return found
    listed = ", ".join(f.id for f in findings[:5]) + (" ..." if len(findings) > 5 else "")
    raise AuditError(
        f"no finding {finding_id} in the reconcile of {scope}"
        + (f" (its findings: {listed})" if findings else " (it has none)")
        + ": acknowledge an id as `meterline audit reconcile` lists it with the same scope"
    )


def months_to_reconcile(as_of: datetime, *, config: Settings | None = None) -> list[str]:
    """The months (YYYY-MM of local period starts) whose invoices a close as of `as_of`
    can still change: periods that ended within the late-event lookback before `as_of`
    (meterline/jobs/close.py uses the same lookback for adjustments)."""
    config = config or settings()
    with ledger_session(config) as session:
        return _months(session, _subscriptions(session), as_of, config)


@contextmanager
def _reader(config: Settings) -> Iterator[_Month]:
    # A month's reconcile re-rates every finalized period twice (raw events, rollup):
    # a heap like a close's, which the cyclic collector re-walks for nothing.
    meters = meter_catalog(config)
    with (
        collector_paused(),
        ledger_session(config) as session,
        open_warehouse(config) as warehouse,
    ):
        yield _Month(session, warehouse, meters, config)


class _Month:
    """Reads the facts of months to reconcile; what every month shares is read once."""

    def __init__(
        self, session: Session, warehouse: Warehouse, meters: MeterCatalog, config: Settings
    ) -> None:
        self.session = session
        self.warehouse = warehouse
        self.meters = meters
        self.config = config
        # Revenue recognition is read once for all the months reconciled (their days).
        self.revenue_span: tuple[date, date] | None = None
        self._books: dict[str | None, RevrecBook] = {}

    @cached_property
    def rerater(self) -> Rerater:
        return Rerater(self.session, self.warehouse, self.meters)

    @cached_property
    def subscriptions(self) -> list[tuple[Subscription, str]]:
        return _subscriptions(self.session)

    @cached_property
    def currencies(self) -> dict[str, str]:
        """Each customer's currency."""
        return {
            str(c): str(cur)
            for c, cur in self.session.execute(select(Customer.external_id, Customer.currency))
        }

    @cached_property
    def live_periods(self) -> set[tuple[int, datetime]]:
        """(subscription id, period start) of every live invoice."""
        return {
            (sid, as_utc(start))
            for sid, start in self.session.execute(
                select(Invoice.subscription_id, Invoice.period_start).where(
                    Invoice.status != "void"
                )
            )
        }

    def months(self, as_of: datetime) -> list[str]:
        return _months(self.session, self.subscriptions, as_of, self.config)

    def require_customer(
        self, customer: str | None, reports: Sequence[ReconcileReport], months: str
    ) -> None:
        """AuditError (exit code 3) for a customer the ledger does not hold and that has
        no usage in the months reconciled: it does not exist. One the ledger does not
        hold but with events is reported: its usage is unattributed."""
        if customer is None or customer in self.currencies:
            return
        if not any(r.unattributed for r in reports):
            raise AuditError(unknown_customer(customer, months))

    def report(self, period: str, customer: str | None, as_of: datetime | None) -> ReconcileReport:
        """One month reconciled and judged (METERLINE_RECONCILE_FAIL_ON, acknowledgements)."""
        draft = reconcile(self.facts(period, customer, as_of))
        acks = acknowledgements(self.session, [f.id for f in draft.findings])
        return draft.judged(self.config.reconcile_fail_on, acks)

    def facts(self, period: str, customer: str | None, as_of: datetime | None) -> ReconcileFacts:
        invoices, void = ledger.month_invoices(self.session, period, customer)
        lines = ledger.lines_of_invoices(self.session, [inv.id for inv in invoices])
        closed = [inv for inv in invoices if inv.status == "finalized"]
        dues = {inv.id: ledger.due_of(inv) for inv in closed}
        raw_ratings, rollup_ratings = self.rerater.rate_both(list(dues.values()))
        raw = {i: period_facts(raw_ratings[d], with_unpriced=True) for i, d in dues.items()}
        rollup = {i: period_facts(rollup_ratings[d], with_unpriced=False) for i, d in dues.items()}
        keys = {ln.key for found in lines.values() for ln in found if ln.kind != "adjustment"}
        keys |= {k for f in raw.values() for k in f.charges}
        windows = [(i, d.customer, d.period.start, d.period.end) for i, d in dues.items()]
        window = _month_window(period)
        ingests, stored = self._intake(window, customer)
        return ReconcileFacts(
            period=period,
            customer=customer,
            invoices=[ledger.invoice_info(inv) for inv in invoices],
            lines=lines,
            adjustments=ledger.adjustments_of(self.session, sorted(keys)),
            raw=raw,
            rollup=rollup,
            raw_totals=usage_totals(self.warehouse, self.meters, windows, rollup=False),
            rollup_totals=usage_totals(self.warehouse, self.meters, windows, rollup=True),
            late=self._late(closed, lines, windows),
            ingests=ingests,
            stored=stored,
            intake_window=window,
            unattributed=self._unattributed(window, customer),
            missing=self._missing(period, customer, as_of) if as_of else [],
            dirty_days=self._dirty(windows),
            void_invoices=void,
            as_of=as_of,
            grants=self._grants(window, customer),
            revenue=self._revenue(period, customer),
        )

    def _revenue(self, period: str, customer: str | None) -> RevenueFacts:
        """The month's revenue balances of every customer (or one), each day checked
        against billed = recognized + deferred - unbilled (meterline.jobs.revrec)."""
        if customer is not None and customer not in self.currencies:
            return RevenueFacts(checked=0)  # not in the ledger: nothing billed or earned
        first, last = month_days(period)
        book = self._books.get(customer)
        if book is None or not (book.first <= first and last <= book.last):
            # Read once for every month this reader reconciles (revenue_span), if known.
            span = self.revenue_span or (first, last)
            book = revrec_book(
                self.session,
                self.warehouse,
                self.meters,
                first=min(span[0], first),
                last=max(span[1], last),
                customer=customer,
            )
            self._books[customer] = book
        found = revrec_period_from(book, period)
        return RevenueFacts(
            checked=len(found.balances),
            gaps=[
                RevenueGap(
                    b.customer, b.currency, b.day, b.billed, b.recognized, b.deferred, b.unbilled
                )
                for b in found.failures
            ],
            problems=found.problems,
        )

    def _grants(self, window: tuple[datetime, datetime], customer: str | None) -> list[GrantFacts]:
        """The credit grants of the month (their life overlaps it, or an entry is in it),
        each replayed from its ledger entries."""
        out = []
        for audit in audit_grants(self.session, customer=customer, start=window[0], end=window[1]):
            b = audit.grant.balance
            out.append(
                GrantFacts(
                    grant_id=audit.grant.grant_id,
                    customer=audit.grant.customer,
                    unit=audit.grant.unit,
                    granted=b.granted,
                    consumed=b.consumed,
                    expired=b.expired,
                    voided=b.voided,
                    remaining=b.remaining,
                    rolled_over=b.rolled_over,
                    problems=tuple(audit.replay.problems),
                )
            )
        return out

    def _late(
        self,
        closed: Sequence[Invoice],
        lines: dict[int, list[PostedLine]],
        windows: Sequence[UsageWindow],
    ) -> dict[int, dict[str, UsageTotals]]:
        """Late for an invoice: not seen by the run that produced its lines (a line the
        run re-derived unchanged is the run's too), else after its finalization."""
        runs = {
            inv.id: max(
                (ln.rating_run_id for ln in lines[inv.id] if ln.kind != "adjustment"),
                default=None,
                key=lambda r: r or 0,
            )
            for inv in closed
        }
        marks = run_watermarks(self.session, [r for r in runs.values() if r is not None])
        late_windows = []
        for (wid, who, start, end), inv in zip(windows, closed, strict=True):
            run = runs.get(inv.id)
            seen = marks.get(run) if run is not None else None
            if seen is None and inv.finalized_at is not None:
                seen = Watermark(as_utc(inv.finalized_at))
            if seen is not None:
                late_windows.append(LateWindow(wid, who, start, end, seen))
        return {
            wid: {m: UsageTotals(n, v, at) for m, (n, v, at) in per_meter.items()}
            for wid, per_meter in late_events(self.warehouse, late_windows).items()
        }

    def _dirty(self, windows: Sequence[UsageWindow]) -> list[date]:
        if not windows:
            return []
        return dirty_days(
            self.warehouse,
            up_to=max(w[3] for w in windows).date(),
            since=min(w[2] for w in windows).date(),
            catalog=self.meters,
        )

    def _intake(
        self, window: tuple[datetime, datetime], customer: str | None
    ) -> tuple[list[IngestFacts], list[StoredCount]]:
        bounds = {"start": window[0], "end": window[1]}
        ingests = [
            IngestFacts(
                str(ingest_id),
                first_at,
                [str(s) for s in sources],
                int(received),
                int(accepted),
                int(duplicates),
                int(rejected),
                {str(k): int(v) for k, v in dict(by_reason).items()},
            )
            for (
                ingest_id,
                first_at,
                sources,
                received,
                accepted,
                duplicates,
                rejected,
                by_reason,
            ) in self.warehouse.query_rows(query("audit/intake_log"), bounds)
        ]
        stored = [
            StoredCount(str(i), str(m or ""), str(c or ""), str(o), str(r or ""), int(n))
            for i, m, c, o, r, n in self.warehouse.query_rows(
                query("audit/intake_stored"),
                {**bounds, "currencies": self.currencies, **_customers(customer)},
            )
        ]
        return ingests, stored

    @cached_property
    def _spans(self) -> dict[str, list[tuple[datetime, datetime]]]:
        """Per customer: the active spans of its subscriptions (none for a customer
        without one)."""
        spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        for sub, external_id in self.subscriptions:
            start = local_midnight(sub.start_date, sub.timezone)
            end = local_midnight(sub.end_date, sub.timezone) if sub.end_date else _FAR
            spans[external_id].append((start, end))
        for external_id in self.currencies:
            spans.setdefault(external_id, [])
        return dict(spans)

    def _unattributed(
        self, window: tuple[datetime, datetime], customer: str | None
    ) -> list[Unattributed]:
        """Events of the UTC month that no subscription's active span covers."""
        rows = self.warehouse.query_rows(
            query("audit/unattributed"),
            {"start": window[0], "end": window[1], "spans": self._spans, **_customers(customer)},
        )
        return [
            Unattributed(
                customer=str(c),
                meter=str(m),
                events=int(n),
                value_sum=Decimal(v),
                first=first,
                last=last,
                known_customer=bool(known),
                example_event_id=str(example),
            )
            for c, m, n, v, first, last, known, example in rows
        ]

    def _missing(self, period: str, customer: str | None, as_of: datetime) -> list[MissingPeriod]:
        """Periods starting in the month that close should have invoiced by `as_of`, with
        the reason close cannot bill them when their plan or currency has no price."""
        first, nxt = month_bounds(period)
        prices = self.rerater.prices
        out = []
        for sub, external_id in self.subscriptions:
            if customer is not None and external_id != customer:
                continue
            for p in billable_periods(sub, as_of, self.config):
                if not first <= p.local_start(sub.timezone) < nxt:
                    continue
                if (sub.id, p.start) in self.live_periods:
                    continue
                try:
                    reason = prices.price_gap(
                        sub, prices.specs(sub.plan_id, sub.currency, sub.timezone), p
                    )
                except RATING_ERRORS as exc:
                    reason = f"the prices of plan {sub.plan_id} are unusable: {exc}"
                out.append(MissingPeriod(external_id, sub.external_id, p.start, p.end, reason))
        return out


def _subscriptions(session: Session) -> list[tuple[Subscription, str]]:
    """Every subscription with its customer's external id."""
    return [
        (sub, str(external_id))
        for sub, external_id in session.execute(
            select(Subscription, Customer.external_id).join(Customer)
        )
    ]


def _months(
    session: Session,
    subscriptions: Sequence[tuple[Subscription, str]],
    as_of: datetime,
    config: Settings,
) -> list[str]:
    """months_to_reconcile: the months of invoices whose period ended in the lookback,
    and of periods due by then, invoiced or not (a period close could not bill has no
    invoice, and its month must still be checked: missing_invoice)."""
    lookback = config.late_lookback
    rows = session.scalars(
        select(Invoice.period_start_local)
        .where(
            Invoice.status != "void",
            Invoice.period_end >= as_of - lookback,
            Invoice.period_end <= as_of,
        )
        .distinct()
    ).all()
    months = {f"{d:%Y-%m}" for d in rows}
    for sub, _ in subscriptions:
        for p in billable_periods(sub, as_of, config):
            if p.end >= as_of - lookback:
                months.add(f"{p.local_start(sub.timezone):%Y-%m}")
    return sorted(months)


def _customers(customer: str | None) -> dict[str, object]:
    """The customer scope of a warehouse query: every customer, or one."""
    return {"all_customers": customer is None, "customer_ids": [customer] if customer else []}


def _month_window(period: str) -> tuple[datetime, datetime]:
    first, nxt = month_bounds(period)
    return (
        datetime.combine(first, time(0), tzinfo=UTC),
        datetime.combine(nxt, time(0), tzinfo=UTC),
    )
