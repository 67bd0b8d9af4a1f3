"""What a statement shows, as typed values: its invoices, their lines, the tier table of
each tiered line (read from the line's typed rating result, rating.RatedCharge), and
the audit chain of a line (meterline.audit.explain). Pure.

Tier rules (docs/rating.md): graduated shows each tier's units and amount, volume the
one tier the period's total fell in, applied to every unit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from meterline.audit.explain.report import Explanation
from meterline.audit.facts import PostedLine
from meterline.audit.statement.chart import Chart
from meterline.audit.statement.periods import LocalPeriod, PeriodQuery
from meterline.audit.statement.text import money_text, quantity_text, working
from rating import PriceModel, RatedCharge
from rating.period import Proration

View = Literal["customer", "internal"]
VIEWS: tuple[View, ...] = ("customer", "internal")
DEFAULT_VIEW: View = "customer"


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


class StatementLine(PostedLine):
    """One invoice line as the statement shows it: the posted line, its meter's unit,
    its service period in the subscription's timezone, and its typed rating result
    (usage and flat lines), tier table (graduated and volume) and audit chain."""

    unit: str | None
    local_period: LocalPeriod
    charge: RatedCharge | None = None
    tiers: TierTable | None = None
    chain: Explanation | None = None
    """The line's audit chain (explain): every line's in the internal view; in the
    customer view only the gauge lines', whose levels draw the daily chart."""

    @property
    def item(self) -> str:
        """What the line charges for, in words (no internal id)."""
        group = f" ({self.group.replace('=', ': ')})" if self.group else ""
        if self.kind == "discount":
            return f"Discount on {self.price_id}{group}"
        if self.kind == "minimum_true_up":
            return "Minimum commitment true-up"
        if self.kind == "adjustment":
            return f"Correction to {self.price_id}{group} for {self.local_period.local_text}"
        return f"{self.price_id}{group}"

    @property
    def working(self) -> str:
        """The rating's arithmetic from the typed result; the ledger's description for
        lines without one (discounts, minimum true-ups, adjustments)."""
        if self.charge is None:
            return self.description
        proration = self.proration
        text = working(self.charge)
        return text if proration is None else f"{text}; {proration.explanation}"

    @property
    def proration(self) -> Proration | None:
        """How the line's fixed fee was prorated for a partial period (None: in full)."""
        doc = self.breakdown.get("proration") if isinstance(self.breakdown, Mapping) else None
        return Proration.from_doc(doc, self.currency) if isinstance(doc, Mapping) else None

    @property
    def unit_price(self) -> Decimal | None:
        """The one price every billable unit was charged at, when there is one."""
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
        if (proration := self.proration) is not None:
            out.append(proration.explanation)
        return out


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
