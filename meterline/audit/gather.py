"""The audit's I/O: read the ledger and the warehouse, re-rate periods from raw events,
and hand the facts to the pure functions of `meterline.audit.checks`.

Re-rating uses the close step's own pieces (meterline/jobs/close.py `Rater` for prices,
discounts and minimums; meterline/jobs/period_charges.py for version windows and rating) with
one difference: quantities come from `usage_events` directly (`rate_periods(...,
raw=True)`, read by `meters.quantities.batch_quantities`) instead of the rollup.

Time comes from the data: a re-rate posted with `--apply` is dated by the latest
`ingested_at` of the events it read (invariant 7), never by the clock. An event is late
for a line when the rating run that produced the line did not see it (its watermark,
`meterline.jobs.close.Watermark`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, selectinload

from billing.adjustments import post_adjustments
from billing.db import create_ledger_engine, session_factory
from billing.errors import LedgerError
from billing.migrate import require_head, upgrade
from billing.models import (
    Customer,
    FindingAcknowledgement,
    Invoice,
    InvoiceLine,
    PriceVersion,
    RatingRun,
    Subscription,
)
from billing.periods import Period, local_midnight, period_containing
from billing.posting import record_rating_run
from billing.views import month_bounds
from meterline.audit import checks as audit
from meterline.audit.checks import (
    Dims,
    EventList,
    EventRow,
    ExplainFacts,
    InvoiceInfo,
    PeriodFacts,
    PostedLine,
    PriceWindow,
    QuantityFact,
    ReconcileReport,
    RerateReport,
    Span,
    UsageTotals,
    WindowQuantities,
    dims_of,
)
from meterline.connections import meter_catalog, open_warehouse
from meterline.jobs.close import (
    CODE_VERSION,
    EPOCH,
    RATING_ERRORS,
    ROUNDING,
    Due,
    LateWindow,
    PeriodRating,
    Rater,
    Watermark,
    as_utc,
    billable_periods,
    events_watermark,
    inputs_hash,
    late_events,
    rate_periods,
    run_watermarks,
)
from meterline.jobs.period_charges import (
    ADDITIVE,
    PriceSpec,
    version_windows,
)
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.rollup import definition_params, dirty_days
from meters.sql_files import query
from meters.warehouse.base import Warehouse

_CHUNK = 500
FINDING_ID = re.compile(r"^f-[0-9a-f]{12}$")


class AuditError(LedgerError):
    """What the audit was asked for does not exist (no such line, no such period)."""


# --- connections ------------------------------------------------------------------------


@contextmanager
def ledger_session(config: Settings) -> Iterator[Session]:
    """A read session on the ledger (at the current schema): rolled back, never written."""
    engine = create_ledger_engine(config.ledger_url)
    try:
        require_head(engine)
        with session_factory(engine)() as session:
            try:
                yield session
            finally:
                session.rollback()
    finally:
        engine.dispose()


# --- re-rating --------------------------------------------------------------------------


def _unpriced(rating: PeriodRating) -> list[tuple[str, Dims, Decimal]]:
    """Dimension groups with usage that no price of the plan counts."""
    out = []
    for row in rating.whole():
        dims = dims_of(row.dimensions)
        priced = any(
            s.meter == row.meter and audit.matches_filter(dims, s.filter) for s in rating.specs
        )
        if not priced and row.quantity:
            out.append((row.meter, dims, row.quantity))
    return out


# --- ledger reads -----------------------------------------------------------------------


def _invoice_info(inv: Invoice) -> InvoiceInfo:
    sub = inv.subscription
    cycle = period_containing(sub.billing_anchor_day, sub.timezone, as_utc(inv.period_start))
    return InvoiceInfo(
        id=inv.id,
        status=inv.status,
        customer=inv.customer.external_id,
        customer_name=inv.customer.name,
        subscription=sub.external_id,
        plan=sub.plan_id,
        currency=inv.currency,
        timezone=sub.timezone,
        period_start=as_utc(inv.period_start),
        period_end=as_utc(inv.period_end),
        period_start_local=inv.period_start_local,
        cycle_start=cycle.start,
        cycle_end=cycle.end,
        finalized_at=as_utc(inv.finalized_at) if inv.finalized_at else None,
        total_minor=inv.total_minor,
        line_count=inv.line_count,
    )


def _posted(line: InvoiceLine, status: str, run_at: datetime | None, fallback: Any) -> PostedLine:
    posted_at = run_at or fallback
    return PostedLine(
        id=line.id,
        invoice_id=line.invoice_id,
        invoice_status=status,
        kind=line.kind,
        key=line.idempotency_key,
        price_id=line.price_id,
        price_version=line.price_version,
        meter=line.meter,
        group=line.dimension_group,
        quantity=line.quantity,
        unit_amount=line.unit_amount,
        amount_minor=line.amount_minor,
        amount_precise=line.amount_precise,
        currency=line.currency,
        description=line.description,
        breakdown=line.breakdown,
        service_start=as_utc(line.service_period_start),
        service_end=as_utc(line.service_period_end),
        adjusts_key=line.adjusts_key,
        adjusts_line_id=line.adjusts_line_id,
        rating_run_id=line.rating_run_id,
        posted_at=as_utc(posted_at) if posted_at else None,
    )


def _lines(session: Session, *where: Any) -> list[PostedLine]:
    rows = session.execute(
        select(InvoiceLine, Invoice.status, RatingRun.run_at, Invoice.finalized_at)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .outerjoin(RatingRun, RatingRun.id == InvoiceLine.rating_run_id)
        .where(*where)
        .order_by(InvoiceLine.id)
    ).all()
    return [_posted(line, status, run_at, done) for line, status, run_at, done in rows]


def _adjustments_of(session: Session, keys: Sequence[str]) -> list[PostedLine]:
    """Adjustment lines on live invoices correcting any of `keys`."""
    out: list[PostedLine] = []
    ordered = sorted(set(keys))
    for i in range(0, len(ordered), _CHUNK):
        out += _lines(
            session,
            InvoiceLine.kind == "adjustment",
            InvoiceLine.adjusts_key.in_(ordered[i : i + _CHUNK]),
            Invoice.status != "void",
        )
    return out


def _live_invoice(session: Session, subscription_id: int, start: datetime) -> Invoice | None:
    return session.scalars(
        select(Invoice).where(
            Invoice.subscription_id == subscription_id,
            Invoice.period_start == start,
            Invoice.status != "void",
        )
    ).first()


def month_invoices(
    session: Session, period: str, customer: str | None
) -> tuple[list[Invoice], int]:
    """Invoices whose period starts in month YYYY-MM (local time), live ones first; and
    the number of void ones."""
    first, nxt = month_bounds(period)
    stmt = (
        select(Invoice)
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(Invoice.period_start_local >= first, Invoice.period_start_local < nxt)
        .options(
            selectinload(Invoice.subscription).selectinload(Subscription.discounts),
            selectinload(Invoice.customer),
        )
        .order_by(Customer.external_id, Invoice.period_start, Invoice.id)
    )
    if customer is not None:
        stmt = stmt.where(Customer.external_id == customer)
    invoices = list(session.scalars(stmt))
    live = [i for i in invoices if i.status != "void"]
    return live, len(invoices) - len(live)


def _due(inv: Invoice) -> Due:
    return Due(
        inv.subscription,
        inv.customer.external_id,
        Period(as_utc(inv.period_start), as_utc(inv.period_end)),
    )


# --- warehouse reads --------------------------------------------------------------------


def _usage_totals(
    warehouse: Warehouse,
    meters: MeterCatalog,
    windows: Sequence[tuple[int, str, datetime, datetime]],
    *,
    rollup: bool,
) -> dict[int, dict[tuple[str, Dims], UsageTotals]]:
    """Per window: events and value sums per (meter, dimension group), from the raw
    events or from the rollup rows."""
    out: dict[int, dict[tuple[str, Dims], UsageTotals]] = defaultdict(dict)
    if not windows:
        return out
    base: dict[str, Any] = {
        "windows": list(windows),
        "customer_ids": sorted({w[1] for w in windows}),
        "start": min(w[2] for w in windows),
        "end": max(w[3] for w in windows),
        "meters": sorted(meters.meters),
    }
    if rollup:
        for wid, meter, dims, rows, events, value_sum, latest in warehouse.query_rows(
            query("audit/rollup_window_totals"), base
        ):
            out[int(wid)][(meter, dims_of(dims))] = UsageTotals(
                int(events), Decimal(value_sum), latest, int(rows)
            )
    else:
        base.update(_meter_rules(meters))
        for wid, meter, dims, events, value_sum, latest in warehouse.query_rows(
            query("audit/window_totals"), base
        ):
            out[int(wid)][(meter, dims_of(dims))] = UsageTotals(
                int(events), Decimal(value_sum), latest
            )
    return out


def _meter_rules(meters: MeterCatalog) -> dict[str, Any]:
    """The meters' dimensions and filters as the bound parameters that the shared SQL
    fragments (shared/meter_dimensions, shared/matches_meter_filter) read."""
    params = definition_params(meters)
    return {"dimensions": params["dimensions"], "filters": params["filters"]}


def _line_events(
    warehouse: Warehouse,
    meters: MeterCatalog,
    *,
    customer: str,
    meter: str,
    start: datetime,
    end: datetime,
    price_filter: Mapping[str, str],
    seen: Watermark | None,
    limit: int,
    rating_run_id: int | None = None,
) -> EventList:
    """Events of the line's window: all of them (`seen` None, a sample), or those the
    rating run with watermark `seen` did not see (the late ones), oldest first."""
    meters.get(meter)  # an unknown meter is an error here, not an empty answer
    rows = warehouse.query_rows(
        query("audit/line_events"),
        {
            "customer": customer,
            "meter": meter,
            "start": start,
            "end": end,
            "since": seen.events if seen else EPOCH,
            "stale": dict(seen.stale) if seen else {},
            **_meter_rules(meters),
            "price_filter": dict(price_filter),
            "order_by_time": seen is not None,
            "limit": max(limit, 1),
        },
    )
    events = [
        EventRow(str(eid), ts, Decimal(value), dims_of(dims), ingested, str(source))
        for eid, ts, value, dims, ingested, source, _n, _v in rows
    ]
    count = int(rows[0][6]) if rows else 0
    value_sum = Decimal(rows[0][7]) if rows else Decimal(0)
    if seen is None:
        return EventList(events[:limit], count, value_sum)
    return EventList(events[:limit], count, value_sum, seen.events, dict(seen.stale), rating_run_id)


def _spans(
    warehouse: Warehouse,
    meters: MeterCatalog,
    *,
    customer: str,
    meter: str,
    start: datetime,
    end: datetime,
    price_filter: Mapping[str, str],
) -> list[Span]:
    meters.get(meter)  # an unknown meter is an error here, not an empty answer
    rows = warehouse.query_rows(
        query("audit/gauge_spans"),
        {
            "customer": customer,
            "meter": meter,
            "start": start,
            "end": end,
            **_meter_rules(meters),
            "price_filter": dict(price_filter),
        },
    )
    return [
        Span(dims_of(dims), str(eid), ts, Decimal(value), int(from_ms), int(to_ms))
        for dims, eid, ts, value, _ingested, from_ms, to_ms in rows
    ]


# --- explain ----------------------------------------------------------------------------


class _Explainer:
    """Explains lines, re-rating each period once however many of its lines are asked."""

    def __init__(self, session: Session, warehouse: Warehouse, meters: MeterCatalog):
        self.session = session
        self.warehouse = warehouse
        self.meters = meters
        self.rater = Rater(session, warehouse, meters, ROUNDING)
        self._ratings: dict[tuple[int, datetime, bool], PeriodRating] = {}

    def rating(self, due: Due, *, raw: bool) -> PeriodRating:
        key = (due.subscription.id, due.period.start, raw)
        if key not in self._ratings:
            self._ratings[key] = rate_periods(self.rater, [due], raw=raw)[due]
        return self._ratings[key]

    def explain(self, line_id: int, *, samples: int, late_limit: int) -> dict[str, Any]:
        row = self.session.get(InvoiceLine, line_id)
        if row is None:
            raise AuditError(f"no invoice line {line_id}")
        inv = row.invoice
        sub, customer = inv.subscription, inv.customer.external_id
        (line,) = _lines(self.session, InvoiceLine.id == line_id)
        period = Period(line.service_start, line.service_end)
        source = (
            inv if line.kind != "adjustment" else _live_invoice(self.session, sub.id, period.start)
        )
        due = Due(sub, customer, period)
        raw, rollup = self.rating(due, raw=True), self.rating(due, raw=False)
        key = line.corrects
        recomputed = raw.charges.get(key)
        notes: list[str] = []
        if raw.error is not None:
            notes.append(f"the period cannot be re-rated from its raw events: {raw.error}")
        if line.kind == "adjustment":
            found = (
                _lines(
                    self.session,
                    InvoiceLine.invoice_id == source.id,
                    InvoiceLine.idempotency_key == key,
                )
                if source is not None
                else []
            )
            original = found[0] if found else None
        else:
            original = line
        if inv.status == "void":
            notes.append("the line's invoice is void: it is not part of what the customer owes")
        adjustments = _adjustments_of(self.session, [key])
        related = self._related(source, line, original)
        spec = next((s for s in raw.specs if s.price_id == line.price_id), None)
        price_filter: Mapping[str, str] = dict(spec.filter) if spec else {}
        body = None
        if row.price_version_id is not None:
            version = self.session.get(PriceVersion, row.price_version_id)
            body = dict(version.body) if version is not None else None
        price_windows = (
            [
                PriceWindow(
                    w.label, w.start, w.end, w.price.model_dump(mode="json", exclude_none=True)
                )
                for w in version_windows(spec, period.start, period.end)
            ]
            if spec is not None and line.kind not in ("minimum_true_up",)
            else []
        )
        meter = line.meter if line.kind != "minimum_true_up" else None
        windows: list[WindowQuantities] = []
        raw_totals: dict[Dims, UsageTotals] = {}
        rollup_days: list[tuple[date, Dims, UsageTotals]] = []
        spans: list[Span] = []
        late = audit.NO_EVENTS
        sample = audit.NO_EVENTS
        aggregation = unit = None
        meter_filter: Mapping[str, str] = {}
        if meter is not None and meter in self.meters.meters:
            definition = self.meters.get(meter)
            aggregation, unit = definition.aggregation.value, definition.unit
            meter_filter = dict(definition.filter)
            windows = self._windows(spec, period, raw, rollup, meter)
            totals = _usage_totals(
                self.warehouse, self.meters, [(0, customer, period.start, period.end)], rollup=False
            ).get(0, {})
            raw_totals = {dims: t for (m, dims), t in totals.items() if m == meter}
            rollup_days = [
                (
                    day,
                    dims_of(dims),
                    UsageTotals(int(events), Decimal(value_sum), latest, int(rows)),
                )
                for day, dims, rows, events, value_sum, latest in self.warehouse.query_rows(
                    query("audit/rollup_days"),
                    {
                        "customer": customer,
                        "meter": meter,
                        "start": period.start,
                        "end": period.end,
                    },
                )
            ]
            if definition.aggregation.value in ("time_weighted", "latest"):
                spans = _spans(
                    self.warehouse,
                    self.meters,
                    customer=customer,
                    meter=meter,
                    start=period.start,
                    end=period.end,
                    price_filter=price_filter,
                )
            # Late for this line: not seen by the run that produced the period's line
            # (the original's, for an adjustment: the events behind the correction).
            run_id = original.rating_run_id if original is not None else None
            seen = run_watermarks(self.session, [run_id]).get(run_id) if run_id else None
            if seen is None and source is not None and source.finalized_at is not None:
                seen = Watermark(as_utc(source.finalized_at))

            def events_of(watermark: Watermark | None, limit: int) -> EventList:
                return _line_events(
                    self.warehouse,
                    self.meters,
                    customer=customer,
                    meter=meter,
                    start=period.start,
                    end=period.end,
                    price_filter=price_filter,
                    seen=watermark,
                    limit=limit,
                    rating_run_id=run_id,
                )

            if seen is not None:
                late = events_of(seen, late_limit)
            sample = events_of(None, samples)
        return audit.explain(
            ExplainFacts(
                line=line,
                invoice=_invoice_info(inv),
                source_invoice=_invoice_info(source) if source is not None else None,
                original=original,
                adjustments=adjustments,
                related=related,
                recomputed=recomputed,
                recomputed_key=key,
                aggregation=aggregation,
                unit=unit,
                meter_filter=meter_filter,
                price_filter=price_filter,
                price_body=body,
                price_windows=price_windows,
                windows=windows,
                raw_totals=raw_totals,
                rollup_days=rollup_days,
                spans=spans,
                late=late,
                samples=sample,
                notes=notes,
            )
        )

    def _windows(
        self,
        spec: PriceSpec | None,
        period: Period,
        raw: PeriodRating,
        rollup: PeriodRating,
        meter: str,
    ) -> list[WindowQuantities]:
        """The quantity windows the rating used: one per price version for an additive
        meter whose price changed in the period, else the whole period."""
        versions = version_windows(spec, period.start, period.end) if spec else []
        if spec is not None and len(versions) > 1 and spec.aggregation in ADDITIVE:
            bounds: list[tuple[datetime, datetime, str | None]] = [
                (w.start, w.end, w.label) for w in versions
            ]
        else:
            label = versions[-1].label if versions else None
            bounds = [(period.start, period.end, label)]

        def facts(rating: PeriodRating, start: datetime, end: datetime) -> list[QuantityFact]:
            return [
                QuantityFact(dims_of(r.dimensions), r.quantity, r.events)
                for r in rating.windows.get((start, end), [])
                if r.meter == meter
            ]

        return [
            WindowQuantities(s, e, label, facts(raw, s, e), facts(rollup, s, e))
            for s, e, label in bounds
        ]

    def _related(
        self, source: Invoice | None, line: PostedLine, original: PostedLine | None
    ) -> list[PostedLine]:
        """Lines of the corrected period that bear on this one: a price's discount and
        usage lines, and the minimum commitment true-up."""
        if source is None:
            return []
        own = [
            ln
            for ln in _lines(self.session, InvoiceLine.invoice_id == source.id)
            if ln.kind != "adjustment" and (original is None or ln.id != original.id)
        ]
        kind = original.kind if original is not None else line.kind
        if kind == "minimum_true_up":
            return own
        return [
            ln
            for ln in own
            if ln.kind == "minimum_true_up"
            or (ln.price_id == line.price_id and ln.group == line.group)
        ]


def explain_lines(
    line_ids: Sequence[int],
    *,
    config: Settings | None = None,
    samples: int = 5,
    late_limit: int = 20,
) -> list[dict[str, Any]]:
    """The audit chain of each line (meterline.audit.checks.explain), in the order given."""
    config = config or settings()
    meters = meter_catalog(config)
    with ledger_session(config) as session, open_warehouse(config) as warehouse:
        explainer = _Explainer(session, warehouse, meters)
        return [explainer.explain(i, samples=samples, late_limit=late_limit) for i in line_ids]


def explain_line(line_id: int, *, config: Settings | None = None, **kwargs: Any) -> dict[str, Any]:
    return explain_lines([line_id], config=config, **kwargs)[0]


# --- reconcile --------------------------------------------------------------------------


def _month_window(period: str) -> tuple[datetime, datetime]:
    first, nxt = month_bounds(period)
    return (
        datetime.combine(first, time(0), tzinfo=UTC),
        datetime.combine(nxt, time(0), tzinfo=UTC),
    )


def reconcile_period(
    period: str,
    *,
    customer: str | None = None,
    as_of: datetime | None = None,
    config: Settings | None = None,
) -> ReconcileReport:
    """Reconcile the invoices whose period starts in month YYYY-MM (local time): intake,
    raw events, rollup, re-rated and posted lines, totals, drift, unattributed usage.
    With `as_of`, periods of the month that were due by then and have no invoice fail."""
    config = config or settings()
    month_bounds(period)  # a clear ValueError for a bad month, before any I/O
    meters = meter_catalog(config)
    with ledger_session(config) as session, open_warehouse(config) as warehouse:
        facts = _reconcile_facts(session, warehouse, meters, config, period, customer, as_of)
        report = audit.reconcile(facts)
        report.fail_on = config.reconcile_fail_on
        report.acknowledgements = acknowledgements(session, [f.id for f in report.findings])
    return report


def _reconcile_facts(
    session: Session,
    warehouse: Warehouse,
    meters: MeterCatalog,
    config: Settings,
    period: str,
    customer: str | None,
    as_of: datetime | None,
) -> audit.ReconcileFacts:
    invoices, void = month_invoices(session, period, customer)
    infos = [_invoice_info(inv) for inv in invoices]
    lines: dict[int, list[PostedLine]] = defaultdict(list)
    ids = [inv.id for inv in invoices]
    for i in range(0, len(ids), _CHUNK):
        for ln in _lines(session, InvoiceLine.invoice_id.in_(ids[i : i + _CHUNK])):
            lines[ln.invoice_id].append(ln)

    closed = [inv for inv in invoices if inv.status == "finalized"]
    rater = Rater(session, warehouse, meters, ROUNDING)
    dues = {inv.id: _due(inv) for inv in closed}
    raw_ratings = rate_periods(rater, list(dues.values()), raw=True)
    rollup_ratings = rate_periods(rater, list(dues.values()))

    def period_facts(rating: PeriodRating, *, unpriced: bool) -> PeriodFacts:
        return PeriodFacts(
            charges=rating.charges,
            quantities={(r.meter, dims_of(r.dimensions)): r.quantity for r in rating.whole()},
            unpriced=_unpriced(rating) if unpriced else (),
            error=rating.error,
        )

    raw = {i: period_facts(raw_ratings[d], unpriced=True) for i, d in dues.items()}
    rollup = {i: period_facts(rollup_ratings[d], unpriced=False) for i, d in dues.items()}
    keys = {ln.key for inv_lines in lines.values() for ln in inv_lines if ln.kind != "adjustment"}
    keys |= {k for f in raw.values() for k in f.charges}
    adjustments = _adjustments_of(session, sorted(keys))

    windows = [
        (inv.id, inv.customer.external_id, dues[inv.id].period.start, dues[inv.id].period.end)
        for inv in closed
    ]
    raw_totals = _usage_totals(warehouse, meters, windows, rollup=False)
    rollup_totals = _usage_totals(warehouse, meters, windows, rollup=True)
    # Late for an invoice: not seen by the run that produced its lines (a line the run
    # re-derived unchanged is the run's too), else after its finalization.
    runs = {
        inv.id: max(
            (ln.rating_run_id for ln in lines[inv.id] if ln.kind != "adjustment"),
            default=None,
            key=lambda r: r or 0,
        )
        for inv in closed
    }
    marks = run_watermarks(session, [r for r in runs.values() if r is not None])
    late_windows = []
    for (wid, who, start, end), inv in zip(windows, closed, strict=True):
        run = runs.get(inv.id)
        seen = marks.get(run) if run is not None else None
        if seen is None and inv.finalized_at is not None:
            seen = Watermark(as_utc(inv.finalized_at))
        if seen is not None:
            late_windows.append(LateWindow(wid, who, start, end, seen))
    late = {
        wid: {m: UsageTotals(n, v, at) for m, (n, v, at) in per_meter.items()}
        for wid, per_meter in late_events(warehouse, late_windows).items()
    }

    intake_window = _month_window(period)
    currencies = {
        str(c): str(cur)
        for c, cur in session.execute(select(Customer.external_id, Customer.currency)).all()
    }
    ingests, stored = _intake(warehouse, intake_window, currencies, customer)
    unattributed = _unattributed(session, warehouse, intake_window, customer)
    missing = _missing(session, rater, config, period, customer, as_of) if as_of else []

    dirty: list[date] = []
    if windows:
        dirty = dirty_days(
            warehouse,
            up_to=max(w[3] for w in windows).date(),
            since=min(w[2] for w in windows).date(),
            catalog=meters,
        )
    return audit.ReconcileFacts(
        period=period,
        customer=customer,
        invoices=infos,
        lines=lines,
        adjustments=adjustments,
        raw=raw,
        rollup=rollup,
        raw_totals=raw_totals,
        rollup_totals=rollup_totals,
        late=late,
        ingests=ingests,
        stored=stored,
        intake_window=intake_window,
        unattributed=unattributed,
        missing=missing,
        dirty_days=dirty,
        void_invoices=void,
        as_of=as_of,
    )


def _intake(
    warehouse: Warehouse,
    window: tuple[datetime, datetime],
    currencies: Mapping[str, str],
    customer: str | None,
) -> tuple[list[audit.IngestFacts], list[audit.StoredCount]]:
    bounds = {"start": window[0], "end": window[1]}
    ingests = [
        audit.IngestFacts(
            str(ingest_id),
            first_at,
            [str(s) for s in sources],
            int(received),
            int(accepted),
            int(duplicates),
            int(rejected),
            {str(k): int(v) for k, v in dict(by_reason).items()},
        )
        for ingest_id, first_at, sources, received, accepted, duplicates, rejected, by_reason in (
            warehouse.query_rows(query("audit/intake_log"), bounds)
        )
    ]
    stored = [
        audit.StoredCount(str(i), str(m or ""), str(c or ""), str(o), str(r or ""), int(n))
        for i, m, c, o, r, n in warehouse.query_rows(
            query("audit/intake_stored"),
            {
                **bounds,
                "currencies": dict(currencies),
                "all_customers": customer is None,
                "customer_ids": [customer] if customer else [],
            },
        )
    ]
    return ingests, stored


def _unattributed(
    session: Session, warehouse: Warehouse, window: tuple[datetime, datetime], customer: str | None
) -> list[audit.Unattributed]:
    """Events of the UTC month that no subscription's active span covers."""
    far = datetime(2200, 1, 1, tzinfo=UTC)
    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for sub, external_id in session.execute(
        select(Subscription, Customer.external_id).join(Customer)
    ):
        start = local_midnight(sub.start_date, sub.timezone)
        end = local_midnight(sub.end_date, sub.timezone) if sub.end_date else far
        spans[external_id].append((start, end))
    for external_id in session.scalars(select(Customer.external_id)):
        spans.setdefault(external_id, [])
    rows = warehouse.query_rows(
        query("audit/unattributed"),
        {
            "start": window[0],
            "end": window[1],
            "all_customers": customer is None,
            "customer_ids": [customer] if customer else [],
            "spans": dict(spans),
        },
    )
    return [
        audit.Unattributed(
            str(c), str(m), int(n), Decimal(v), first, last, bool(known), str(example)
        )
        for c, m, n, v, first, last, known, example in rows
    ]


def _missing(
    session: Session,
    rater: Rater,
    config: Settings,
    period: str,
    customer: str | None,
    as_of: datetime,
) -> list[audit.MissingPeriod]:
    """Periods starting in the month that close should have invoiced by `as_of`, with the
    reason close cannot bill them when their plan or currency has no price."""
    first, nxt = month_bounds(period)
    live = {
        (sid, as_utc(start))
        for sid, start in session.execute(
            select(Invoice.subscription_id, Invoice.period_start).where(Invoice.status != "void")
        )
    }
    stmt = select(Subscription, Customer.external_id).join(Customer)
    if customer is not None:
        stmt = stmt.where(Customer.external_id == customer)
    out = []
    for sub, external_id in session.execute(stmt):
        for p in billable_periods(sub, as_of, config):
            if not first <= p.local_start(sub.timezone) < nxt:
                continue
            if (sub.id, p.start) not in live:
                try:
                    specs = rater.specs(sub.plan_id, sub.currency, sub.timezone)
                    reason = rater.price_gap(sub, specs, p)
                except RATING_ERRORS as exc:
                    reason = f"the prices of plan {sub.plan_id} are unusable: {exc}"
                out.append(
                    audit.MissingPeriod(external_id, sub.external_id, p.start, p.end, reason)
                )
    return out


def months_to_reconcile(as_of: datetime, *, config: Settings | None = None) -> list[str]:
    """The months (YYYY-MM of local period starts) whose invoices a close as of `as_of`
    can still change: periods that ended within the late-event lookback before `as_of`
    (meterline/jobs/close.py uses the same lookback for adjustments)."""
    config = config or settings()
    lookback = config.late_lookback
    with ledger_session(config) as session:
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
        # And the months of periods due by then, invoiced or not: a period close could
        # not bill has no invoice, and its month must still be checked (missing_invoice).
        for sub in session.scalars(select(Subscription)):
            for p in billable_periods(sub, as_of, config):
                if p.end >= as_of - lookback:
                    months.add(f"{p.local_start(sub.timezone):%Y-%m}")
    return sorted(months)


def reconcile_after_close(
    as_of: datetime, *, config: Settings | None = None
) -> list[ReconcileReport]:
    """The billing_close DAG's last task: reconcile every month a close as of `as_of`
    could touch, checking also that no due period was left without an invoice."""
    config = config or settings()
    return [
        reconcile_period(month, as_of=as_of, config=config)
        for month in months_to_reconcile(as_of, config=config)
    ]


# --- rerate -----------------------------------------------------------------------------


def rerate(
    period: str,
    *,
    customer: str | None = None,
    apply: bool = False,
    config: Settings | None = None,
) -> RerateReport:
    """Re-rate the finalized invoices of month YYYY-MM against the current events and
    the catalog loaded in the ledger. Without `apply` nothing is written; with it, the
    differences are posted as adjustment lines on the next open invoices
    (post_adjustments), never by editing a finalized invoice."""
    config = config or settings()
    month_bounds(period)
    meters = meter_catalog(config)
    engine = create_ledger_engine(config.ledger_url)
    try:
        if make_url(config.ledger_url).get_backend_name() == "sqlite":
            upgrade(engine)
        else:
            require_head(engine)
        session = session_factory(engine)()
        try:
            with open_warehouse(config) as warehouse:
                report = _rerate(session, warehouse, meters, config, period, customer, apply)
            if apply:
                session.commit()
            else:
                session.rollback()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
    finally:
        engine.dispose()
    return report


def _rerate(
    session: Session,
    warehouse: Warehouse,
    meters: MeterCatalog,
    config: Settings,
    period: str,
    customer: str | None,
    apply: bool,
) -> RerateReport:
    session.begin()
    invoices, void = month_invoices(session, period, customer)
    report = RerateReport(period, customer, apply, 0, [])
    if void:
        report.skipped.append({"reason": "void", "invoices": void})
    drafts = [inv.id for inv in invoices if inv.status != "finalized"]
    if drafts:
        report.skipped.append(
            {"reason": "draft: re-rated by the next close, not adjusted", "invoice_ids": drafts}
        )
    closed = [inv for inv in invoices if inv.status == "finalized"]
    report.periods_checked = len(closed)
    rater = Rater(session, warehouse, meters, ROUNDING)
    dues = {inv.id: _due(inv) for inv in closed}
    ratings = rate_periods(rater, list(dues.values()), raw=True)
    keys = {k for r in ratings.values() for k in r.charges}
    originals: dict[int, list[PostedLine]] = defaultdict(list)
    ids = [inv.id for inv in closed]
    for i in range(0, len(ids), _CHUNK):
        for ln in _lines(
            session,
            InvoiceLine.invoice_id.in_(ids[i : i + _CHUNK]),
            InvoiceLine.kind != "adjustment",
        ):
            originals[ln.invoice_id].append(ln)
            keys.add(ln.key)
    adjustments: dict[str, list[PostedLine]] = defaultdict(list)
    for adj in _adjustments_of(session, sorted(keys)):
        adjustments[adj.corrects].append(adj)
    to_post: list[tuple[Invoice, PeriodRating]] = []
    for inv in closed:
        rating = ratings[dues[inv.id]]
        if rating.error is not None:
            report.skipped.append(
                {
                    "reason": f"cannot be re-rated: {rating.error}",
                    "invoice_ids": [inv.id],
                    "customer": inv.customer.external_id,
                }
            )
            continue
        own = [ln for ln in originals[inv.id] if ln.service_start == rating.due.period.start]
        adjs = [
            a
            for ln_key in sorted({*rating.charges, *(o.key for o in own)})
            for a in adjustments.get(ln_key, ())
        ]
        diffs = [
            d
            for d in audit.compare_period(own, adjs, rating.charges, inv.currency)
            if not d.delta.is_zero
        ]
        if diffs:
            report.periods.append(
                audit.PeriodDiff(
                    inv.id,
                    inv.customer.external_id,
                    inv.subscription.external_id,
                    inv.currency,
                    rating.due.period.start,
                    rating.due.period.end,
                    diffs,
                )
            )
            to_post.append((inv, rating))
    report.run_at = events_watermark(warehouse)
    if not apply or not to_post:
        return report
    report.rating_run_id = record_rating_run(
        session,
        period_start=min(r.due.period.start for _, r in to_post),
        period_end=max(r.due.period.end for _, r in to_post),
        run_at=report.run_at or EPOCH,
        code_version=CODE_VERSION,
        inputs_hash=inputs_hash(c for _, r in to_post for c in r.lines),
        note=f"audit rerate {period}" + (f" customer {customer}" if customer else ""),
        # It read the raw events, so it saw every event ingested up to its run_at.
        events_watermark=report.run_at or EPOCH,
    )
    for inv, rating in to_post:
        result = post_adjustments(
            session,
            inv.subscription.external_id,
            rating.due.period,
            rating.lines,
            rerate=True,
            rating_run_id=report.rating_run_id,
        )
        report.posted.append(
            {
                "corrected_invoice_id": inv.id,
                "customer": inv.customer.external_id,
                "carrier_invoice_id": result.invoice_id,
                "carrier_period": [
                    audit.iso(result.target_period.start),
                    audit.iso(result.target_period.end),
                ],
                "created": result.created,
                "replaced": result.replaced,
                "removed": result.removed,
                "line_ids": sorted(result.lines.values()),
            }
        )
    return report


# --- acknowledgements -------------------------------------------------------------------


def acknowledgements(
    session: Session, finding_ids: Sequence[str]
) -> dict[str, audit.Acknowledgement]:
    """The latest acknowledgement of each of these findings that has one."""
    out: dict[str, audit.Acknowledgement] = {}
    wanted = sorted(set(finding_ids))
    for i in range(0, len(wanted), _CHUNK):
        for row in session.scalars(
            select(FindingAcknowledgement)
            .where(FindingAcknowledgement.finding_id.in_(wanted[i : i + _CHUNK]))
            .order_by(FindingAcknowledgement.id)
        ):
            out[row.finding_id] = audit.Acknowledgement(
                row.finding_id, row.reason, row.acknowledged_by, as_utc(row.acknowledged_at)
            )
    return out


def acknowledge(
    finding_id: str,
    *,
    reason: str,
    by: str,
    at: datetime,
    config: Settings | None = None,
) -> audit.Acknowledgement:
    """Record that `by` acknowledged reconcile finding `finding_id` at `at`, because
    `reason`: from then on it is listed as acknowledged and no longer fails a run. Only
    that exact finding: one whose values change gets a new id. ValueError for an id that
    is not a finding id or an empty reason."""
    config = config or settings()
    finding_id = finding_id.strip().lower()
    if not FINDING_ID.match(finding_id):
        raise ValueError(
            f"{finding_id!r} is not a finding id (f- and 12 hex digits, as"
            " `meterline audit reconcile` lists them)"
        )
    if not reason.strip():
        raise ValueError("give the reason the finding is acknowledged")
    if not by.strip():
        raise ValueError("give who acknowledges it")
    engine = create_ledger_engine(config.ledger_url)
    try:
        if make_url(config.ledger_url).get_backend_name() == "sqlite":
            upgrade(engine)
        else:
            require_head(engine)
        with session_factory(engine).begin() as session:
            session.add(
                FindingAcknowledgement(
                    finding_id=finding_id,
                    reason=reason.strip(),
                    acknowledged_by=by.strip(),
                    acknowledged_at=at,
                )
            )
    finally:
        engine.dispose()
    return audit.Acknowledgement(finding_id, reason.strip(), by.strip(), at)
