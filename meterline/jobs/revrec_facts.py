"""What revenue recognition reads (docs/revrec.md): the live invoices and lines, the credit
grants and their ledger entries, from the ledger; each usage line's quantity per local
day from the hourly rollup; and, for usage corrected after finalization, what each
rating run saw per day (the raw events, by ingest time). Nothing here writes; the rules
are billing.revrec's.

Days are local days in the customer's timezone. Lines of voided invoices are left out:
a voided invoice's re-issue replaces it (docs/revrec.md, "Voids").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from billing.models import (
    CreditGrant,
    CreditLedgerEntry,
    Customer,
    Invoice,
    InvoiceLine,
)
from billing.money import to_minor
from billing.revrec import GrantEntry, RevGrant, RevInvoice, RevLine
from billing.revrec.model import DAILY_AGGREGATIONS, local_day
from meterline.jobs.watermarks import Watermark, as_utc, run_watermarks
from meters.catalog import MeterCatalog
from meters.rollup import definition_params
from meters.sql_files import query
from meters.warehouse.base import Warehouse
from rating.period import matches_filter

# Usage of a day may reach a customer's local day from a UTC day before or after it.
_MARGIN = timedelta(days=1)

Dims = tuple[tuple[str, str], ...]
#: Credit ledger entries that move a grant's value other than by paying a line.
_MOVES: dict[str, Literal["expire", "void", "rollover"]] = {
    "expire": "expire",
    "void": "void",
    "rollover": "rollover",
}


@dataclass(frozen=True)
class CustomerInfo:
    external_id: str
    currency: str
    timezone: str


@dataclass
class RevrecFacts:
    """Everything the rules need for some customers: their live lines (usage lines with
    their usage days where they matter), invoices and credit grants."""

    customers: dict[str, CustomerInfo] = field(default_factory=dict)
    lines: list[RevLine] = field(default_factory=list)
    invoices: list[RevInvoice] = field(default_factory=list)
    grants: list[RevGrant] = field(default_factory=list)


def gather(
    session: Session,
    warehouse: Warehouse,
    meters: MeterCatalog,
    *,
    first: date,
    last: date,
    customer: str | None = None,
) -> RevrecFacts:
    """The facts of every customer (or one) for recognizing days `first`..`last`: all
    their live lines and grants (balances are cumulative), with usage days read for the
    lines whose service period reaches into those days (others are placed by their rule
    without them: their rows lie before the days asked for)."""
    facts = RevrecFacts(customers=_customers(session, customer))
    if not facts.customers:
        return facts
    aggregations = {name: m.aggregation.value for name, m in meters.meters.items()}
    facts.invoices, lines, meta = _lines(session, facts.customers, aggregations, customer)
    facts.grants = _grants(session, facts.customers, customer)
    start = datetime.combine(first, time(0), tzinfo=UTC) - _MARGIN
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC) + _MARGIN
    daily = [
        ln
        for ln in lines
        if ln.kind in ("usage", "adjustment")
        and ln.aggregation in DAILY_AGGREGATIONS
        and ln.service_start < end
        and ln.service_end > start
    ]
    usage = _daily_usage(warehouse, meters, [ln for ln in daily if ln.kind == "usage"], meta)
    seen = _seen_by_runs(session, warehouse, meters, daily, meta)
    facts.lines = [_with_days(ln, meta[ln.line_id], usage, seen) for ln in lines]
    return facts


def _customers(session: Session, customer: str | None) -> dict[str, CustomerInfo]:
    stmt = select(Customer.external_id, Customer.currency, Customer.timezone)
    if customer is not None:
        stmt = stmt.where(Customer.external_id == customer)
    return {str(c): CustomerInfo(str(c), str(cur), str(tz)) for c, cur, tz in session.execute(stmt)}


def _group_filter(group: str | None) -> dict[str, str]:
    """A line's dimension group ("channel=chat,region=eu") as its price's filter."""
    if not group:
        return {}
    return dict(part.split("=", 1) for part in group.split(",") if "=" in part)


@dataclass(frozen=True)
class _LineMeta:
    meter: str | None
    group: str | None
    rating_run_id: int | None
    finalized_at: datetime | None


def _lines(
    session: Session,
    customers: Mapping[str, CustomerInfo],
    aggregations: Mapping[str, str],
    customer: str | None,
) -> tuple[list[RevInvoice], list[RevLine], dict[int, _LineMeta]]:
    """The live invoices and their lines, by id; and what the usage reads need of each
    line (its meter, group, rating run and its invoice's finalization)."""
    stmt = (
        select(
            Invoice.id,
            Customer.external_id,
            Invoice.currency,
            Invoice.total_minor,
            Invoice.status,
            Invoice.finalized_at,
        )
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(Invoice.status != "void")
        .order_by(Invoice.id)
    )
    if customer is not None:
        stmt = stmt.where(Customer.external_id == customer)
    invoices: dict[int, RevInvoice] = {}
    finalized: dict[int, datetime | None] = {}
    for inv_id, who, currency, total, status, done in session.execute(stmt):
        tz = customers[str(who)].timezone
        at = as_utc(done) if status == "finalized" and done is not None else None
        finalized[inv_id] = at
        invoices[inv_id] = RevInvoice(
            inv_id, str(who), str(currency), int(total), local_day(at, tz) if at else None
        )
    grant = aliased(CreditGrant)
    line_stmt = (
        select(
            InvoiceLine.id,
            InvoiceLine.invoice_id,
            InvoiceLine.idempotency_key,
            InvoiceLine.kind,
            InvoiceLine.price_id,
            InvoiceLine.meter,
            InvoiceLine.dimension_group,
            InvoiceLine.quantity,
            InvoiceLine.amount_minor,
            InvoiceLine.service_period_start,
            InvoiceLine.service_period_end,
            InvoiceLine.adjusts_key,
            InvoiceLine.pays_key,
            InvoiceLine.credit_grant_id,
            grant.kind,
            InvoiceLine.rating_run_id,
        )
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .outerjoin(grant, grant.grant_id == InvoiceLine.credit_grant_id)
        .where(Invoice.status != "void")
        .order_by(InvoiceLine.id)
    )
    if customer is not None:
        line_stmt = line_stmt.where(Customer.external_id == customer)
    lines: list[RevLine] = []
    meta: dict[int, _LineMeta] = {}
    for row in session.execute(line_stmt):
        (lid, inv_id, key, kind, price, meter, group, qty, amount) = row[:9]
        (start, end, adjusts, pays, grant_id, grant_kind, run_id) = row[9:]
        inv = invoices[inv_id]
        lines.append(
            RevLine(
                line_id=lid,
                key=str(key),
                invoice_id=inv_id,
                customer=inv.customer,
                currency=inv.currency,
                timezone=customers[inv.customer].timezone,
                kind=str(kind),
                price_id=str(price),
                aggregation=aggregations.get(meter) if meter else None,
                amount_minor=int(amount),
                quantity=Decimal(qty),
                service_start=as_utc(start),
                service_end=as_utc(end),
                billed_on=inv.billed_on,
                adjusts_key=adjusts,
                pays_key=pays,
                grant_id=grant_id,
                grant_kind=grant_kind,
            )
        )
        meta[lid] = _LineMeta(meter, group, run_id, finalized[inv_id])
    return list(invoices.values()), lines, meta


def _grants(
    session: Session, customers: Mapping[str, CustomerInfo], customer: str | None
) -> list[RevGrant]:
    """The customers' grants with their expire, void and rollover entries, and the
    balance their credit ledger holds now (its latest entry's)."""
    source = aliased(CreditGrant)
    stmt = (
        select(CreditGrant, Customer.external_id, source.grant_id)
        .join(Customer, Customer.id == CreditGrant.customer_id)
        .outerjoin(source, source.id == CreditGrant.rolled_over_from_id)
        .order_by(CreditGrant.id)
    )
    if customer is not None:
        stmt = stmt.where(Customer.external_id == customer)
    found = session.execute(stmt).all()
    ids = [g.id for g, _, _ in found]
    entries: dict[int, list[GrantEntry]] = defaultdict(list)
    remaining: dict[int, Decimal] = {}
    if ids:
        rows = session.execute(
            select(
                CreditLedgerEntry.grant_id,
                CreditLedgerEntry.kind,
                CreditLedgerEntry.amount,
                CreditLedgerEntry.effective_at,
                CreditLedgerEntry.idempotency_key,
                CreditLedgerEntry.available_after,
            )
            .where(CreditLedgerEntry.grant_id.in_(ids))
            .order_by(CreditLedgerEntry.id)
        )
        for gid, kind, amount, at, key, after in rows:
            remaining[gid] = Decimal(after)
            move = _MOVES.get(str(kind))
            if move is not None:
                entries[gid].append(GrantEntry(str(key), move, Decimal(amount), as_utc(at)))
    out = []
    for g, who, source_id in found:
        out.append(
            RevGrant(
                grant_id=g.grant_id,
                customer=str(who),
                currency=g.currency,
                timezone=customers[str(who)].timezone,
                kind=g.kind,
                granted=Decimal(g.amount),
                price_paid_minor=(
                    to_minor(g.price_paid, g.currency) if g.price_paid is not None else None
                ),
                effective_from=as_utc(g.effective_from),
                rolled_over_from=source_id,
                entries=tuple(entries.get(g.id, ())),
                remaining=remaining.get(g.id),
            )
        )
    return out


# --- usage days ---------------------------------------------------------------------

UsageByDay = dict[tuple[str, str], dict[Dims, dict[date, Decimal]]]


def _quantity(aggregation: str | None, events: Any, value_sum: Any) -> Decimal:
    return Decimal(int(events)) if aggregation == "count" else Decimal(value_sum)


def _daily_usage(
    warehouse: Warehouse,
    meters: MeterCatalog,
    lines: Sequence[RevLine],
    meta: Mapping[int, _LineMeta],
) -> UsageByDay:
    """Per (customer, meter): per dimension group and local day, the quantity, read from
    the hourly rollup over the lines' service periods (one query per timezone)."""
    out: UsageByDay = defaultdict(lambda: defaultdict(lambda: defaultdict(Decimal)))
    by_zone: dict[str, list[RevLine]] = defaultdict(list)
    for line in lines:
        if meta[line.line_id].meter in meters.meters:
            by_zone[line.timezone].append(line)
    for tz, group in sorted(by_zone.items()):
        rows = warehouse.query_rows(
            query("revrec/daily_usage"),
            {
                "timezone": tz,
                "start": min(ln.service_start for ln in group),
                "end": max(ln.service_end for ln in group),
                "meters": sorted({str(meta[ln.line_id].meter) for ln in group}),
                "customer_ids": sorted({ln.customer for ln in group}),
            },
        )
        for who, meter, dims, day, events, value_sum in rows:
            agg = meters.meters[str(meter)].aggregation.value
            key = tuple(sorted(dict(dims).items()))
            out[(str(who), str(meter))][key][day] += _quantity(agg, events, value_sum)
    return out


def _for_line(
    line: RevLine, group: str | None, found: Mapping[Dims, Mapping[date, Decimal]]
) -> dict[date, Decimal]:
    """The quantity per day, over the line's days, of the dimension groups (of its
    meter: `found`) its price counts."""
    price_filter = _group_filter(group)
    days = set(line.days)
    out: dict[date, Decimal] = defaultdict(Decimal)
    for dims, per_day in found.items():
        if matches_filter(dims, price_filter):
            for day, qty in per_day.items():
                if day in days:
                    out[day] += qty
    return dict(out)


def _seen_by_runs(
    session: Session,
    warehouse: Warehouse,
    meters: MeterCatalog,
    lines: Sequence[RevLine],
    meta: Mapping[int, _LineMeta],
) -> dict[int, dict[date, Decimal]]:
    """For each usage line corrected by adjustments, and each of those adjustments: the
    quantity per day of the events it accounts for. The corrected line: what its run saw;
    an adjustment: what its run saw beyond the run before it in the chain (the late
    usage it bills). Lines without a recorded run are left out (they follow the line
    they correct)."""
    by_key = {ln.key: ln for ln in lines if ln.kind == "usage"}
    chains: dict[str, list[RevLine]] = defaultdict(list)
    for line in lines:
        if line.kind == "adjustment" and line.grant_id is None and line.adjusts_key in by_key:
            chains[line.adjusts_key].append(line)
    if not chains:
        return {}
    windows: list[tuple[int, RevLine, Watermark]] = []
    runs = run_watermarks(
        session,
        [
            r
            for key, adjs in chains.items()
            for ln in (by_key[key], *adjs)
            if (r := meta[ln.line_id].rating_run_id) is not None
        ],
    )
    order: dict[str, list[int]] = {}
    for key, adjs in chains.items():
        chain = [by_key[key], *sorted(adjs, key=lambda a: a.line_id)]
        marks = [_seen_mark(meta[ln.line_id], runs) for ln in chain]
        if any(m is None for m in marks):
            continue
        order[key] = [ln.line_id for ln in chain]
        windows += [(ln.line_id, by_key[key], m) for ln, m in zip(chain, marks, strict=True) if m]
    if not windows:
        return {}
    stale = sorted({m for _, _, m in windows if m.stale}, key=lambda m: sorted(m.stale.items()))
    index = {mark: i + 1 for i, mark in enumerate(stale)}
    params = definition_params(meters)
    rows = warehouse.query_rows(
        query("revrec/seen_by_hour"),
        {
            "windows": [
                (wid, ln.customer, ln.service_start, ln.service_end, m.events, index.get(m, 0))
                for wid, ln, m in windows
            ],
            "stale": [dict(m.stale) for m in stale],
            "customer_ids": sorted({ln.customer for _, ln, _ in windows}),
            "start": min(ln.service_start for _, ln, _ in windows),
            "end": max(ln.service_end for _, ln, _ in windows),
            "meters": params["meters"],
            "dimensions": params["dimensions"],
            "filters": params["filters"],
        },
    )
    corrected = {wid: ln for wid, ln, _ in windows}
    seen: dict[int, dict[Dims, dict[date, Decimal]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(Decimal))
    )
    for wid, meter, dims, hour, events, value_sum in rows:
        line = corrected[int(wid)]
        if str(meter) != meta[line.line_id].meter:
            continue
        day = local_day(as_utc(hour), line.timezone)
        group = tuple(sorted(dict(dims).items()))
        seen[int(wid)][group][day] += _quantity(line.aggregation, events, value_sum)
    out: dict[int, dict[date, Decimal]] = {}
    for key, chain_ids in order.items():
        line = by_key[key]
        m = meta[line.line_id]
        per_run = [_for_line(line, m.group, seen.get(i, {})) for i in chain_ids]
        out[chain_ids[0]] = per_run[0]
        for i in range(1, len(chain_ids)):
            days = set(per_run[i]) | set(per_run[i - 1])
            out[chain_ids[i]] = {
                d: per_run[i].get(d, Decimal(0)) - per_run[i - 1].get(d, Decimal(0)) for d in days
            }
    return out


def _seen_mark(meta: _LineMeta, runs: Mapping[int, Watermark]) -> Watermark | None:
    if meta.rating_run_id is not None and meta.rating_run_id in runs:
        return runs[meta.rating_run_id]
    return Watermark(meta.finalized_at) if meta.finalized_at is not None else None


def _with_days(
    line: RevLine,
    meta: _LineMeta,
    usage: UsageByDay,
    seen: Mapping[int, Mapping[date, Decimal]],
) -> RevLine:
    """The line with its usage days: what its run saw for a line that was corrected, and
    for an adjustment the late usage behind it; the rollup's days for other usage lines
    of sum and count meters; none for the rest."""
    if line.line_id in seen:
        return replace(line, daily=dict(seen[line.line_id]))
    if line.kind == "usage" and line.aggregation in DAILY_AGGREGATIONS and meta.meter:
        found = usage.get((line.customer, meta.meter))
        if found is not None:
            return replace(line, daily=_for_line(line, meta.group, found))
    return line


def lines_billed_in(invoices: Iterable[RevInvoice], first: date, last: date) -> list[RevInvoice]:
    """The invoices finalized on days `first`..`last`."""
    return [i for i in invoices if i.billed_on is not None and first <= i.billed_on <= last]
