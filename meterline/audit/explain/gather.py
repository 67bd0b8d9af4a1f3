"""Explain's I/O: read what one line needs from the ledger and the warehouse into
``ExplainFacts``, and hand them to the pure ``meterline.audit.explain.chain.explain``.

Explaining many lines (the statement explains every line of its invoices) reads what
they share once: each period is re-rated once (raw events and rollup), and per
(customer, period) the raw usage totals, per (customer, period, meter) the rollup days
and the gauge spans, per invoice its lines, per rating run its watermark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing import bulk
from billing.charges import pays_key
from billing.models import CreditGrant, CreditLedgerEntry, Invoice, InvoiceLine, PriceVersion
from billing.outbox import SINKS
from billing.outbox.refs import external_ids
from billing.periods import Period
from meterline.audit import ledger
from meterline.audit.errors import AuditError
from meterline.audit.explain.chain import explain
from meterline.audit.explain.report import CreditDraw, CreditStep, DeliveredTo, Explanation
from meterline.audit.facts import (
    NO_EVENTS,
    EventList,
    ExplainFacts,
    MeterFacts,
    PostedLine,
    PriceWindow,
    QuantityFact,
    Span,
    UsageTotals,
    WindowQuantities,
)
from meterline.audit.levels import GAUGES
from meterline.audit.rerating import Rerater
from meterline.audit.values import Dims, dims_of
from meterline.audit.warehouse import (
    MeterWindow,
    gauge_spans,
    line_events,
    rollup_days,
    usage_totals,
)
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.due import Due
from meterline.jobs.rate import PeriodRating
from meterline.jobs.watermarks import Watermark, as_utc, run_watermarks
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.warehouse.base import Warehouse
from rating.period import ADDITIVE, PriceSpec, version_windows


def explain_lines(
    line_ids: Sequence[int],
    *,
    config: Settings | None = None,
    samples: int = 5,
    late_limit: int = 20,
) -> list[Explanation]:
    """The explanation of each line, in the order given: `samples` sample events and up
    to `late_limit` late events each. AuditError for a line that does not exist."""
    config = config or settings()
    meters = meter_catalog(config)
    with ledger_session(config) as session, open_warehouse(config) as warehouse:
        explainer = LineExplainer(session, warehouse, meters)
        explainer.rate_periods_of(line_ids)
        return [explainer.explain(i, samples=samples, late_limit=late_limit) for i in line_ids]


def explain_line(
    line_id: int, *, config: Settings | None = None, samples: int = 5, late_limit: int = 20
) -> Explanation:
    """One line explained (explain_lines)."""
    return explain_lines([line_id], config=config, samples=samples, late_limit=late_limit)[0]


class LineExplainer:
    """Explains lines of one ledger and warehouse, reading what lines share once."""

    def __init__(self, session: Session, warehouse: Warehouse, meters: MeterCatalog) -> None:
        self.session = session
        self.warehouse = warehouse
        self.meters = meters
        self.rerater = Rerater(session, warehouse, meters)
        self.usage = cache(self._usage)
        self.meter_rows = cache(self._meter_rows)
        self.invoice_lines = cache(self._invoice_lines)
        self.watermark = cache(self._watermark)
        self.events = cache(self._events)

    def rate_periods_of(self, line_ids: Sequence[int]) -> None:
        """Re-rate the periods of these lines (from raw events and from the rollup) in one
        batch each, before they are explained one by one."""
        dues = []
        for part in bulk.chunks(sorted(set(line_ids))):
            for row in self.session.scalars(
                select(InvoiceLine)
                .where(InvoiceLine.id.in_(part))
                .options(
                    selectinload(InvoiceLine.invoice).selectinload(Invoice.subscription),
                    selectinload(InvoiceLine.invoice).selectinload(Invoice.customer),
                )
            ):
                inv = row.invoice
                period = Period(as_utc(row.service_period_start), as_utc(row.service_period_end))
                dues.append(Due(inv.subscription, inv.customer.external_id, period))
        self.rerater.rate_both(dues)

    def explain(self, line_id: int, *, samples: int, late_limit: int) -> Explanation:
        row = self.session.get(InvoiceLine, line_id)
        if row is None:
            raise AuditError(f"no invoice line {line_id}")
        (line,) = ledger.lines(self.session, InvoiceLine.id == line_id)
        inv = row.invoice
        period = Period(line.service_start, line.service_end)
        source = (
            inv
            if line.kind != "adjustment"
            else ledger.live_invoice(self.session, inv.subscription.id, period.start)
        )
        due = Due(inv.subscription, inv.customer.external_id, period)
        raw = self.rerater.rate_one(due, raw=True)
        original = self._original(line, source)
        spec = next((s for s in raw.specs if s.price_id == line.price_id), None)
        price_filter: Mapping[str, str] = dict(spec.filter) if spec else {}
        # A credit line's usage is the line it pays: explaining that one recomputes it.
        meter = None if line.kind == "credit" else self._meter(line, spec, due)
        late, sample = NO_EVENTS, NO_EVENTS
        if meter is not None:
            run_id = original.rating_run_id if original is not None else None
            seen = self._seen(run_id, source)
            window = MeterWindow(due.customer, str(line.meter), period.start, period.end)
            price = tuple(sorted(price_filter.items()))
            if seen is not None:
                late = self.events(window, price, seen, late_limit, run_id)
            sample = self.events(window, price, None, samples, None)
        explained = explain(
            ExplainFacts(
                line=line,
                invoice=ledger.invoice_info(inv),
                source_invoice=ledger.invoice_info(source) if source is not None else None,
                original=original,
                adjustments=ledger.adjustments_of(self.session, [line.corrects]),
                related=self._related(source, line, original),
                recomputed=raw.charges.get(line.corrects),
                recomputed_key=line.corrects,
                price_filter=price_filter,
                price_body=self._body(row.price_version_id),
                price_windows=_price_windows(spec, line, period),
                meter=meter,
                late=late,
                samples=sample,
                notes=_notes(raw, inv),
            )
        )
        return explained.model_copy(
            update={
                "delivered": self._delivered(line_id, inv.id),
                "credit": self._credit(line) if line.kind == "credit" else None,
            }
        )

    def _credit(self, line: PostedLine) -> CreditStep:
        """A credit line's grant, what it paid and took, the grant's balance around it
        (its consume entry), the line it pays and every grant that paid that line, in
        the drawdown's order (docs/credits.md, "The drawdown")."""
        paid_key = pays_key(line.key)
        lines = self.invoice_lines(line.invoice_id)
        credits = [ln for ln in lines if ln.kind == "credit" and pays_key(ln.key) == paid_key]
        grant_of = {ln.id: _grant_id(ln) for ln in credits}
        grants = {
            g.grant_id: g
            for g in self.session.scalars(
                select(CreditGrant).where(CreditGrant.grant_id.in_(set(grant_of.values())))
            )
        }

        def rank(ln: PostedLine) -> tuple[int, int, Any, int, int]:
            g = grants.get(grant_of[ln.id])
            if g is None:
                return (1, 0, 0.0, 0, ln.id)
            expiry = as_utc(g.expires_at).timestamp() if g.expires_at else float("inf")
            return (0, g.priority, expiry, g.id, ln.id)

        order = [
            CreditDraw(
                line_id=ln.id,
                grant_id=grant_of[ln.id],
                priority=g.priority if (g := grants.get(grant_of[ln.id])) else None,
                expires_at=as_utc(g.expires_at) if g and g.expires_at else None,
                paid=-ln.amount_precise,
                units=_units(ln),
                unit=_unit(ln),
            )
            for ln in sorted(credits, key=rank)
        ]
        entry = self.session.scalars(
            select(CreditLedgerEntry).where(
                CreditLedgerEntry.invoice_line_id == line.id, CreditLedgerEntry.kind == "consume"
            )
        ).first()
        grant = grants.get(grant_of.get(line.id, _grant_id(line)))
        return CreditStep(
            grant_id=_grant_id(line),
            grant_kind=grant.kind if grant is not None else None,
            unit=_unit(line),
            paid=-line.amount_precise,
            units=_units(line),
            balance_before=entry.available_after + entry.amount if entry is not None else None,
            balance_after=entry.available_after if entry is not None else None,
            pays_key=paid_key,
            pays_line_id=next((ln.id for ln in lines if ln.key == paid_key), None),
            order=order,
            rule=(
                "grant by grant: the lower priority first, then the earliest expiry (never"
                " last), then the oldest grant; each pays what is left of the line"
            ),
        )

    def _delivered(self, line_id: int, invoice_id: int) -> list[DeliveredTo]:
        """The line's Stripe invoice and item, as the sink recorded them."""
        out = []
        for sink in SINKS:
            items = external_ids(self.session, sink, "line", [str(line_id)])
            invoices = external_ids(self.session, sink, "invoice", [str(invoice_id)])
            item = items.get(str(line_id))
            invoice = invoices.get(str(invoice_id))
            out.append(
                DeliveredTo(
                    sink=sink,
                    invoice=item[1] if item else invoice[0] if invoice else None,
                    item=item[0] if item else None,
                )
            )
        return out

    def _original(self, line: PostedLine, source: Invoice | None) -> PostedLine | None:
        """The line whose key an adjustment corrects (the line itself otherwise)."""
        if line.kind != "adjustment":
            return line
        if source is None:
            return None
        found = [ln for ln in self.invoice_lines(source.id) if ln.key == line.corrects]
        return found[0] if found else None

    def _body(self, price_version_id: int | None) -> dict[str, Any] | None:
        if price_version_id is None:
            return None
        version = self.session.get(PriceVersion, price_version_id)
        return dict(version.body) if version is not None else None

    def _seen(self, run_id: int | None, source: Invoice | None) -> Watermark | None:
        """What the run that produced the line saw: its watermark, or for a run that
        recorded none, the finalization of the line's invoice."""
        seen = self.watermark(run_id) if run_id else None
        if seen is None and source is not None and source.finalized_at is not None:
            seen = Watermark(as_utc(source.finalized_at))
        return seen

    def _watermark(self, run_id: int) -> Watermark | None:
        return run_watermarks(self.session, [run_id]).get(run_id)

    def _events(
        self,
        window: MeterWindow,
        price_filter: tuple[tuple[str, str], ...],
        seen: Watermark | None,
        limit: int,
        run_id: int | None,
    ) -> EventList:
        """A window's events of a price's groups: a sample (`seen` None), or those the
        run with watermark `seen` did not see (a line and its discount share them)."""
        return line_events(
            self.warehouse,
            self.meters,
            window,
            price_filter=dict(price_filter),
            seen=seen,
            limit=limit,
            rating_run_id=run_id,
        )

    def _meter(self, line: PostedLine, spec: PriceSpec | None, due: Due) -> MeterFacts | None:
        """The line's meter over its period (None for a flat fee, a minimum true-up, or a
        meter the catalog no longer has)."""
        if line.kind == "minimum_true_up" or line.meter not in self.meters.meters:
            return None
        definition = self.meters.get(line.meter)
        period = due.period
        totals = self.usage(due.customer, period.start, period.end)
        days, spans = self.meter_rows(due.customer, period.start, period.end, line.meter)
        return MeterFacts(
            aggregation=definition.aggregation.value,
            unit=definition.unit,
            meter_filter=dict(definition.filter),
            windows=_windows(
                spec,
                period,
                self.rerater.rate_one(due, raw=True),
                self.rerater.rate_one(due, raw=False),
                line.meter,
            ),
            raw_totals={dims: t for (m, dims), t in totals.items() if m == line.meter},
            rollup_days=days,
            spans=spans,
        )

    def _usage(
        self, customer: str, start: datetime, end: datetime
    ) -> dict[tuple[str, Dims], UsageTotals]:
        window = [(0, customer, start, end)]
        return usage_totals(self.warehouse, self.meters, window, rollup=False).get(0, {})

    def _meter_rows(
        self, customer: str, start: datetime, end: datetime, meter: str
    ) -> tuple[list[tuple[date, Dims, UsageTotals]], list[Span]]:
        window = MeterWindow(customer, meter, start, end)
        days = rollup_days(self.warehouse, window)
        spans: list[Span] = []
        if self.meters.get(meter).aggregation.value in GAUGES:
            spans = gauge_spans(self.warehouse, self.meters, window)
        return days, spans

    def _invoice_lines(self, invoice_id: int) -> list[PostedLine]:
        return ledger.lines(self.session, InvoiceLine.invoice_id == invoice_id)

    def _related(
        self, source: Invoice | None, line: PostedLine, original: PostedLine | None
    ) -> list[PostedLine]:
        """Lines of the corrected period that bear on this one: a price's discount and
        usage lines, and the minimum commitment true-up."""
        if source is None:
            return []
        own = [
            ln
            for ln in self.invoice_lines(source.id)
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


def _grant_id(line: PostedLine) -> str:
    """A credit line's grant: its breakdown's, or the last part of its key."""
    breakdown = line.breakdown if isinstance(line.breakdown, Mapping) else {}
    return str(breakdown.get("grant_id") or line.key.rsplit("|", 1)[-1])


def _unit(line: PostedLine) -> str:
    """What a credit line took from its grant is counted in: the currency, or a meter."""
    breakdown = line.breakdown if isinstance(line.breakdown, Mapping) else {}
    return str(breakdown.get("unit") or line.currency)


def _units(line: PostedLine) -> Decimal:
    """What a credit line took from its grant, in the grant's unit."""
    breakdown = line.breakdown if isinstance(line.breakdown, Mapping) else {}
    units = breakdown.get("units")
    return Decimal(str(units)) if units is not None else line.quantity


def _notes(raw: PeriodRating, inv: Invoice) -> list[str]:
    notes = []
    if raw.error is not None:
        notes.append(f"the period cannot be re-rated from its raw events: {raw.error}")
    if inv.status == "void":
        notes.append("the line's invoice is void: it is not part of what the customer owes")
    return notes


def _price_windows(spec: PriceSpec | None, line: PostedLine, period: Period) -> list[PriceWindow]:
    """The price's versions in effect over the period (none for a minimum true-up)."""
    if spec is None or line.kind == "minimum_true_up":
        return []
    return [
        PriceWindow(w.label, w.start, w.end, w.price.model_dump(mode="json", exclude_none=True))
        for w in version_windows(spec, period.start, period.end)
    ]


def _windows(
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
