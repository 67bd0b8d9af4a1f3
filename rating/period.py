"""Rate one subscription's billing period: price versions + quantities -> rated lines.

Pure (no I/O, no clock). The caller gathers the inputs: the plan's price versions
(billing/pricebook.py reads them from the ledger), the billable quantities (the close
job reads them from the warehouse); billing/charges.py maps each rated line to the
ledger line it posts as.

Business rules:
- Every price of the plan is rated every period, even with no usage, so a first-tier
  flat fee or a minimum is never skipped (docs/rating.md); a line of 0 says "nothing
  used" explicitly.
- A price targets one group of its meter with `filter` (seats of one seat_type); its
  quantity is the sum over the meter's dimension groups that match the filter.
- A price that changes inside the period is rated per version window: the window
  quantities of an additive meter (sum, count, time_weighted) come from the warehouse
  per window; for max, latest and unique_count the whole period's quantity is rated at
  the version in effect at the period's end (they cannot be split in time).
- Time-weighted quantities are normalized to the full billing cycle, so a partial
  first or last period is prorated by the quantity itself.
- A fixed fee (a flat price, or a price on a `latest` meter: seats held, billed per
  seat) is prorated for a partial first or last period by the share of the billing
  cycle's elapsed time the period covers (`prorated`), unless its price says
  `proration: full`. Usage prices, and time-weighted ones (prorated by their quantity
  already), never are, so nothing is prorated twice.
- Discounts apply to the rounded line of their price (docs/rating.md: minimum, maximum,
  then round, then discount); the plan's minimum commitment trues up the period's
  usage and flat lines (after discounts) when they total less.
- Credit grants pay the usage lines after their discounts (rating/credits.py, the
  drawdown: `apply_credits`), each payment a negative `credit` line; the minimum
  true-up compares the lines before credits (docs/rating.md, "Credits").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Literal

from rating.credits import Consumption, Grant, creditable_lines, draw_down
from rating.decimals import EXACT_PRECISION, fmt, plain
from rating.discounts import Discount, DiscountResult, apply_discount, minimum_commitment_true_up
from rating.engine import rate, rate_windows
from rating.money import ROUNDING, Money, RoundingMode, round_money
from rating.price import Price
from rating.result import RatedCharge

ADDITIVE = frozenset({"sum", "count", "time_weighted"})
#: Aggregations whose price is a fixed fee of the cycle: the level held (seats reported as
#: a `latest` gauge, billed per seat as a licence), not usage. Not time_weighted: its
#: quantity is already divided by the whole cycle's length (meters/quantities.py), which
#: prorates it. Not max or the counters: they measure usage in the period itself.
FIXED_FEE_AGGREGATIONS = frozenset({"latest"})
MINIMUM_PRICE_ID = "minimum_commitment"
MINIMUM_VERSION = "plan"

LineKind = Literal["usage", "flat", "discount", "minimum_true_up", "credit"]


@dataclass(frozen=True)
class PriceVersionSpec:
    label: str
    starts: datetime  # the instant the version takes effect (local midnight, in UTC)
    price: Price


@dataclass(frozen=True)
class PriceSpec:
    """One price of a plan in one currency, with its versions in time order."""

    price_id: str
    meter: str | None
    filter: Mapping[str, str]
    versions: Sequence[PriceVersionSpec]
    aggregation: str | None = None  # the meter's aggregation; None for a flat fee

    def in_effect(self, instant: datetime) -> PriceVersionSpec | None:
        current = None
        for version in self.versions:
            if version.starts <= instant:
                current = version
        return current

    @property
    def fixed_fee(self) -> bool:
        """Whether the price is a fixed fee of the billing cycle (prorated for a partial
        period): a flat price (no meter), or a price on a FIXED_FEE_AGGREGATIONS meter."""
        return self.meter is None or self.aggregation in FIXED_FEE_AGGREGATIONS

    @property
    def group(self) -> str | None:
        """The dimension group the price targets, as line keys spell it
        ("seat_type=advanced"); None for a price on the whole meter."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.filter.items())) or None


@dataclass(frozen=True)
class VersionWindow:
    """The part [start, end) of a period in which one version of a price is in effect."""

    label: str
    price: Price
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class CreditPayment:
    """How a credit line came about: the drawdown's consumption (the grant, the line it
    pays, the amount, the units taken from the grant) and the grant's unit (its currency,
    or its meter for a grant of units)."""

    consumption: Consumption
    unit: str

    def doc(self) -> dict[str, str]:
        return self.consumption.doc(self.unit)

    @property
    def explanation(self) -> str:
        c = self.consumption
        paid = f"{fmt(-c.amount, grouping=True)} {c.currency}"
        if self.unit == c.currency:
            return f"credit grant {c.grant_id} pays {paid} of {c.price_id}"
        return (
            f"credit grant {c.grant_id} pays {fmt(c.units, grouping=True)} {self.unit}"
            f" ({paid}) of {c.price_id}"
        )


@dataclass(frozen=True, slots=True)
class MinimumTrueUp:
    """How a plan's minimum commitment trued up a period: the commitment, the total of
    the lines it covers, and the difference charged."""

    commitment: Money
    lines_total: Money
    true_up: Money

    @property
    def explanation(self) -> str:
        currency = self.commitment.currency
        return (
            f"minimum commitment {self.commitment.amount} {currency}: lines total "
            f"{self.lines_total.amount}, true-up {self.true_up.amount}"
        )


# The share's exact quotient is computed with room for every digit an amount can have,
# then the prorated precise amount is kept to 12 decimal places (the catalog's amounts
# have at most 12), half-even; the line is rounded once from it.
_SHARE_CONTEXT = Context(prec=EXACT_PRECISION + 10)
PRORATED_QUANTUM = Decimal("1e-12")


@dataclass(frozen=True, slots=True)
class Proration:
    """How a fixed fee was prorated for a partial period: the period covers
    `billed_seconds` of its billing cycle's `cycle_seconds`; `full_amount_precise` is the
    price's charge for the whole cycle (the RatedCharge's amount_precise); the line's
    precise amount is full x billed / cycle (12 decimal places), its amount that rounded
    once."""

    billed_seconds: int
    cycle_seconds: int
    full_amount_precise: Decimal
    amount_precise: Decimal
    amount: Decimal
    currency: str

    @property
    def share(self) -> Decimal:
        """billed / cycle to 12 decimal places (informational: the amount is computed from
        the exact quotient)."""
        quotient = _SHARE_CONTEXT.divide(Decimal(self.billed_seconds), Decimal(self.cycle_seconds))
        return plain(quotient.quantize(PRORATED_QUANTUM, context=_SHARE_CONTEXT))

    @property
    def explanation(self) -> str:
        """One line checkable with a calculator: "prorated for 144 h of the billing
        cycle's 744 h: 10000 × 144/744 = 1935.483870967742 → JPY 1,935"."""
        billed, whole = _duration(self.billed_seconds), _duration(self.cycle_seconds)
        ratio = (
            f"{self.billed_seconds // 3600}/{self.cycle_seconds // 3600}"
            if not (self.billed_seconds % 3600 or self.cycle_seconds % 3600)
            else f"{self.billed_seconds}/{self.cycle_seconds}"
        )
        return (
            f"prorated for {billed} of the billing cycle's {whole}:"
            f" {fmt(self.full_amount_precise)} × {ratio} = {fmt(self.amount_precise)}"
            f" → {self.currency} {fmt(self.amount, grouping=True)}"
        )

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], currency: str) -> Proration:
        """The proration a line's breakdown stores (`doc`, from `doc()`); raises
        ValueError (KeyError, decimal.InvalidOperation) for a document that is not one."""
        return cls(
            billed_seconds=int(doc["billed_seconds"]),
            cycle_seconds=int(doc["cycle_seconds"]),
            full_amount_precise=Decimal(str(doc["full_amount_precise"])),
            amount_precise=Decimal(str(doc["amount_precise"])),
            amount=Decimal(str(doc["amount"])),
            currency=currency,
        )

    def doc(self) -> dict[str, Any]:
        """As the line's breakdown stores it (decimals as text)."""
        return {
            "billed_seconds": self.billed_seconds,
            "cycle_seconds": self.cycle_seconds,
            "share": fmt(self.share),
            "full_amount_precise": fmt(self.full_amount_precise),
            "amount_precise": fmt(self.amount_precise),
            "amount": fmt(self.amount),
        }


def _duration(seconds: int) -> str:
    """Whole hours as "144 h" (every billing period starts on a whole UTC hour), else
    seconds."""
    return f"{seconds // 3600:,} h" if seconds % 3600 == 0 else f"{seconds:,} s"


def prorated(
    charge: RatedCharge,
    period: tuple[datetime, datetime],
    cycle: tuple[datetime, datetime],
    rounding: RoundingMode = ROUNDING,
) -> Proration | None:
    """The proration of a fixed fee's charge for `period` [start, end), a part of its
    billing `cycle` [start, end); None when the period is the whole cycle.

    Rule (docs/rating.md, "Proration of fixed fees"): a fixed fee billed for a partial
    first or last period is its amount for the whole cycle times the share of the
    cycle's elapsed time the period covers, in seconds: (end - start) / (cycle end -
    cycle start). Elapsed time, not calendar days, as Stripe prorates ("down to the
    second", docs.stripe.com/billing/scripts/prorations), and as time-weighted seats
    are normalized to the cycle: a day of a DST month is 23, 24 or 25 hours of it. The
    product is kept to 12 decimal places (half-even) and rounded once to the currency's
    minor unit with `rounding`. Example: JPY 10,000 a month, a period of 6 of March's 31
    days (UTC): 10,000 x 144 h / 744 h = 1,935.483870967742 -> JPY 1,935.

    Raises ValueError when the period does not lie inside the cycle."""
    # In UTC: two datetimes of one zone object subtract (and compare) as wall clocks,
    # which would make a DST day 24 h long.
    start, end, cycle_start, cycle_end = (t.astimezone(UTC) for t in (*period, *cycle))
    if not cycle_start <= start < end <= cycle_end:
        raise ValueError(
            f"the period {start.isoformat()} .. {end.isoformat()} does not lie inside its"
            f" billing cycle {cycle_start.isoformat()} .. {cycle_end.isoformat()}"
        )
    if (start, end) == (cycle_start, cycle_end):
        return None
    billed = int((end - start).total_seconds())
    whole = int((cycle_end - cycle_start).total_seconds())
    product = _SHARE_CONTEXT.multiply(charge.amount_precise, Decimal(billed))
    precise = _SHARE_CONTEXT.divide(product, Decimal(whole)).quantize(
        PRORATED_QUANTUM, rounding=ROUND_HALF_EVEN, context=_SHARE_CONTEXT
    )
    return Proration(
        billed_seconds=billed,
        cycle_seconds=whole,
        full_amount_precise=charge.amount_precise,
        amount_precise=plain(precise),
        amount=round_money(precise, charge.currency, rounding),
        currency=charge.currency,
    )


@dataclass(frozen=True, slots=True)
class RatedLine:
    """One line of a period's charges, as rating produces it.

    Key parts: `price_id`, `price_version` (the label of the version in effect at the
    period's end; "plan" for a minimum true-up), `kind` and `group` (the price's
    dimension filter, "seat_type=advanced", or None). Amounts are major units:
    `amount_precise` exact, `amount` rounded once to the currency's minor unit; a
    discount is negative. `detail` is how the amount was reached: the RatedCharge with
    its tier breakdown (usage, flat), the DiscountResult (discount) or the
    MinimumTrueUp; `description` is its one-line explanation. `proration` says how a
    fixed fee was prorated for a partial period (then `amount` and `amount_precise` are
    the prorated ones and `detail` the charge for the whole cycle); None otherwise."""

    price_id: str
    price_version: str
    kind: LineKind
    group: str | None
    meter: str | None
    quantity: Decimal
    amount: Decimal
    amount_precise: Decimal
    currency: str
    unit_amount: Decimal | None
    detail: RatedCharge | DiscountResult | MinimumTrueUp | CreditPayment
    description: str
    proration: Proration | None = None
    grant_id: str | None = None  # a credit line's grant

    def breakdown(self) -> dict[str, Any]:
        """`detail` as JSON data (decimals as plain text), as the ledger stores it; a
        prorated line's adds `proration` (Proration.doc)."""
        detail = self.detail
        if isinstance(detail, CreditPayment):
            return detail.doc()
        if isinstance(detail, MinimumTrueUp):
            return {
                "commitment": str(detail.commitment.amount),
                "lines_total": str(detail.lines_total.amount),
            }
        doc = detail.model_dump(mode="json")
        if self.proration is not None:
            doc["proration"] = self.proration.doc()
        return doc


def version_windows(spec: PriceSpec, start: datetime, end: datetime) -> list[VersionWindow]:
    """The price's version windows inside [start, end), in time order."""
    first = spec.in_effect(start)
    cuts = [v for v in spec.versions if start < v.starts < end]
    if first is None and not cuts:
        return []
    windows: list[VersionWindow] = []
    bounds = [(first, start)] if first else []
    bounds += [(v, v.starts) for v in cuts]
    for i, (version, begin) in enumerate(bounds):
        finish = bounds[i + 1][1] if i + 1 < len(bounds) else end
        if version is not None and begin < finish:
            windows.append(VersionWindow(version.label, version.price, begin, finish))
    return windows


# Quantities of one customer: {(start, end) window: {(meter, dims): quantity}}.
QuantityKey = tuple[str, tuple[tuple[str, str], ...]]
WindowQuantities = Mapping[tuple[datetime, datetime], Mapping[QuantityKey, Decimal]]


def quantity_for(spec: PriceSpec, quantities: Mapping[QuantityKey, Decimal]) -> Decimal:
    """The price's quantity: its meter's groups that match its filter, added up."""
    if spec.meter is None:
        return Decimal(1)
    total = Decimal(0)
    for (meter, dims), value in quantities.items():
        if meter == spec.meter and matches_filter(dims, spec.filter):
            total += value
    return total


def matches_filter(dims: Iterable[tuple[str, str]], price_filter: Mapping[str, str]) -> bool:
    """A dimension group counts towards a price when it has every (key, value) of the
    price's filter. Close (quantity_for) and the audit decide it with this one rule."""
    if not price_filter:
        return True
    groups = dict(dims)
    return all(groups.get(k) == v for k, v in price_filter.items())


def windows_needed(
    specs: Sequence[PriceSpec], start: datetime, end: datetime
) -> set[tuple[datetime, datetime]]:
    """The time windows whose quantities the warehouse must provide for this period."""
    needed = {(start, end)}
    for spec in specs:
        if spec.aggregation in ADDITIVE:
            needed |= {(w.start, w.end) for w in version_windows(spec, start, end)}
    return needed


def rate_price(
    spec: PriceSpec,
    start: datetime,
    end: datetime,
    quantities: WindowQuantities,
    rounding: RoundingMode = ROUNDING,
) -> tuple[str, RatedCharge] | None:
    """Rate one price for the period; None if no version of it is in effect then."""
    windows = version_windows(spec, start, end)
    if not windows:
        return None
    last = windows[-1]
    if len(windows) == 1 or spec.aggregation not in ADDITIVE:
        whole = quantity_for(spec, quantities.get((start, end), {}))
        return last.label, rate(last.price, whole, rounding=rounding)
    parts = [
        (w.label, w.price, quantity_for(spec, quantities.get((w.start, w.end), {})))
        for w in windows
    ]
    return last.label, rate_windows(parts, rounding=rounding)


def rate_period(
    specs: Sequence[PriceSpec],
    *,
    start: datetime,
    end: datetime,
    quantities: WindowQuantities,
    discounts: Sequence[Discount] = (),
    minimum_commitment: Money | None = None,
    rounding: RoundingMode = ROUNDING,
    cycle: tuple[datetime, datetime] | None = None,
    grants: Sequence[Grant] = (),
    subscription: str | None = None,
) -> list[RatedLine]:
    """All rated lines of one subscription's period [start, end), in a stable order: per
    price (by id) its line and its discount lines, then the credit lines of `grants`
    (`apply_credits`; `subscription` is the subscription's id, for grants of one
    subscription), then the minimum true-up.

    `cycle` is the billing cycle [start, end) the period is part of (a partial first or
    last period is shorter); its fixed fees are prorated to the period (`prorated`),
    unless the price in effect at the period's end says `proration: full`. None: the
    period is a whole cycle."""
    lines: list[RatedLine] = []
    for spec in sorted(specs, key=lambda s: s.price_id):
        rated = rate_price(spec, start, end, quantities, rounding)
        if rated is None:
            continue
        label, charge = rated
        proration = None
        if cycle is not None and spec.fixed_fee and charge_prorates(spec, label):
            proration = prorated(charge, (start, end), cycle, rounding)
        line = _charge_line(spec, label, charge, proration)
        lines.append(line)
        for discount in discounts:
            if discount.price_id == spec.price_id:
                result = apply_discount(
                    charge, discount, start, end, rounding=rounding, base=line.amount
                )
                if result.applied and result.amount != 0:
                    lines.append(_discount_line(spec, label, result))
    if minimum_commitment is not None and lines:
        true_up = _true_up(lines, minimum_commitment, rounding)
        if true_up is not None:
            lines.append(true_up)
    return apply_credits(lines, grants, period_end=end, subscription=subscription)


def apply_credits(
    lines: Sequence[RatedLine],
    grants: Sequence[Grant],
    *,
    period_end: datetime,
    subscription: str | None = None,
) -> list[RatedLine]:
    """The period's lines with the credit lines of the drawdown (rating/credits.py) of
    `grants` (each with its balance available to the period) inserted before the minimum
    true-up, one per grant and usage line it pays: kind `credit`, the paid line's price,
    version and group, quantity the units taken from the grant, a negative amount.

    The true-up is left as it was computed: from the lines before credits. A credit pays
    for usage; it does not lower the usage the minimum commitment is measured against
    (docs/rating.md, "Credits"). Raises ValueError (draw_down's) for a negative line or
    balance."""
    if not grants:
        return list(lines)
    usage = {(ln.price_id, ln.group or ""): ln for ln in lines if ln.kind == "usage"}
    drawn = draw_down(
        creditable_lines(lines, subscription or ""),
        grants,
        period_end=period_end,
        subscription=subscription,
    )
    units = {g.grant_id: g.meter or g.currency for g in grants}
    credits = []
    for paid in drawn.consumptions:
        price_id, group = paid.line_key.split("|")[-2:]
        line = usage[(price_id, group)]
        detail = CreditPayment(paid, units[paid.grant_id])
        credits.append(
            RatedLine(
                price_id=line.price_id,
                price_version=line.price_version,
                kind="credit",
                group=line.group,
                meter=line.meter,
                quantity=paid.units,
                amount=paid.amount,
                amount_precise=paid.amount,
                currency=paid.currency,
                unit_amount=None,
                detail=detail,
                description=detail.explanation,
                grant_id=paid.grant_id,
            )
        )
    before = [ln for ln in lines if ln.kind != "minimum_true_up"]
    return [*before, *credits, *(ln for ln in lines if ln.kind == "minimum_true_up")]


def charge_prorates(spec: PriceSpec, label: str) -> bool:
    """Whether the price's charge is prorated when its period is partial: the version it
    was rated at (`label`, the version in effect at the period's end) decides, as it
    decides a flat fee's amount (docs/rating.md, "Price versions")."""
    return all(v.price.proration != "full" for v in spec.versions if v.label == label)


def _charge_line(
    spec: PriceSpec, label: str, charge: RatedCharge, proration: Proration | None = None
) -> RatedLine:
    usage = spec.meter is not None
    amount, precise, description = charge.amount, charge.amount_precise, charge.explanation
    unit_amount = charge.effective_unit_amount if usage else None
    if proration is not None:
        amount, precise = proration.amount, proration.amount_precise
        description = f"{description}; {proration.explanation}"
        if usage and charge.billable_quantity:
            quotient = _SHARE_CONTEXT.divide(precise, charge.billable_quantity)
            unit_amount = plain(quotient.quantize(PRORATED_QUANTUM, context=_SHARE_CONTEXT))
    return RatedLine(
        price_id=spec.price_id,
        price_version=label,
        kind="usage" if usage else "flat",
        group=spec.group,
        meter=spec.meter,
        quantity=charge.quantity,
        amount=amount,
        amount_precise=precise,
        currency=charge.currency,
        unit_amount=unit_amount,
        detail=charge,
        description=description,
        proration=proration,
    )


def _discount_line(spec: PriceSpec, label: str, result: DiscountResult) -> RatedLine:
    return RatedLine(
        price_id=spec.price_id,
        price_version=label,
        kind="discount",
        group=spec.group,
        meter=spec.meter,
        quantity=Decimal(1),
        amount=result.amount,
        amount_precise=result.amount_precise,
        currency=result.currency,
        unit_amount=None,
        detail=result,
        description=result.explanation,
    )


def _true_up(
    lines: Sequence[RatedLine], commitment: Money, rounding: RoundingMode
) -> RatedLine | None:
    """The minimum commitment's true-up of the period's lines (after discounts)."""
    currency = lines[0].currency
    total = Money(sum((ln.amount for ln in lines), Decimal(0)), currency)
    true_up = minimum_commitment_true_up(total, commitment, rounding)
    if true_up is None or true_up.amount <= 0:
        return None
    detail = MinimumTrueUp(commitment, total, true_up)
    return RatedLine(
        price_id=MINIMUM_PRICE_ID,
        price_version=MINIMUM_VERSION,
        kind="minimum_true_up",
        group=None,
        meter=None,
        quantity=Decimal(1),
        amount=true_up.amount,
        amount_precise=true_up.amount,
        currency=currency,
        unit_amount=None,
        detail=detail,
        description=detail.explanation,
    )
