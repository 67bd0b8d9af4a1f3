"""`meterline audit rerate`: re-rate a month's finalized invoices against the current
events and the catalog the ledger holds; show the differences key by key, and with
`apply` post them as adjustment lines.

Business rules:
- A finalized invoice is never edited: a difference is posted by
  `billing.adjustments.post_adjustments` as adjustment lines on the next open invoice,
  linked to the lines they correct, under one new rating run.
- Time comes from the data (DESIGN.md invariant 7): the run's `run_at` and events
  watermark are the latest `ingested_at` of the events it read, never the clock.
- Drafts are re-rated by the next close, not adjusted; void invoices owe nothing; a
  period that cannot be re-rated (no price now) is skipped with the reason.

`differences` is pure (facts in, typed diffs out); `rerate` reads and writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from pydantic import Field, computed_field
from sqlalchemy.orm import Session

from billing.adjustments import post_adjustments
from billing.models import Invoice, InvoiceLine
from billing.posting import record_rating_run
from billing.views import month_bounds
from meterline.audit import ledger
from meterline.audit.compare import KeyDiff, compare_period
from meterline.audit.facts import PostedLine
from meterline.audit.rerating import Rerater
from meterline.audit.scope import require_customer
from meterline.audit.values import Amount, Instant, Report
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.post import CODE_VERSION
from meterline.jobs.rate import PeriodRating, inputs_hash
from meterline.jobs.watermarks import EPOCH, events_watermark
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.warehouse.base import Warehouse


class PeriodDiff(Report):
    """A finalized invoice whose keys differ from their re-rating."""

    invoice_id: int
    customer: str
    subscription: str
    currency: str
    period: tuple[Instant, Instant]
    lines: list[KeyDiff]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def difference(self) -> Amount:
        return Amount(
            minor=sum(d.difference.amount_minor for d in self.lines), currency=self.currency
        )


class Skipped(Report):
    """Invoices not re-rated, and why: `invoices` counts the void ones, `invoice_ids`
    lists drafts or a period that cannot be re-rated (with its customer)."""

    reason: str
    invoices: int | None = None
    invoice_ids: list[int] | None = None
    customer: str | None = None


class PostedCorrection(Report):
    """The adjustment lines `apply` posted for one corrected invoice."""

    corrected_invoice_id: int
    customer: str
    carrier_invoice_id: int | None
    carrier_period: tuple[Instant, Instant]
    created: int
    replaced: int
    removed: int
    line_ids: list[int]


class RerateReport(Report):
    period: str
    customer: str | None
    applied: bool
    run_at: Instant | None
    rating_run_id: int | None = None
    periods_checked: int
    periods: list[PeriodDiff]
    skipped: list[Skipped]
    posted: list[PostedCorrection] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def periods_differing(self) -> int:
        return len(self.periods)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lines_differing(self) -> int:
        return sum(len(p.lines) for p in self.periods)


def differences(
    invoices: Sequence[Invoice],
    ratings: Mapping[int, PeriodRating],
    originals: Mapping[int, Sequence[PostedLine]],
    adjustments: Mapping[str, Sequence[PostedLine]],
) -> tuple[list[PeriodDiff], list[Skipped]]:
    """Per finalized invoice: the keys whose billed total (its lines of the period and
    the adjustments of their keys) differs from the re-rating, by quantity or minor
    units; and the invoices that cannot be re-rated."""
    periods, skipped = [], []
    for inv in invoices:
        rating = ratings[inv.id]
        if rating.error is not None:
            skipped.append(
                Skipped(
                    reason=f"cannot be re-rated: {rating.error}",
                    invoice_ids=[inv.id],
                    customer=inv.customer.external_id,
                )
            )
            continue
        start, end = rating.due.period.start, rating.due.period.end
        own = [ln for ln in originals.get(inv.id, ()) if ln.service_start == start]
        adjs = [
            a
            for k in sorted({*rating.charges, *(o.key for o in own)})
            for a in adjustments.get(k, ())
        ]
        diffs = [
            d
            for d in compare_period(own, adjs, rating.charges, inv.currency)
            if not d.difference.is_zero
        ]
        if diffs:
            periods.append(
                PeriodDiff(
                    invoice_id=inv.id,
                    customer=inv.customer.external_id,
                    subscription=inv.subscription.external_id,
                    currency=inv.currency,
                    period=(start, end),
                    lines=diffs,
                )
            )
    return periods, skipped


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
    (post_adjustments), never by editing a finalized invoice, in one transaction.
    ValueError for a month that is not YYYY-MM; AuditError (exit code 3) for a customer
    the ledger does not hold."""
    config = config or settings()
    month_bounds(period)
    meters = meter_catalog(config)
    with ledger_session(config, write=apply) as session, open_warehouse(config) as warehouse:
        return _rerate(session, warehouse, meters, period, customer, apply)


def _rerate(
    session: Session,
    warehouse: Warehouse,
    meters: MeterCatalog,
    period: str,
    customer: str | None,
    apply: bool,
) -> RerateReport:
    require_customer(session, customer)
    invoices, void = ledger.month_invoices(session, period, customer)
    skipped = [Skipped(reason="void", invoices=void)] if void else []
    drafts = [inv.id for inv in invoices if inv.status != "finalized"]
    if drafts:
        skipped.append(
            Skipped(reason="draft: re-rated by the next close, not adjusted", invoice_ids=drafts)
        )
    closed = [inv for inv in invoices if inv.status == "finalized"]
    dues = {inv.id: ledger.due_of(inv) for inv in closed}
    rated = Rerater(session, warehouse, meters).rate(list(dues.values()), raw=True)
    ratings = {i: rated[d] for i, d in dues.items()}
    originals = ledger.lines_of_invoices(
        session, [inv.id for inv in closed], InvoiceLine.kind != "adjustment"
    )
    keys = {k for r in ratings.values() for k in r.charges}
    keys |= {ln.key for found in originals.values() for ln in found}
    adjustments: dict[str, list[PostedLine]] = defaultdict(list)
    for adj in ledger.adjustments_of(session, sorted(keys)):
        adjustments[adj.corrects].append(adj)
    periods, unratable = differences(closed, ratings, originals, adjustments)
    report = RerateReport(
        period=period,
        customer=customer,
        applied=apply,
        run_at=events_watermark(warehouse),
        periods_checked=len(closed),
        periods=periods,
        skipped=[*skipped, *unratable],
    )
    if not apply or not periods:
        return report
    return _post(session, report, [ratings[p.invoice_id] for p in periods])


def _post(session: Session, report: RerateReport, ratings: Sequence[PeriodRating]) -> RerateReport:
    """Post the differing periods' corrected charges under one new rating run."""
    run_at = report.run_at or EPOCH
    run_id = record_rating_run(
        session,
        period_start=min(r.due.period.start for r in ratings),
        period_end=max(r.due.period.end for r in ratings),
        run_at=run_at,
        code_version=CODE_VERSION,
        inputs_hash=inputs_hash(c for r in ratings for c in r.lines),
        note=f"audit rerate {report.period}"
        + (f" customer {report.customer}" if report.customer else ""),
        # It read the raw events, so it saw every event ingested up to its run_at.
        events_watermark=run_at,
    )
    posted = []
    for diff, rating in zip(report.periods, ratings, strict=True):
        result = post_adjustments(
            session,
            diff.subscription,
            rating.due.period,
            rating.lines,
            rerate=True,
            rating_run_id=run_id,
        )
        posted.append(
            PostedCorrection(
                corrected_invoice_id=diff.invoice_id,
                customer=diff.customer,
                carrier_invoice_id=result.invoice_id,
                carrier_period=(result.target_period.start, result.target_period.end),
                created=result.created,
                replaced=result.replaced,
                removed=result.removed,
                line_ids=sorted(result.lines.values()),
            )
        )
    return report.model_copy(update={"rating_run_id": run_id, "posted": posted})
