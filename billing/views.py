"""Read-only invoice views for people and tools: lists and details as JSON-able dicts."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing.customers import CustomersLoadResult
from billing.errors import NotFound
from billing.models import Customer, Invoice, InvoiceLine, Subscription
from billing.money import minor_text
from billing.tax import tax_view

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_bounds(period: str) -> tuple[date, date]:
    """First day of month YYYY-MM and first day of the next month."""
    match = _MONTH.match(period)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"period must be YYYY-MM, got {period!r}")
    year, month = int(match.group(1)), int(match.group(2))
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return date(year, month, 1), nxt


def _summary(inv: Invoice, customer: str, subscription: str) -> dict[str, Any]:
    cur = inv.currency
    return {
        "id": inv.id,
        "customer": customer,
        "subscription": subscription,
        "period_start": inv.period_start.isoformat(),
        "period_end": inv.period_end.isoformat(),
        "period_start_local": inv.period_start_local.isoformat(),
        "currency": cur,
        "status": inv.status,
        "subtotal": minor_text(inv.subtotal_minor, cur),
        "discounts": minor_text(inv.discount_minor, cur),
        "adjustments": minor_text(inv.adjustment_minor, cur),
        "total": minor_text(inv.total_minor, cur),
        "total_minor": inv.total_minor,
        "line_count": inv.line_count,
        "finalized_at": inv.finalized_at.isoformat() if inv.finalized_at else None,
        "voided_at": inv.voided_at.isoformat() if inv.voided_at else None,
        "reissue_of": inv.reissue_of_id,
    }


def totals_by_currency(invoices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Sum of totals per currency over non-void invoices (never mixing currencies)."""
    sums: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for inv in invoices:
        if inv["status"] != "void":
            sums[inv["currency"]] += inv["total_minor"]
            counts[inv["currency"]] += 1
    return {
        cur: {
            "invoices": counts[cur],
            "total": minor_text(sums[cur], cur),
            "total_minor": sums[cur],
        }
        for cur in sorted(sums)
    }


def list_invoices(
    session: Session,
    *,
    period: str | None = None,
    customer: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Invoices, optionally of the month YYYY-MM (by local period start) and/or of one
    customer (external id), oldest period first."""
    stmt = (
        select(Invoice, Customer.external_id, Subscription.external_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .order_by(Invoice.period_start_local, Customer.external_id, Invoice.id)
    )
    if period is not None:
        first, nxt = month_bounds(period)
        stmt = stmt.where(Invoice.period_start_local >= first, Invoice.period_start_local < nxt)
    if customer is not None:
        stmt = stmt.where(Customer.external_id == customer)
    if status is not None:
        stmt = stmt.where(Invoice.status == status)
    return [_summary(inv, cus, sub) for inv, cus, sub in session.execute(stmt)]


def tiers_of(breakdown: Any) -> list[Any]:
    """The tier entries of a line's rating breakdown, whichever shape it was stored in:
    a list of entries (rating's BreakdownEntry dumps, ``kind: tier``), or a mapping with
    a ``tiers`` list or a ``breakdown`` list."""
    if isinstance(breakdown, dict):
        if isinstance(breakdown.get("tiers"), list):
            return list(breakdown["tiers"])
        breakdown = breakdown.get("breakdown")
    if isinstance(breakdown, list):
        return [e for e in breakdown if isinstance(e, dict) and e.get("kind") == "tier"]
    return []


def _line(line: InvoiceLine) -> dict[str, Any]:
    breakdown = line.breakdown
    return {
        "id": line.id,
        "kind": line.kind,
        "description": line.description,
        "price_id": line.price_id,
        "price_version": line.price_version,
        "meter": line.meter,
        "group": line.dimension_group,
        "quantity": format(line.quantity, "f"),
        "unit_amount": None if line.unit_amount is None else format(line.unit_amount, "f"),
        "amount": minor_text(line.amount_minor, line.currency),
        "amount_minor": line.amount_minor,
        "amount_precise": format(line.amount_precise, "f"),
        "tiers": tiers_of(breakdown),
        "breakdown": breakdown,
        "service_period_start": line.service_period_start.isoformat(),
        "service_period_end": line.service_period_end.isoformat(),
        "idempotency_key": line.idempotency_key,
        "adjusts_line_id": line.adjusts_line_id,
        "rating_run_id": line.rating_run_id,
    }


def invoice_detail(session: Session, invoice_id: int) -> dict[str, Any]:
    """One invoice with its lines (and tier breakdowns) and its totals; ``credits`` is
    the credit lines' total (included in ``discounts``), and a credit line names its
    ``grant_id`` and the line it pays (``pays_line_id``)."""
    row = session.execute(
        select(Invoice, Customer.external_id, Subscription.external_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(Invoice.id == invoice_id)
        .options(selectinload(Invoice.lines))
    ).one_or_none()
    if row is None:
        raise NotFound(f"no invoice {invoice_id}")
    inv, cus, sub = row
    detail = _summary(inv, cus, sub)
    detail["lines"] = [_line(line) for line in inv.lines]
    # The credit lines' total: part of `discounts` (discount and credit lines, as
    # before), said apart so that a reader sees what the credit grants paid.
    credits = [line for line in inv.lines if line.kind == "credit"]
    detail["credits"] = minor_text(sum(line.amount_minor for line in credits), inv.currency)
    _name_paid_lines(detail["lines"], list(inv.lines))
    detail["reissued_by"] = session.scalars(
        select(Invoice.id).where(Invoice.reissue_of_id == inv.id)
    ).all()
    # Only for an invoice taxed through the tax sink (docs/tax.md): lines + tax.
    tax = tax_view(session, inv.id)
    if tax is not None:
        detail["tax"] = tax
    return detail


def _name_paid_lines(lines: list[dict[str, Any]], rows: list[InvoiceLine]) -> None:
    """Give each credit line the grant that paid (``grant_id``) and the id of the line
    it pays (``pays_line_id``: the invoice's line whose key it names, docs/credits.md;
    None when that line is not on the invoice)."""
    by_key = {row.idempotency_key: row.id for row in rows}
    for line, row in zip(lines, rows, strict=True):
        if row.kind == "credit":
            line["grant_id"] = row.credit_grant_id
            line["pays_line_id"] = by_key.get(row.pays_key or "")


def customers_load_text(result: CustomersLoadResult) -> str:
    """What a customers load did, in one sentence."""
    return (
        f"{result.rows:,} row(s): customers {result.customers_created:,} created,"
        f" {result.customers_updated:,} updated; subscriptions"
        f" {result.subscriptions_created:,} created, {result.subscriptions_updated:,} updated;"
        f" discounts replaced on {result.discounts_replaced:,} subscription(s)"
        + ("" if result.changed else " (nothing changed)")
    )
