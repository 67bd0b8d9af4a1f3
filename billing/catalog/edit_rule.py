"""The edit rule: a price version that priced a finalized invoice never changes in place.

A load that would change what a finalized invoice was charged (a body edited under the
same effective_from, a version removed, a version added inside or before a finalized
period, a plan's minimum commitment, a price's meter or filter) is refused with
CatalogChangeRefused, naming the price, its version and the invoices: give the new
price a version of its own, effective after the finalized periods, or load with
``reprice``, which stores the change and returns the finalized periods it re-prices
(the caller posts their corrections as adjustment lines in the same transaction). A
meter that counted a finalized invoice never changes how it counts (aggregation,
unique_property, filter, and dimensions of a non-additive meter), reprice or not: the
rollup of past days holds its old counting.

Only the plans a load touches are compared, and only their finalized invoices that
carry charges of their own period; a version prices a period when it is in effect at
the period's start or takes effect inside it (at local midnight of its date).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from billing.catalog.model import (
    CatalogChangeRefused,
    CatalogPriceVersion,
    ParsedCatalog,
    RepricedPeriod,
    minimum_amounts,
)
from billing.models import Invoice, InvoiceLine, Plan, PriceVersion, Subscription
from billing.periods import Period, local_midnight, zone
from meters.catalog import MeterCatalog

Slot = tuple[str, str, str, date]


@dataclass(frozen=True)
class Change:
    """What a load would do to the stored catalog, slot by slot (plan, price, currency,
    effective_from): the current rows, the rows it keeps, the versions it puts (new or
    changed content) and the rows it drops (removed or replaced)."""

    parsed: ParsedCatalog
    current: Mapping[Slot, PriceVersion]
    keep: Mapping[Slot, PriceVersion]
    put: Mapping[Slot, CatalogPriceVersion]
    dropped: Sequence[PriceVersion]
    stored_plans: Mapping[str, Plan]
    old_meters: MeterCatalog | None

    def changed_plans(self) -> set[str]:
        """The plans whose prices, minimums or meters' counting this load changes."""
        plans = {slot[0] for slot in self.put} | {row.plan_id for row in self.dropped}
        for plan in self.parsed.plans:
            old = self.stored_plans.get(plan.id)
            if old is not None and minimum_amounts(old.minimum_commitment) != minimum_amounts(
                plan.minimum_commitment
            ):
                plans.add(plan.id)
        if self.old_meters is not None:
            new_meters = self.parsed.meters.meters
            moved = {
                name
                for name, meter in self.old_meters.meters.items()
                if (new := new_meters.get(name)) is None
                or new.counting_key() != meter.counting_key()
            }
            plans |= {r.plan_id for r in self.current.values() if r.meter in moved}
        return plans


def check_edit_rule(session: Session, change: Change, *, reprice: bool) -> list[RepricedPeriod]:
    """The finalized periods whose charges `change` alters, to re-price (with `reprice`).
    Raises CatalogChangeRefused when it alters what a finalized invoice was charged and
    `reprice` is off, or alters how a meter counted one."""
    plans = change.changed_plans()
    if not plans:
        return []
    old_model = _model(
        (
            (
                r.plan_id,
                r.price_id,
                r.currency,
                r.meter,
                _Version(r.effective_from, r.version, CatalogPriceVersion.from_row(r).terms()),
            )
            for r in change.current.values()
            if r.plan_id in plans
        ),
        {p.id: p.minimum_commitment for p in change.stored_plans.values()},
        change.old_meters,
    )
    new_model = _model(
        (
            (
                v.plan_id,
                v.price_id,
                v.currency,
                v.meter,
                _Version(
                    v.effective_from,
                    change.keep[v.slot].version if v.slot in change.keep else v.version,
                    v.terms(),
                ),
            )
            for v in change.parsed.versions
            if v.plan_id in plans
        ),
        {p.id: p.minimum_commitment for p in change.parsed.plans},
        change.parsed.meters,
    )
    problems, repriced, invoices = _impact(session, old_model, new_model, plans, reprice)
    if problems:
        raise CatalogChangeRefused(change.parsed.source, problems, invoices)
    return repriced


@dataclass(frozen=True, slots=True)
class _Version:
    effective_from: date
    label: str
    terms: Any  # CatalogPriceVersion.terms(): compared by value


@dataclass
class _Model:
    """The pricing a catalog gives: per (plan, currency), each price's versions in date
    order; minimum commitments; how each meter counts."""

    prices: dict[tuple[str, str], dict[str, list[_Version]]]
    minimums: dict[str, dict[str, Decimal]]
    counting: dict[str, tuple[Any, ...]] | None
    meter_of: dict[tuple[str, str, str], str | None]


def _model(
    versions: Iterable[tuple[str, str, str, str | None, _Version]],
    minimums: Mapping[str, Mapping[str, str]],
    meters: MeterCatalog | None,
) -> _Model:
    prices: dict[tuple[str, str], dict[str, list[_Version]]] = defaultdict(dict)
    meter_of: dict[tuple[str, str, str], str | None] = {}
    for plan, price_id, currency, meter, version in versions:
        prices[(plan, currency)].setdefault(price_id, []).append(version)
        meter_of[(plan, price_id, currency)] = meter
    for per_price in prices.values():
        for listed in per_price.values():
            listed.sort(key=lambda v: v.effective_from)
    return _Model(
        prices=prices,
        minimums={plan: minimum_amounts(mins) for plan, mins in minimums.items()},
        counting=(
            {name: m.counting_key() for name, m in meters.meters.items()}
            if meters is not None
            else None
        ),
        meter_of=meter_of,
    )


def _in_effect(
    versions: Sequence[_Version], tz: str, start: datetime, end: datetime
) -> list[_Version]:
    """The versions that price [start, end): the one in effect at start and every one
    that takes effect inside (a version starts at local midnight of its date)."""
    found: list[_Version] = []
    for version in versions:
        starts = local_midnight(version.effective_from, tz)
        if starts <= start:
            found = [version]
        elif starts < end:
            found.append(version)
    return found


@dataclass
class _Impact:
    invoices: set[int] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    last_end: date | None = None

    def add(self, invoice_id: int, labels: Iterable[str], local_end: date) -> None:
        self.invoices.add(invoice_id)
        self.labels.update(labels)
        self.last_end = local_end if self.last_end is None else max(self.last_end, local_end)


def _finalized_periods(
    session: Session, plans: set[str]
) -> list[tuple[int, str, str, str, str, datetime, datetime]]:
    """(invoice id, subscription, plan, currency, timezone, start, end) of every finalized
    invoice of these plans that carries charges of its own period (not only adjustments)."""
    if not plans:
        return []
    own = exists().where(
        InvoiceLine.invoice_id == Invoice.id,
        InvoiceLine.kind != "adjustment",
        InvoiceLine.service_period_start == Invoice.period_start,
    )
    rows = session.execute(
        select(
            Invoice.id,
            Subscription.external_id,
            Subscription.plan_id,
            Invoice.currency,
            Subscription.timezone,
            Invoice.period_start,
            Invoice.period_end,
        )
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(Invoice.status == "finalized", Subscription.plan_id.in_(sorted(plans)), own)
        .order_by(Invoice.id)
    ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _short_list(ids: Iterable[int], limit: int = 10) -> str:
    ordered = sorted(ids)
    shown = ", ".join(str(i) for i in ordered[:limit])
    more = f" and {len(ordered) - limit} more" if len(ordered) > limit else ""
    return f"{len(ordered)} finalized invoice(s) ({shown}{more})"


def _impact(
    session: Session, old: _Model, new: _Model, changed_plans: set[str], reprice: bool
) -> tuple[list[str], list[RepricedPeriod], list[int]]:
    """(problems, periods to re-price, invoice ids) of the change from `old` to `new`:
    problems when the change alters a finalized invoice and `reprice` is off, or alters
    how a meter counted one (never allowed)."""
    by_price: dict[tuple[str, str, str], _Impact] = defaultdict(_Impact)
    by_minimum: dict[tuple[str, str], _Impact] = defaultdict(_Impact)
    by_meter: dict[str, _Impact] = defaultdict(_Impact)
    repriced: dict[int, RepricedPeriod] = {}
    for inv_id, sub, plan, currency, tz, start, end in _finalized_periods(session, changed_plans):
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        local_end = end.astimezone(zone(tz)).date()
        old_prices = old.prices.get((plan, currency), {})
        new_prices = new.prices.get((plan, currency), {})
        touched = False
        for price_id in sorted(set(old_prices) | set(new_prices)):
            before = _in_effect(old_prices.get(price_id, []), tz, start, end)
            after = _in_effect(new_prices.get(price_id, []), tz, start, end)
            meter = old.meter_of.get((plan, price_id, currency))
            if (
                before
                and meter
                and old.counting is not None
                and new.counting is not None
                and old.counting.get(meter) != new.counting.get(meter)
            ):
                by_meter[meter].add(inv_id, [v.label for v in before], local_end)
            if [(v.effective_from, v.terms) for v in before] != [
                (v.effective_from, v.terms) for v in after
            ]:
                by_price[(plan, price_id, currency)].add(
                    inv_id, [v.label for v in before], local_end
                )
                touched = True
        if old.minimums.get(plan, {}).get(currency) != new.minimums.get(plan, {}).get(currency):
            by_minimum[(plan, currency)].add(inv_id, [], local_end)
            touched = True
        if touched:
            repriced[inv_id] = RepricedPeriod(inv_id, sub, Period(start, end))

    problems: list[str] = []
    for meter, hit in sorted(by_meter.items()):
        problems.append(
            f"meter {meter}: this catalog changes how it counts (aggregation, unique_property,"
            f" filter or dimensions), and it counted {_short_list(hit.invoices)}; the rollup of"
            " past days holds the old counting, so a meter that counted a finalized invoice"
            " never changes it: define a new meter and give a new price (a new price id) on it"
        )
    if not reprice:
        for (plan, price_id, currency), hit in sorted(by_price.items()):
            labels = ", ".join(sorted(hit.labels)) or "none (a version added before them)"
            problems.append(
                f"price {plan}/{price_id} {currency}: this catalog changes what"
                f" {_short_list(hit.invoices)} were charged; version(s) {labels} priced them."
                " A price version that priced a finalized invoice never changes in place:"
                f" give the new price a version of its own with effective_from {hit.last_end}"
                " or later, or load with --reprice to re-price those invoices with adjustment"
                " lines on the next open invoices"
            )
        for (plan, currency), hit in sorted(by_minimum.items()):
            problems.append(
                f"plan {plan} minimum_commitment {currency}: this catalog changes the minimum"
                f" that {_short_list(hit.invoices)} were trued up to (a minimum has no"
                " versions): keep it, or load with --reprice to re-price those invoices with"
                " adjustment lines on the next open invoices"
            )
    invoices = sorted(
        set().union(
            *(h.invoices for h in by_price.values()),
            *(h.invoices for h in by_minimum.values()),
            *(h.invoices for h in by_meter.values()),
        )
    )
    return problems, [repriced[i] for i in sorted(repriced)], invoices
