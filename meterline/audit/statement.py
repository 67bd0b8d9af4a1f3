"""`meterline statement`: one customer's billing period(s) as a self-contained HTML page.

What a customer (or their account manager) asks about a usage invoice, on one page that
needs nothing else (inline CSS and SVG, no script, no web font, no image file):

- the invoices of the period asked, line by line, with their totals;
- the usage per local day (in the subscription's timezone) and meter, as a stacked bar
  chart per dimension group: events (or their values) for counter meters, the
  time-weighted level for gauges (a seat held half a day counts half);
- the tier table of each tiered price, read from the line's typed rating result
  (rating.result.RatedCharge): graduated shows each tier's units and amount, volume the
  one tier the period's total fell in, applied to every unit (docs/rating.md);
- in the internal view only, the audit chain of every line (`meterline audit explain`).

Two views (`--view`):

- ``customer`` (the default: a statement is made to be sent, so nothing internal leaks
  by accident): no ledger ids, subscription ids, price version hashes, idempotency keys
  or UTC instants; quantities with their meaningful decimals only (at most 3, marked
  "≈" when rounded for display; amounts are always exact).
- ``internal``: line and invoice ids, price versions, the period in UTC as well, the
  rating's own explanation, and each line's audit chain (re-rated from the raw events).

Periods are shown and looked up in the subscription's timezone. ``--period YYYY-MM``
selects the billing periods whose first local day falls in that month (an anchor-31
subscription's period 2026-10-31..2026-11-29 is "2026-10"); ``--period YYYY-MM-DD``
selects the period containing that local day. Nothing found raises StatementNotFound,
whose one-line message lists the periods the customer has.

Amounts render from typed values: ledger integers in minor units, and the rating's
Decimals, with the currency's ISO 4217 minor unit (JPY 0, USD 2, KWD 3), never cut.

`statement_data` gathers the facts (I/O) into typed values; `render` is pure: facts in,
HTML out, through the Jinja2 templates in meterline/audit/templates/statement/.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from billing.models import Customer, Invoice, InvoiceLine, Plan, PriceVersion
from billing.money import format_amount, from_minor
from billing.periods import local_midnight, zone
from meterline.audit.checks import dims_label, dims_of
from meterline.audit.gather import AuditError, explain_lines, ledger_session
from meterline.connections import meter_catalog, open_warehouse
from meterline.output import format_quantity
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.rollup import definition_params
from meters.sql_files import query
from rating import PriceModel, RatedCharge, parse_price

View = Literal["customer", "internal"]
VIEWS: tuple[View, ...] = ("customer", "internal")
DEFAULT_VIEW: View = "customer"

COLORS = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#84cc16")
GAUGES = ("time_weighted", "latest")
# The customer view shows a quantity to this many decimals at most ("≈" when rounded).
CUSTOMER_QUANTITY_PLACES = 3
# The not-found message lists this many of the customer's latest periods at most.
LISTED_PERIODS = 12


class StatementNotFound(AuditError):
    """No such customer, or no invoice of the customer for the period asked. The
    message lists the periods the customer has. Exit code 3 (not found)."""


# --- formatting (typed values in, text out) ----------------------------------------------


def money_text(value: Decimal, currency: str) -> str:
    """An amount in major units, exact, grouped, with at least the currency's ISO 4217
    minor-unit decimals (billing.money.format_amount): USD 3667.8 -> "3,667.80", KWD
    12.345 -> "12.345", JPY 3668 -> "3,668"; an unrounded tier amount or unit price
    keeps its digits (USD 0.0125): a line is rounded once, on its total."""
    return format_amount(value, currency)


def minor_text(minor: int, currency: str) -> str:
    """Integer minor units as grouped major-unit text: 366780 USD -> "3,667.80"."""
    return money_text(from_minor(minor, currency), currency)


def quantity_text(value: Decimal, places: int | None = None) -> str:
    """A quantity with its meaningful decimals, grouped (meterline.output.format_quantity):
    12226.000000000 -> "12,226", 1.500000000 -> "1.5". With ``places``, at most that
    many decimals, and "≈" in front when that rounded the value (10.333333333 ->
    "≈ 10.333")."""
    return format_quantity(value, places)


def plain_text(value: Decimal, places: int | None = None) -> str:
    """A quantity as plain machine-readable text (no grouping, no "≈"), for the page's
    data attributes: quantity_text's digits without its marks."""
    return quantity_text(value, places).removeprefix("≈ ").replace(",", "")


# --- periods ------------------------------------------------------------------------------

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class PeriodQuery:
    """What `--period` asks for: a month (periods whose first local day is in it) or a
    local day (the period containing it)."""

    text: str
    month: tuple[int, int] | None = None
    day: date | None = None

    def matches(self, period: LocalPeriod) -> bool:
        if self.month is not None:
            first = period.first_day
            return (first.year, first.month) == self.month
        assert self.day is not None
        return period.first_day <= self.day <= period.last_day

    def describe(self) -> str:
        if self.month is not None:
            return f"a billing period starting in {self.text}"
        return f"a billing period containing {self.text}"


def parse_period(text: str) -> PeriodQuery:
    """``YYYY-MM`` or ``YYYY-MM-DD`` as a PeriodQuery; anything else is a ValueError."""
    value = text.strip()
    match = _MONTH.match(value)
    if match and 1 <= int(match.group(2)) <= 12:
        return PeriodQuery(value, month=(int(match.group(1)), int(match.group(2))))
    if _DAY.match(value):
        try:
            return PeriodQuery(value, day=date.fromisoformat(value))
        except ValueError:
            pass
    raise ValueError(
        f"{text!r} is not a period: use YYYY-MM (the periods starting in that month, local"
        " time) or YYYY-MM-DD (the period containing that local day)"
    )


@dataclass(frozen=True)
class LocalPeriod:
    """A billing period [start, end) (UTC instants) seen in its subscription's timezone."""

    start: datetime
    end: datetime
    timezone: str

    @property
    def first_day(self) -> date:
        return self.start.astimezone(zone(self.timezone)).date()

    @property
    def last_day(self) -> date:
        """The last local day in the period (its end is the next day's local midnight)."""
        return (self.end - timedelta(microseconds=1)).astimezone(zone(self.timezone)).date()

    @property
    def label(self) -> str:
        """The month `--period` finds it by: the month of its first local day."""
        return f"{self.first_day:%Y-%m}"

    @property
    def local_text(self) -> str:
        return f"{self.first_day.isoformat()} to {self.last_day.isoformat()}"

    @property
    def utc_text(self) -> str:
        return f"{_utc(self.start)} to {_utc(self.end)}"

    def days(self) -> list[date]:
        first, last = self.first_day, self.last_day
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def not_found_message(customer: str, query: PeriodQuery, periods: Sequence[LocalPeriod]) -> str:
    """One line: what was not found, and the periods the customer does have."""
    if not periods:
        return f"customer {customer} has no invoice yet (nothing closed for it)"
    zones = sorted({p.timezone for p in periods})
    shown = list(periods)[-LISTED_PERIODS:]
    listed = ", ".join(f"{p.label} ({p.local_text})" for p in shown)
    earlier = len(periods) - len(shown)
    more = f" and {earlier} earlier" if earlier else ""
    return (
        f"customer {customer} has no invoice for {query.describe()} ({', '.join(zones)} time);"
        f" its periods: {listed}{more}"
    )


# --- typed facts --------------------------------------------------------------------------

Ladder = tuple[tuple[Decimal, Decimal | None, Decimal, Decimal], ...]


@dataclass(frozen=True)
class TierRow:
    """One tier of a tiered price, for one line: its range (units, lower exclusive except
    for tier 1, upper inclusive), the unit prices that applied (one per price version
    window that used the tier), the units priced in it and their precise amount."""

    tier: int
    lower: Decimal
    upper: Decimal | None
    unit_amounts: tuple[Decimal, ...]
    flat_amount: Decimal
    units: Decimal
    amount: Decimal
    applied: bool

    @property
    def filled(self) -> Decimal:
        """How much of the tier's range the period used, 0..1 (graduated)."""
        if self.upper is None:
            return Decimal(1) if self.units else Decimal(0)
        size = self.upper - self.lower
        return min(Decimal(1), self.units / size) if size else Decimal(0)


@dataclass(frozen=True)
class TierTable:
    """The tiers of one graduated or volume line, from its RatedCharge."""

    model: PriceModel
    currency: str
    quantity: Decimal
    free_units: Decimal
    billable: Decimal
    versions: tuple[str, ...]
    rows: tuple[TierRow, ...]
    minimum_adjustment: Decimal
    maximum_adjustment: Decimal
    amount_precise: Decimal
    amount: Decimal

    @property
    def applied_tiers(self) -> tuple[int, ...]:
        return tuple(r.tier for r in self.rows if r.applied)


def tier_table(charge: RatedCharge, ladder: Ladder) -> TierTable | None:
    """The tier table of a graduated or volume charge (None for other models).

    ``ladder`` is the price's tiers as (lower, upper, unit_amount, flat_amount), from the
    version in effect at the period's end; units and amounts come from the charge's
    breakdown entries only. Graduated: each tier holds the units that fell in it. Volume:
    the tier the period's total fell in holds every billable unit; the others none."""
    if charge.model not in (PriceModel.GRADUATED, PriceModel.VOLUME):
        return None
    units: dict[int, Decimal] = defaultdict(Decimal)
    amounts: dict[int, Decimal] = defaultdict(Decimal)
    flats: dict[int, Decimal] = defaultdict(Decimal)
    prices: dict[int, list[Decimal]] = defaultdict(list)
    for entry in charge.breakdown:
        if entry.kind != "tier" or entry.tier is None:
            continue
        units[entry.tier] += entry.units
        amounts[entry.tier] += entry.amount
        flats[entry.tier] += entry.flat_amount
        if entry.unit_amount not in prices[entry.tier]:
            prices[entry.tier].append(entry.unit_amount)
    rows = []
    for number, (lower, upper, unit_amount, flat_amount) in enumerate(ladder, start=1):
        applied = number in amounts
        rows.append(
            TierRow(
                tier=number,
                lower=lower,
                upper=upper,
                unit_amounts=tuple(prices[number]) if applied else (unit_amount,),
                flat_amount=flats[number] if applied else flat_amount,
                units=units[number],
                amount=amounts[number],
                applied=applied,
            )
        )
    return TierTable(
        model=charge.model,
        currency=charge.currency,
        quantity=charge.quantity,
        free_units=charge.free_units,
        billable=charge.billable_quantity,
        versions=charge.versions,
        rows=tuple(rows),
        minimum_adjustment=charge.minimum_adjustment,
        maximum_adjustment=charge.maximum_adjustment,
        amount_precise=charge.amount_precise,
        amount=charge.amount,
    )


def single_unit_amount(charge: RatedCharge) -> Decimal | None:
    """The one price per unit every billable unit was charged at (per unit, or the one
    volume tier), or None when no single price says it (graduated, package, flat,
    percentage, a flat fee, a price change inside the period)."""
    if charge.model not in (PriceModel.PER_UNIT, PriceModel.VOLUME):
        return None
    priced = [e for e in charge.breakdown if e.kind in ("unit", "tier")]
    found = {e.unit_amount for e in priced}
    if len(found) != 1 or any(e.flat_amount for e in priced):
        return None
    return found.pop()


def working(charge: RatedCharge) -> str:
    """How the charge's amount was reached, from its typed breakdown, for a person with a
    calculator: "12,226, volume: tier 2: 12,226 × 0.30 = 3,667.80 → 3,667.80"."""
    cur = charge.currency
    several = len(charge.versions) > 1
    parts = []
    for e in charge.breakdown:
        if e.kind in ("free", "minimum", "maximum"):
            continue
        if e.kind == "flat":
            text = f"flat {money_text(e.amount, cur)}"
        elif e.kind == "package":
            blocks = quantity_text(e.blocks if e.blocks is not None else Decimal(0))
            text = (
                f"{quantity_text(e.units)} units in {blocks} package(s)"
                f" × {money_text(e.unit_amount, cur)}"
            )
        elif e.kind == "percentage":
            text = f"{quantity_text(e.unit_amount.scaleb(2))}% of {money_text(e.units, cur)}"
        else:
            tier = f"tier {e.tier}: " if e.kind == "tier" else ""
            text = f"{tier}{quantity_text(e.units)} × {money_text(e.unit_amount, cur)}"
        if e.kind != "flat" and e.flat_amount:
            text += f" + flat {money_text(e.flat_amount, cur)}"
        if several and e.version:
            text = f"[{e.version}] {text}"
        parts.append(text)
    head = quantity_text(charge.quantity)
    if charge.free_units:
        head += f" ({quantity_text(charge.free_units)} free)"
    out = f"{head}, {charge.model}: {' + '.join(parts) or 'nothing to price'}"
    out += f" = {money_text(charge.subtotal_precise, cur)}"
    if charge.minimum_adjustment:
        out += f"; raised to the minimum by {money_text(charge.minimum_adjustment, cur)}"
    if charge.maximum_adjustment:
        out += f"; capped at the maximum by {money_text(-charge.maximum_adjustment, cur)}"
    return f"{out} → {money_text(charge.amount, cur)} ({charge.rounding.value.replace('_', '-')})"


@dataclass(frozen=True)
class StatementLine:
    """One invoice line, as the statement shows it."""

    id: int
    kind: str
    price_id: str
    price_version: str
    meter: str | None
    unit: str | None
    group: str | None
    quantity: Decimal
    amount_minor: int
    amount_precise: Decimal
    currency: str
    description: str
    service_period: LocalPeriod
    charge: RatedCharge | None = None
    tiers: TierTable | None = None
    chain: Mapping[str, Any] | None = None

    @property
    def item(self) -> str:
        """What the line charges for, in words (no internal id)."""
        group = f" ({self.group.replace('=', ': ')})" if self.group else ""
        if self.kind == "discount":
            return f"Discount on {self.price_id}{group}"
        if self.kind == "minimum_true_up":
            return "Minimum commitment true-up"
        if self.kind == "adjustment":
            return (
                f"Correction to {self.price_id}{group} for"
                f" {self.service_period.local_text}"
            )
        return f"{self.price_id}{group}"

    @property
    def working(self) -> str:
        """The rating's arithmetic from the typed result; the ledger's description for
        lines without one (discounts, minimum true-ups, adjustments)."""
        return working(self.charge) if self.charge is not None else self.description

    @property
    def unit_amount(self) -> Decimal | None:
        return single_unit_amount(self.charge) if self.charge is not None else None

    @property
    def notes(self) -> list[str]:
        """How the amount follows from the quantity, for a reader without the rating."""
        charge = self.charge
        if charge is None:
            return []
        out = []
        if charge.free_units:
            out.append(f"first {quantity_text(charge.free_units)} free")
        if self.tiers is not None:
            if charge.model is PriceModel.VOLUME and len(self.tiers.applied_tiers) == 1:
                out.append(
                    f"volume tier {self.tiers.applied_tiers[0]}: every unit at that tier's price"
                )
            elif charge.model is PriceModel.GRADUATED:
                out.append("graduated: each tier's units at its price (tiers below)")
        if charge.minimum_adjustment:
            out.append(
                f"raised to the minimum by {money_text(charge.minimum_adjustment, self.currency)}"
            )
        if charge.maximum_adjustment:
            out.append(
                f"capped at the maximum by {money_text(-charge.maximum_adjustment, self.currency)}"
            )
        return out


@dataclass(frozen=True)
class Chart:
    """Daily usage of one meter over one period, per dimension group."""

    meter: str
    unit: str
    measure: str
    aggregation: str
    billed: Decimal
    days: tuple[date, ...]
    bars: Mapping[date, Mapping[str, Decimal]]

    @property
    def groups(self) -> list[str]:
        return sorted({g for per_day in self.bars.values() for g in per_day})

    @property
    def totals(self) -> dict[date, Decimal]:
        return {d: sum(self.bars.get(d, {}).values(), Decimal(0)) for d in self.days}

    @property
    def top(self) -> Decimal:
        return max(self.totals.values(), default=Decimal(0))

    @property
    def total(self) -> Decimal:
        return sum(self.totals.values(), Decimal(0))

    def layout(self) -> dict[str, Any]:
        """SVG geometry: a stacked bar per local day, one colour per group, to scale."""
        width, height, left, bottom, top_pad = 760, 200, 56, 28, 12
        plot_h = height - bottom - top_pad
        top = self.top or Decimal(1)
        step = (width - left - 8) / max(len(self.days), 1)
        bar_w = max(step * 0.75, 1)
        groups = self.groups
        rects, labels = [], []
        for i, day in enumerate(self.days):
            x = left + i * step + (step - bar_w) / 2
            y = float(top_pad + plot_h)
            for g, group in enumerate(groups):
                value = self.bars.get(day, {}).get(group, Decimal(0))
                if not value:
                    continue
                h = float(value / top) * plot_h
                y -= h
                rects.append(
                    {
                        "x": f"{x:.2f}",
                        "y": f"{y:.2f}",
                        "w": f"{bar_w:.2f}",
                        "h": f"{h:.2f}",
                        "color": COLORS[g % len(COLORS)],
                        "day": day,
                        "group": group,
                        "value": value,
                    }
                )
            if i % 5 == 0 or i == len(self.days) - 1:
                labels.append({"x": f"{x + bar_w / 2:.2f}", "text": f"{day:%m-%d}"})
        return {
            "width": width,
            "height": height,
            "left": left,
            "top_pad": top_pad,
            "baseline": top_pad + plot_h,
            "rects": rects,
            "labels": labels,
            "legend": [(COLORS[g % len(COLORS)], group) for g, group in enumerate(groups)],
        }


@dataclass(frozen=True)
class StatementInvoice:
    id: int
    status: str
    subscription: str
    plan: str
    currency: str
    period: LocalPeriod
    subtotal_minor: int
    discount_minor: int
    adjustment_minor: int
    total_minor: int
    lines: tuple[StatementLine, ...]
    charts: tuple[Chart, ...] = ()

    @property
    def tier_lines(self) -> list[StatementLine]:
        return [ln for ln in self.lines if ln.tiers is not None]


@dataclass(frozen=True)
class Statement:
    customer_id: str
    customer_name: str
    currency: str
    asked: PeriodQuery
    view: View
    invoices: tuple[StatementInvoice, ...] = field(default=())


# --- facts (I/O) --------------------------------------------------------------------------


def _ladders(
    session: Any, plan: str, currency: str, price_id: str, versions: Iterable[str]
) -> dict[str, Ladder]:
    rows = session.scalars(
        select(PriceVersion).where(
            PriceVersion.plan_id == plan,
            PriceVersion.currency == currency,
            PriceVersion.price_id == price_id,
            PriceVersion.version.in_(sorted(set(versions))),
        )
    ).all()
    return {
        r.version: parse_price({**r.body, "currency": currency}, name=price_id).ladder
        for r in rows
    }


def _charge(line: InvoiceLine) -> RatedCharge | None:
    """The line's typed rating result, as close stored it (usage and flat lines)."""
    doc = line.breakdown
    if line.kind not in ("usage", "flat") or not isinstance(doc, Mapping) or "model" not in doc:
        return None
    return RatedCharge.model_validate(doc)


def _line(
    session: Any, line: InvoiceLine, plan: str, tz: str, meters: MeterCatalog
) -> StatementLine:
    charge = _charge(line)
    tiers = None
    if charge is not None and charge.model in (PriceModel.GRADUATED, PriceModel.VOLUME):
        # The tier ranges of the version in effect at the period's end (the last window).
        last = charge.versions[-1] if charge.versions else line.price_version
        ladder = _ladders(session, plan, line.currency, line.price_id, [last]).get(last)
        if ladder is None:
            raise AuditError(
                f"line {line.id}: price {line.price_id} version {last} ({line.currency}) is not"
                " in the ledger's catalog; run `meterline catalog load` with the catalog that"
                " priced it"
            )
        tiers = tier_table(charge, ladder)
    meter = meters.meters.get(line.meter) if line.meter else None
    return StatementLine(
        id=line.id,
        kind=line.kind,
        price_id=line.price_id,
        price_version=line.price_version,
        meter=line.meter,
        unit=meter.unit if meter is not None else None,
        group=line.dimension_group,
        quantity=line.quantity,
        amount_minor=line.amount_minor,
        amount_precise=line.amount_precise,
        currency=line.currency,
        description=line.description,
        service_period=LocalPeriod(
            _aware(line.service_period_start), _aware(line.service_period_end), tz
        ),
        charge=charge,
        tiers=tiers,
    )


def statement_data(
    customer: str,
    period: str,
    *,
    view: View = DEFAULT_VIEW,
    config: Settings | None = None,
) -> Statement:
    """Everything the page shows, as typed values.

    Raises ValueError for a malformed ``period`` (parse_period), StatementNotFound when
    the customer or its period does not exist, AuditError for a ledger that cannot say
    what a line's tiers were."""
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
        found = session.scalars(
            select(Invoice)
            .where(Invoice.customer_id == who.id, Invoice.status != "void")
            .options(selectinload(Invoice.lines), selectinload(Invoice.subscription))
            .order_by(Invoice.period_start, Invoice.id)
        ).all()
        periods = [
            LocalPeriod(_aware(i.period_start), _aware(i.period_end), i.subscription.timezone)
            for i in found
        ]
        chosen = [(i, p) for i, p in zip(found, periods, strict=True) if asked.matches(p)]
        if not chosen:
            raise StatementNotFound(not_found_message(customer, asked, periods))
        plans = {
            p.id: p.name
            for p in session.scalars(
                select(Plan).where(Plan.id.in_({i.subscription.plan_id for i, _ in chosen}))
            )
        }
        invoices = [
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
                    for ln in inv.lines
                ),
            )
            for inv, local in chosen
        ]
        name, currency = who.name, who.currency
    invoices = _with_chains(invoices, view, meters, config)
    invoices = _with_charts(customer, invoices, meters, config)
    return Statement(customer, name, currency, asked, view, tuple(invoices))


def _with_chains(
    invoices: Sequence[StatementInvoice], view: View, meters: MeterCatalog, config: Settings
) -> list[StatementInvoice]:
    """Attach the audit chain: every line's in the internal view; in the customer view
    only the gauge lines', whose levels draw the daily chart."""
    wanted = [
        ln.id
        for inv in invoices
        for ln in inv.lines
        if view == "internal"
        or (
            ln.kind == "usage"
            and ln.meter in meters.meters
            and meters.meters[ln.meter].aggregation.value in GAUGES
        )
    ]
    chains = {doc["line"]["id"]: doc for doc in explain_lines(wanted, config=config)}
    return [
        replace(inv, lines=tuple(replace(ln, chain=chains.get(ln.id)) for ln in inv.lines))
        for inv in invoices
    ]


def _with_charts(
    customer: str, invoices: Sequence[StatementInvoice], meters: MeterCatalog, config: Settings
) -> list[StatementInvoice]:
    params = definition_params(meters)
    usage: dict[int, list[tuple[Any, ...]]] = {}
    with open_warehouse(config) as warehouse:
        for inv in invoices:
            usage[inv.id] = warehouse.query_rows(
                query("audit/daily_usage"),
                {
                    "customer": customer,
                    "timezone": inv.period.timezone,
                    "start": inv.period.start,
                    "end": inv.period.end,
                    "meters": params["meters"],
                    "dimensions": params["dimensions"],
                    "filters": params["filters"],
                },
            )
    out = []
    for inv in invoices:
        tz, days = inv.period.timezone, inv.period.days()
        charts = []
        for name, meter in sorted(meters.meters.items()):
            usage_lines = [ln for ln in inv.lines if ln.meter == name and ln.kind == "usage"]
            billed = sum((ln.quantity for ln in usage_lines), Decimal(0))
            aggregation = meter.aggregation.value
            if aggregation in GAUGES:
                found = [
                    lv
                    for ln in usage_lines
                    for lv in ((ln.chain or {}).get("quantity") or {}).get("levels", [])
                ]
                bars = daily_levels(found, days, tz)
                measure = "average level held that day"
            else:
                bars = daily_counts(usage[inv.id], name, aggregation)
                measure = "events" if aggregation == "count" else "sum of values"
            if any(v for per_day in bars.values() for v in per_day.values()):
                charts.append(
                    Chart(name, meter.unit, measure, aggregation, billed, tuple(days), bars)
                )
        out.append(replace(inv, charts=tuple(charts)))
    return out


def daily_counts(
    rows: Iterable[tuple[Any, ...]], meter: str, aggregation: str
) -> dict[date, dict[str, Decimal]]:
    """Per local day and dimension group: events (count meters) or the sum of values."""
    out: dict[date, dict[str, Decimal]] = defaultdict(dict)
    for day, name, dims, events, value_sum in rows:
        if name != meter:
            continue
        value = Decimal(events) if aggregation in ("count", "unique_count") else Decimal(value_sum)
        out[day][dims_label(dims_of(dims))] = value
    return dict(out)


def daily_levels(
    levels: Sequence[Mapping[str, Any]], days: Sequence[date], tz: str
) -> dict[date, dict[str, Decimal]]:
    """Per local day and group: the time-weighted average of the levels held that day
    (a level held 12 of a day's 24 hours counts half; a 23-hour DST day is 23 hours)."""
    out: dict[date, dict[str, Decimal]] = {}
    for day in days:
        day_start, day_end = local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)
        day_ms = Decimal((day_end - day_start) // timedelta(milliseconds=1))
        per_group: dict[str, Decimal] = defaultdict(Decimal)
        for level in levels:
            start = max(datetime.fromisoformat(level["from"]), day_start)
            end = min(datetime.fromisoformat(level["to"]), day_end)
            if end > start:
                held = Decimal((end - start) // timedelta(milliseconds=1))
                per_group[level["group"]] += Decimal(level["value"]) * held / day_ms
        if per_group:
            out[day] = {g: v.quantize(Decimal("0.001")) for g, v in per_group.items()}
    return out


# --- page ---------------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("meterline.audit", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # The audit chain's documents carry numbers as exact decimal text.
    env.filters["money"] = lambda value, currency: money_text(Decimal(value), currency)
    env.filters["minor"] = minor_text
    env.filters["qty"] = lambda value, places=None: quantity_text(Decimal(value), places)
    env.filters["plain"] = lambda value, places=None: plain_text(Decimal(value), places)
    env.filters["percent"] = lambda value: f"{Decimal(value) * 100:.1f}"
    return env


def render(data: Statement) -> str:
    """The statement as one HTML document (pure)."""
    template = _environment().get_template("statement/page.html.j2")
    places = CUSTOMER_QUANTITY_PLACES if data.view == "customer" else None
    return template.render(s=data, internal=data.view == "internal", places=places)


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
