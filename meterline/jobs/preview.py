"""The invoice each of a customer's current billing periods would be finalized with if no
more usage arrived: what `meterline preview` and the HTTP service's preview endpoint run
(docs/usage-preview.md).

The whole current period is rated as close rates it (meterline.jobs.rate.rate_periods:
fixed fees, usage, proration, plan changes, price versions, discounts, the minimum
true-up), over the live quantities of meterline/jobs/usage.py capped at the instant asked
(events timestamped before it; a gauge holds its last level to the period's end), with
the customer's credit grants drawn down as close draws them (billing/credits/available.py:
the grants as they stand at the period's end, less what earlier unfinalized periods take:
those periods are rated first, in time order, as one close would). Lines carry the keys
close posts them under (billing.charges.line_key), and the adjustment lines a close has
already put on the period's draft (corrections of earlier periods) are part of it.

Invariant (tests/meterline/test_usage_preview.py): as of a period's end, with no late
events, the preview equals the invoice close finalizes for it, line for line.

Not foreseen: late usage of earlier finalized periods (the close that finalizes this one
would adjust it onto this invoice), and periods of another subscription that start
earlier but end later than this one and draw on the same grants (close draws them in the
order periods end, the preview in the order they start).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.charges import REDUCTION_KINDS, SUBTOTAL_KINDS, ChargeLine
from billing.credits.available import CreditBook
from billing.models import Invoice, InvoiceLine
from billing.money import from_minor
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.due import Due, billable_periods
from meterline.jobs.rate import PeriodRating, rate_periods, read_pricebook
from meterline.jobs.usage import (
    CustomerRows,
    LiveQuantities,
    Standing,
    Status,
    computed_through,
    read_customer,
    read_cut,
)
from meterline.jobs.watermarks import as_utc
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.warehouse.base import Warehouse

__all__ = [
    "CustomerPreview",
    "InvoicePreview",
    "PreviewLine",
    "customer_preview",
    "preview_of",
]

LineKind = Literal["usage", "flat", "discount", "minimum_true_up", "credit", "adjustment"]


class PreviewLine(BaseModel):
    """One line of the previewed invoice, as close would post it: its idempotency `key`
    (billing.charges.line_key), kind, price, quantity, amount (major units, rounded once)
    and amount in minor units; a credit line's grant and the key of the line it pays."""

    model_config = ConfigDict(frozen=True)

    key: str
    kind: LineKind
    price_id: str
    price_version: str
    group: str | None
    meter: str | None
    quantity: Decimal
    unit_amount: Decimal | None
    amount: Decimal
    amount_minor: int
    amount_precise: Decimal
    currency: str
    description: str
    grant_id: str | None = None


class InvoicePreview(BaseModel):
    """The invoice one subscription's current period would be finalized with: its lines
    and totals as the ledger counts them (subtotal: usage, flat and minimum true-up lines;
    discounts: discount and credit lines; adjustments; total: every line), in major and
    minor units. No lines for a subscription with no current period (`status`), or whose
    period cannot be rated (`error`, as close says it)."""

    model_config = ConfigDict(frozen=True)

    subscription: str
    plan: str
    currency: str
    timezone: str
    status: Status
    period_start: datetime | None = None
    period_end: datetime | None = None
    starts_at: datetime | None = None
    ended_at: datetime | None = None
    lines: tuple[PreviewLine, ...] = ()
    subtotal: Decimal = Decimal(0)
    discounts: Decimal = Decimal(0)
    adjustments: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    subtotal_minor: int = 0
    discount_minor: int = 0
    adjustment_minor: int = 0
    total_minor: int = 0
    error: str | None = None


class CustomerPreview(BaseModel):
    """The invoices a customer's current periods would end with, as of `as_of` (usage
    counted as meterline.jobs.usage.CustomerUsage counts it: `computed_through`,
    `rolled_up_through`, `raw_days`)."""

    model_config = ConfigDict(frozen=True)

    customer: str
    as_of: datetime
    computed_through: datetime | None
    rolled_up_through: datetime
    raw_days: tuple[date, ...]
    invoices: tuple[InvoicePreview, ...]

    @property
    def ok(self) -> bool:
        """Whether every current period could be rated."""
        return all(i.error is None for i in self.invoices)


def customer_preview(
    customer: str, as_of: datetime, *, config: Settings | None = None
) -> CustomerPreview:
    """The preview as of `as_of` (module docstring), opening the ledger (read only) and
    the warehouse. Raises UnknownCustomer (exit code 3), ValueError for a naive `as_of`."""
    config = config or settings()
    meters = meter_catalog(config)
    with ledger_session(config) as session, open_warehouse(config) as warehouse:
        return preview_of(session, warehouse, meters, customer, as_of, config=config)


def preview_of(
    session: Session,
    warehouse: Warehouse,
    meters: MeterCatalog,
    customer: str,
    as_of: datetime,
    *,
    config: Settings | None = None,
) -> CustomerPreview:
    """The preview on an open ledger session and warehouse (the HTTP service keeps them
    open; `meters`: the loaded catalog's). Reads only the customer's rows: its
    subscriptions, invoices of them, grants. Raises UnknownCustomer, ValueError."""
    config = config or settings()
    rows = read_customer(session, customer, as_of)
    as_of = as_of.astimezone(UTC)
    current = {
        s.subscription.id: Due(s.subscription, customer, s.period)
        for s in rows.standings
        if s.period is not None
    }
    # Only with a current period to preview are the earlier ones rated (for its credits).
    earlier = (
        _unfinalized_before(session, rows, as_of, config, set(current.values())) if current else []
    )
    due = [*earlier, *current.values()]
    cut = read_cut(warehouse, meters, customer, [d.period for d in due], as_of, config)
    ratings: dict[Due, PeriodRating] = {}
    drafts: dict[int, list[PreviewLine]] = {}
    if due:
        pricebook = read_pricebook(session, meters, subscription_ids=rows.subscription_ids)
        credits = CreditBook.read(session, [customer])
        ratings = rate_periods(pricebook, due, LiveQuantities(warehouse, meters, cut), credits)
        drafts = _draft_adjustments(session, list(current.values()))
    return CustomerPreview(
        customer=customer,
        as_of=as_of,
        computed_through=computed_through(cut, as_of),
        rolled_up_through=cut.rolled_up_through,
        raw_days=cut.raw_days,
        invoices=tuple(
            _invoice(
                s,
                ratings.get(current[s.subscription.id]) if s.period else None,
                drafts.get(s.subscription.id, []),
            )
            for s in rows.standings
        ),
    )


def _unfinalized_before(
    session: Session, rows: CustomerRows, as_of: datetime, config: Settings, current: set[Due]
) -> list[Due]:
    """The customer's billable periods that ended by `as_of` without a finalized invoice:
    the periods close rates before the current ones (they draw on the same grants)."""
    ids = rows.subscription_ids
    if not ids:
        return []
    finalized = {
        (sid, as_utc(start))
        for sid, start in session.execute(
            select(Invoice.subscription_id, Invoice.period_start).where(
                Invoice.subscription_id.in_(ids), Invoice.status == "finalized"
            )
        )
    }
    grace = timedelta(hours=config.finalize_grace_hours)
    out = []
    for standing in rows.standings:
        sub = standing.subscription
        for period in billable_periods(sub, as_of + grace, config):
            item = Due(sub, rows.customer, period)
            if (sub.id, period.start) not in finalized and item not in current:
                out.append(item)
    return out


def _draft_adjustments(session: Session, current: list[Due]) -> dict[int, list[PreviewLine]]:
    """The adjustment lines already on the draft invoice of each current period (a close
    put corrections of earlier periods there), per subscription id."""
    out: dict[int, list[PreviewLine]] = defaultdict(list)
    if not current:
        return out
    starts = {d.subscription.id: d.period.start for d in current}
    found = session.execute(
        select(InvoiceLine, Invoice.subscription_id, Invoice.period_start)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(
            Invoice.subscription_id.in_(sorted(starts)),
            Invoice.status == "draft",
            InvoiceLine.kind == "adjustment",
        )
        .order_by(InvoiceLine.id)
    ).all()
    for line, sid, start in found:
        if as_utc(start) != starts[sid]:
            continue
        out[sid].append(
            PreviewLine(
                key=line.idempotency_key,
                kind="adjustment",
                price_id=line.price_id,
                price_version=line.price_version,
                group=line.dimension_group,
                meter=line.meter,
                quantity=line.quantity,
                unit_amount=line.unit_amount,
                amount=from_minor(line.amount_minor, line.currency),
                amount_minor=line.amount_minor,
                amount_precise=line.amount_precise,
                currency=line.currency,
                description=line.description,
                grant_id=line.credit_grant_id,
            )
        )
    return out


def _line(key: str, line: ChargeLine) -> PreviewLine:
    return PreviewLine(
        key=key,
        kind=line.kind,
        price_id=line.price_id,
        price_version=line.price_version,
        group=line.group,
        meter=line.meter,
        quantity=line.quantity,
        unit_amount=line.unit_amount,
        amount=line.amount,
        amount_minor=line.amount_minor,
        amount_precise=line.amount_precise,
        currency=line.currency,
        description=line.description,
        grant_id=line.grant_id,
    )


def _invoice(
    standing: Standing, rating: PeriodRating | None, adjustments: list[PreviewLine]
) -> InvoicePreview:
    sub = standing.subscription
    head = InvoicePreview(
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
    lines = [_line(key, line) for key, line in rating.charges.items()] + adjustments

    def total(kinds: tuple[str, ...] | None) -> int:
        return sum(ln.amount_minor for ln in lines if kinds is None or ln.kind in kinds)

    subtotal, discount = total(SUBTOTAL_KINDS), total(REDUCTION_KINDS)
    adjustment, whole = total(("adjustment",)), total(None)
    currency = sub.currency
    return head.model_copy(
        update={
            "period_start": standing.period.start,
            "period_end": standing.period.end,
            "lines": tuple(lines),
            "subtotal": from_minor(subtotal, currency),
            "discounts": from_minor(discount, currency),
            "adjustments": from_minor(adjustment, currency),
            "total": from_minor(whole, currency),
            "subtotal_minor": subtotal,
            "discount_minor": discount,
            "adjustment_minor": adjustment,
            "total_minor": whole,
            "error": rating.error,
        }
    )
