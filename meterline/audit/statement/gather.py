"""The statement's I/O: read one customer's invoices of the period asked, their lines'
rating results and tier ladders, their audit chains (meterline.audit.explain) and
their daily usage, into the typed ``Statement``; and write the page.

One ledger session and one warehouse connection serve the whole statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing.errors import UnknownPriceVersion
from billing.models import Customer, Invoice, Plan, PriceVersion
from meterline.audit import ledger
from meterline.audit.explain import LineExplainer
from meterline.audit.facts import PostedLine
from meterline.audit.levels import GAUGES
from meterline.audit.statement.chart import DailyUsage, charts
from meterline.audit.statement.model import (
    DEFAULT_VIEW,
    VIEWS,
    Ladder,
    Statement,
    StatementInvoice,
    StatementLine,
    View,
    tier_table,
)
from meterline.audit.statement.periods import (
    LocalPeriod,
    PeriodQuery,
    StatementNotFound,
    not_found_message,
    parse_period,
)
from meterline.audit.statement.render import render
from meterline.audit.values import dims_of
from meterline.audit.warehouse import meter_rules
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.watermarks import as_utc
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.sql_files import query
from meters.warehouse.base import Warehouse
from rating import PriceModel, RatedCharge, parse_price


def write_statement(
    customer: str,
    period: str,
    out: Path,
    *,
    view: View = DEFAULT_VIEW,
    config: Settings | None = None,
) -> Path:
    """Write the statement of ``customer`` for ``period`` (YYYY-MM or YYYY-MM-DD, see
    parse_period) to ``out`` (HTML). Raises what statement_data raises, and OSError
    when ``out`` cannot be written."""
    page = render(statement_data(customer, period, view=view, config=config))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def statement_data(
    customer: str,
    period: str,
    *,
    view: View = DEFAULT_VIEW,
    config: Settings | None = None,
) -> Statement:
    """Everything the page shows, as typed values.

    Raises ValueError for a malformed ``period`` (parse_period) or view,
    StatementNotFound when the customer or its period does not exist,
    billing.errors.UnknownPriceVersion for a ledger whose catalog lacks the price
    version that rated a tiered line."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    asked = parse_period(period)
    config = config or settings()
    meters = meter_catalog(config)
    with ledger_session(config) as session:
        who = session.scalars(
            select(Customer).where(Customer.external_id == customer)
        ).one_or_none()
        if who is None:
            raise StatementNotFound(f"no customer {customer!r} in the ledger")
        invoices = _invoices(session, who, asked, meters)
        with open_warehouse(config) as warehouse:
            invoices = _with_chains(invoices, view, LineExplainer(session, warehouse, meters))
            invoices = [
                replace(inv, charts=charts(inv, meters, _daily_usage(warehouse, meters, who, inv)))
                for inv in invoices
            ]
        return Statement(who.external_id, who.name, who.currency, asked, view, tuple(invoices))


def _invoices(
    session: Session, who: Customer, asked: PeriodQuery, meters: MeterCatalog
) -> list[StatementInvoice]:
    """The customer's live invoices of the period asked (StatementNotFound, listing the
    periods it has, when there is none)."""
    found = session.scalars(
        select(Invoice)
        .where(Invoice.customer_id == who.id, Invoice.status != "void")
        .options(selectinload(Invoice.subscription))
        .order_by(Invoice.period_start, Invoice.id)
    ).all()
    periods = [
        LocalPeriod(as_utc(i.period_start), as_utc(i.period_end), i.subscription.timezone)
        for i in found
    ]
    chosen = [(i, p) for i, p in zip(found, periods, strict=True) if asked.matches(p)]
    if not chosen:
        raise StatementNotFound(not_found_message(who.external_id, asked, periods))
    lines = ledger.lines_of_invoices(session, [inv.id for inv, _ in chosen])
    plans = {
        p.id: p.name
        for p in session.scalars(
            select(Plan).where(Plan.id.in_({i.subscription.plan_id for i, _ in chosen}))
        )
    }
    return [
        StatementInvoice(
            id=inv.id,
            status=inv.status,
            subscription=inv.subscription.external_id,
            plan=plans.get(inv.subscription.plan_id, inv.subscription.plan_id),
            currency=inv.currency,
            period=local,
            subtotal_minor=inv.subtotal_minor,
            discount_minor=inv.discount_minor,
            adjustment_minor=inv.adjustment_minor,
            total_minor=inv.total_minor,
            lines=tuple(
                _line(session, ln, inv.subscription.plan_id, local.timezone, meters)
                for ln in lines[inv.id]
            ),
        )
        for inv, local in chosen
    ]


def _ladder(session: Session, plan: str, line: PostedLine, version: str) -> Ladder:
    """The tiers of the price version that rated a line, as (lower, upper, unit amount,
    flat amount)."""
    row = session.scalars(
        select(PriceVersion).where(
            PriceVersion.plan_id == plan,
            PriceVersion.currency == line.currency,
            PriceVersion.price_id == line.price_id,
            PriceVersion.version == version,
        )
    ).first()
    if row is None:
        raise UnknownPriceVersion(
            f"line {line.id}: price {line.price_id} version {version} ({line.currency}) is not"
            " in the ledger's catalog; run `meterline catalog load` with the catalog that"
            " priced it"
        )
    return parse_price({**row.body, "currency": line.currency}, name=line.price_id).ladder


def _charge(line: PostedLine) -> RatedCharge | None:
    """The line's typed rating result, as close stored it (usage and flat lines)."""
    doc = line.breakdown
    if line.kind not in ("usage", "flat") or not isinstance(doc, Mapping) or "model" not in doc:
        return None
    return RatedCharge.model_validate(doc)


def _line(
    session: Session, line: PostedLine, plan: str, tz: str, meters: MeterCatalog
) -> StatementLine:
    charge = _charge(line)
    tiers = None
    if charge is not None and charge.model in (PriceModel.GRADUATED, PriceModel.VOLUME):
        # The tier ranges of the version in effect at the period's end (the last window).
        last = charge.versions[-1] if charge.versions else line.price_version
        tiers = tier_table(charge, _ladder(session, plan, line, last))
    meter = meters.meters.get(line.meter) if line.meter else None
    return StatementLine(
        **dict(line),
        unit=meter.unit if meter is not None else None,
        local_period=LocalPeriod(line.service_start, line.service_end, tz),
        charge=charge,
        tiers=tiers,
    )


def _with_chains(
    invoices: Sequence[StatementInvoice], view: View, explainer: LineExplainer
) -> list[StatementInvoice]:
    """Attach the audit chain: every line's in the internal view; in the customer view
    only the gauge lines', whose levels draw the daily chart."""
    meters = explainer.meters.meters
    wanted = [
        ln.id
        for inv in invoices
        for ln in inv.lines
        if view == "internal"
        or (
            ln.kind == "usage"
            and ln.meter in meters
            and meters[ln.meter].aggregation.value in GAUGES
        )
    ]
    explainer.rate_periods_of(wanted)
    chains = {i: explainer.explain(i, samples=5, late_limit=20) for i in wanted}
    return [
        replace(
            inv,
            lines=tuple(ln.model_copy(update={"chain": chains.get(ln.id)}) for ln in inv.lines),
        )
        for inv in invoices
    ]


def _daily_usage(
    warehouse: Warehouse, meters: MeterCatalog, who: Customer, inv: StatementInvoice
) -> list[DailyUsage]:
    """The customer's raw usage per local day, meter and dimension group in the period."""
    rows = warehouse.query_rows(
        query("audit/daily_usage"),
        {
            "customer": who.external_id,
            "timezone": inv.period.timezone,
            "start": inv.period.start,
            "end": inv.period.end,
            "meters": sorted(meters.meters),
            **meter_rules(meters),
        },
    )
    return [
        DailyUsage(day, str(meter), dims_of(dims), int(events), Decimal(value_sum))
        for day, meter, dims, events, value_sum in rows
    ]
