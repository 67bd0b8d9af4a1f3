"""The clean model: what each invoice of a world must hold, computed in plain Python
from the catalog data and the stored events, with none of the pipeline's code (no
rating, meters or billing import). It is the simulator's independent oracle.

The rules it implements, each as the docs state them:
- periods: monthly from the anchor day in the subscription's timezone, the anchor
  clamped to short months, first period from `start`, last to `end`; local midnight,
  or the first instant of a day whose midnight is skipped (docs/ledger.md "Billing
  periods"); a period is due when its end plus the grace has passed;
- quantities: count and sum of the period's events; time_weighted = the gauge's
  integral over the period (the last reading at or before each instant, by
  (timestamp, event id); 0 before the first) over the length of its anchor cycle (a
  partial period bills its share), rounded to 9 decimals half-even (docs/rollups.md);
- prices: one window per price version (effective from local midnight); per_unit;
  graduated tiers consumed over the period's cumulative quantity window by window;
  volume: the period's total picks the tier of each window's ladder; flat: once, by the
  version at the period's end, times the share of its anchor cycle's seconds a partial
  first or last period covers (docs/rating.md "Proration of fixed fees");
- each line rounded once, half-up, to the currency's minor unit; a discount valid at
  the period's end takes percent_off of the rounded line (rounded) or amount_off up to
  the line; a plan's minimum commitment trues up the period's lines (after discounts)
  when they total less (docs/rating.md "Discounts", "Plan-level minimum commitment").
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from meterline.simulation.world import Customer, Event, local_midnight

#: Minor-unit exponents of the currencies the worlds use (ISO 4217).
EXPONENT = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}
QUANTUM = Decimal("1e-9")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    local_start: date
    local_end: date


@dataclass
class ExpectedInvoice:
    customer_id: str
    period: Period
    currency: str
    #: (price id, kind) -> amount in major units, rounded (only non-zero lines)
    lines: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return sum(self.lines.values(), Decimal(0))


def _round(amount: Decimal, currency: str) -> Decimal:
    quantum = Decimal(1).scaleb(-EXPONENT[currency])
    return amount.quantize(quantum, rounding=ROUND_HALF_UP)


def _anchor_date(year: int, month: int, anchor: int) -> date:
    return date(year, month, min(anchor, calendar.monthrange(year, month)[1]))


def periods(c: Customer, until: date) -> list[Period]:
    """The subscription's periods that end on or before `until` (local date)."""
    bounds = [c.start]
    year, month = c.start.year, c.start.month
    while True:
        boundary = _anchor_date(year, month, c.anchor)
        if boundary > until or (c.end is not None and boundary >= c.end):
            break
        if boundary > c.start:
            bounds.append(boundary)
        year, month = year + month // 12, month % 12 + 1
    if c.end is not None:
        bounds.append(c.end)
    return [
        Period(local_midnight(a, c.timezone), local_midnight(b, c.timezone), a, b)
        for a, b in itertools.pairwise(bounds)
    ]


def due_periods(c: Customer, as_of: datetime, grace: timedelta) -> list[Period]:
    return [p for p in periods(c, as_of.date() + timedelta(days=40)) if p.end + grace <= as_of]


def _versions(price: Mapping[str, Any], tz: str) -> list[tuple[datetime, Mapping[str, Any]]]:
    out = [
        (local_midnight(date.fromisoformat(v["effective_from"]), tz), v["prices"])
        for v in price["versions"]
    ]
    return sorted(out, key=lambda v: v[0])


def _windows(
    price: Mapping[str, Any], c: Customer, p: Period
) -> list[tuple[datetime, datetime, Mapping[str, Any]]]:
    """(start, end, body) per version window inside the period."""
    versions = _versions(price, c.timezone)
    out = []
    for n, (begin, bodies) in enumerate(versions):
        until = versions[n + 1][0] if n + 1 < len(versions) else p.end
        lo, hi = max(begin, p.start), min(until, p.end)
        if lo < hi:
            out.append((lo, hi, bodies[c.currency]))
    return out


def _matches(e: Event, meter: str, flt: Mapping[str, str] | None) -> bool:
    return e.meter == meter and (not flt or e.channel == flt.get("channel"))


def _counter(events: Sequence[Event], aggregation: str, lo: datetime, hi: datetime) -> Decimal:
    inside = [e for e in events if lo <= e.at < hi]
    if aggregation == "count":
        return Decimal(len(inside))
    return sum((e.value or Decimal(0) for e in inside), Decimal(0))


def cycle(c: Customer, p: Period) -> tuple[datetime, datetime]:
    """The anchor cycle holding the period: a partial first or last period is still
    normalized to its whole cycle (docs/catalog.md: a seat held 10 days of a 30-day
    month is 1/3)."""
    year, month = p.local_start.year, p.local_start.month
    first = _anchor_date(year, month, c.anchor)
    if first > p.local_start:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        first = _anchor_date(year, month, c.anchor)
    year, month = year + month // 12, month % 12 + 1
    return local_midnight(first, c.timezone), local_midnight(
        _anchor_date(year, month, c.anchor), c.timezone
    )


def _flat(body: Mapping[str, Any], p: Period, whole: tuple[datetime, datetime]) -> Decimal:
    """A flat fee: its amount, times the share of its anchor cycle's seconds the period
    covers when the period is partial, kept to 12 decimals half-even (docs/rating.md
    "Proration of fixed fees"), unless the body says `proration: full`."""
    amount = Decimal(body["amount"])
    if body.get("proration") == "full" or (p.start, p.end) == whole:
        return amount
    billed = Decimal((p.end - p.start) // timedelta(seconds=1))
    cycle_s = Decimal((whole[1] - whole[0]) // timedelta(seconds=1))
    with localcontext() as ctx:
        ctx.prec = 100
        return (amount * billed / cycle_s).quantize(Decimal("1e-12"), rounding=ROUND_HALF_EVEN)


def _time_weighted(events: Sequence[Event], p: Period, norm: tuple[datetime, datetime]) -> Decimal:
    readings = sorted(events, key=lambda e: (e.at, e.event_id))
    level, at, integral = Decimal(0), p.start, Decimal(0)
    for e in readings:
        if e.at >= p.end:
            break
        if e.at > at:
            integral += level * _ms(e.at - at)
            at = e.at
        level = e.value or Decimal(0)
    integral += level * _ms(p.end - at)
    with localcontext() as ctx:
        ctx.prec = 100
        return (integral / _ms(norm[1] - norm[0])).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def _ms(delta: timedelta) -> Decimal:
    return Decimal(delta // timedelta(milliseconds=1))


def _graduated(tiers: Sequence[Mapping[str, Any]], lo: Decimal, hi: Decimal) -> Decimal:
    """The price of positions (lo, hi] of the period's cumulative quantity."""
    amount, floor = Decimal(0), Decimal(0)
    for tier in tiers:
        ceiling = Decimal(tier["up_to"]) if tier["up_to"] is not None else None
        a = max(lo, floor)
        b = hi if ceiling is None else min(hi, ceiling)
        if b > a:
            amount += (b - a) * Decimal(tier["unit_amount"])
        if ceiling is None:
            break
        floor = ceiling
    return amount


def _volume_tier(tiers: Sequence[Mapping[str, Any]], total: Decimal) -> Mapping[str, Any]:
    for tier in tiers:
        if tier["up_to"] is None or total <= Decimal(tier["up_to"]):
            return tier
    return tiers[-1]


def _charge(
    price: Mapping[str, Any],
    meter: Mapping[str, Any] | None,
    c: Customer,
    p: Period,
    events: Sequence[Event],
) -> Decimal | None:
    windows = _windows(price, c, p)
    if not windows:
        return None
    if meter is None:
        return _flat(windows[-1][2], p, cycle(c, p))
    mine = [e for e in events if _matches(e, meter["name"], price.get("filter"))]
    if meter["aggregation"] == "time_weighted":
        quantities = [_time_weighted(mine, p, cycle(c, p))] if len(windows) == 1 else []
        if not quantities:
            raise NotImplementedError("the worlds split no gauge price across versions")
    else:
        quantities = [_counter(mine, meter["aggregation"], lo, hi) for lo, hi, _ in windows]
    total, amount, position = sum(quantities, Decimal(0)), Decimal(0), Decimal(0)
    for (_, _, body), q in zip(windows, quantities, strict=True):
        if body["model"] == "per_unit":
            amount += q * Decimal(body["unit_amount"])
        elif body["model"] == "graduated":
            amount += _graduated(body["tiers"], position, position + q)
        elif body["model"] == "volume":
            amount += q * Decimal(_volume_tier(body["tiers"], total)["unit_amount"])
        else:
            raise NotImplementedError(body["model"])
        position += q
    return amount


def invoice(
    catalog: Mapping[str, Any], c: Customer, p: Period, events: Sequence[Event]
) -> ExpectedInvoice:
    """What the invoice of `c`'s period `p` must hold, from `events` (all customers')."""
    meters = {m["name"]: m for m in catalog["meters"]}
    plan = next(pl for pl in catalog["plans"] if pl["id"] == c.plan)
    mine = [e for e in events if e.customer_id == c.customer_id]
    out = ExpectedInvoice(c.customer_id, p, c.currency)
    amounts: list[Decimal] = []
    for price in sorted(plan["prices"], key=lambda pr: pr["id"]):
        meter = meters[price["meter"]] if "meter" in price else None
        precise = _charge(price, meter, c, p, mine)
        if precise is None:
            continue
        amount = _round(precise, c.currency)
        kind = "usage" if meter is not None else "flat"
        amounts.append(amount)
        out.lines[(price["id"], kind)] = amount
        if c.discount is not None and c.discount[0] == price["id"]:
            _, percent, off = c.discount
            if percent is not None:
                cut = -_round(amount * percent / 100, c.currency)
            else:
                cut = -min(off or Decimal(0), amount)
            if cut:
                amounts.append(cut)
                out.lines[(price["id"], "discount")] = cut
    commitment = plan.get("minimum_commitment", {}).get(c.currency)
    if commitment is not None and amounts:
        short = _round(Decimal(commitment) - sum(amounts, Decimal(0)), c.currency)
        if short > 0:
            out.lines[("minimum_commitment", "minimum_true_up")] = short
    out.lines = {k: v for k, v in out.lines.items() if v != 0}
    return out


def expected_invoices(
    catalog: Mapping[str, Any],
    customers: Iterable[Customer],
    events: Sequence[Event],
    as_of: datetime,
    grace: timedelta,
) -> list[ExpectedInvoice]:
    """Every invoice due by `as_of`, from `events`."""
    return [invoice(catalog, c, p, events) for c in customers for p in due_periods(c, as_of, grace)]
