"""The customers file against the ledger: what a row may not do to what is stored.

Three rules, each a list of Problems (line, field, what to do), never an exception, so
that a file is refused once with all of them (billing.customers.load):

1. **Priced** (`priced_problems`): a row's plan is in the loaded catalog, priced in its
   currency, and each discount names a price of the plan (DESIGN.md invariant 10: usage
   with no price is an error, never a 0.00 invoice).
2. **One subscription per meter at a time** (`overlap_problems`): usage events carry a
   customer id, not a subscription id, and close reads each period's quantities per
   customer and meter (meterline/jobs/rate.py), so two subscriptions of one customer
   that are active on the same day and both price a meter (on dimension groups a price
   filter lets both count) would each bill the same events. Such a pair is refused; a
   customer changing plans ends one subscription on the day the next starts. Flat fees
   (prices without a meter) never overlap.
3. **Finalized terms stay** (`terms_problems`): the rule the catalog applies to past
   prices (billing/catalog/edit_rule.py) applied to a subscription's terms. Close, late
   usage corrections and the audit re-rate a finalized period with the subscription's
   terms as the ledger holds them, so the terms that priced a finalized invoice never
   change in place: its plan, currency, billing anchor day, timezone and start date
   (currency, anchor, timezone and start neither once it has any live invoice: they move
   its periods), and the discounts that applied to a finalized period. Its end date may
   move as long as every finalized invoice's period stays exactly what it was: ending a
   subscription after its last finalized period is the way to change its terms (then a
   new subscription starts where it ends).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from billing import bulk
from billing.customers.errors import Problem
from billing.customers.rows import CustomerRow, DiscountIdentity, discount_identity
from billing.models import Customer, Invoice, Plan, PriceVersion, Subscription, SubscriptionDiscount
from billing.periods import Period, Terms, iter_periods, local_midnight, zone
from rating import Discount


@dataclass(frozen=True, slots=True)
class MeteredPrice:
    """A price of a plan on a meter, with its filter on the meter's dimensions."""

    price_id: str
    meter: str
    filter: Mapping[str, str]

    def shares_usage_with(self, other: MeteredPrice) -> bool:
        """True when some usage counts towards both prices: the same meter, and no
        dimension both filters on with different values."""
        return self.meter == other.meter and all(
            other.filter[k] == v for k, v in self.filter.items() if k in other.filter
        )


@dataclass
class Catalog:
    """The loaded catalog's current prices, as the checks need them."""

    plans: set[str] = field(default_factory=set)
    currencies: dict[str, set[str]] = field(default_factory=dict)
    prices: dict[str, set[str]] = field(default_factory=dict)
    metered: dict[tuple[str, str], list[MeteredPrice]] = field(default_factory=dict)

    @classmethod
    def read(cls, session: Session) -> Catalog:
        catalog = cls(plans=set(session.scalars(select(Plan.id))))
        seen: set[tuple[str, str, str]] = set()
        for plan, currency, price, meter, filt in session.execute(
            select(
                PriceVersion.plan_id,
                PriceVersion.currency,
                PriceVersion.price_id,
                PriceVersion.meter,
                PriceVersion.filter,
            ).where(PriceVersion.is_current.is_(True))
        ):
            catalog.currencies.setdefault(plan, set()).add(currency)
            catalog.prices.setdefault(plan, set()).add(price)
            if meter is not None and (plan, currency, price) not in seen:
                seen.add((plan, currency, price))
                catalog.metered.setdefault((plan, currency), []).append(
                    MeteredPrice(price, meter, {str(k): str(v) for k, v in (filt or {}).items()})
                )
        return catalog


@dataclass(frozen=True, slots=True)
class StoredInvoice:
    """A live invoice of a stored subscription: id, status, period [start, end) in UTC."""

    id: int
    status: str
    period: Period


@dataclass
class Stored:
    """What the ledger holds about a file's customers and subscriptions: the stored
    subscriptions (by external id: the file's, and the other subscriptions of the file's
    customers), each with its customer's external id, live invoices and discounts."""

    subscriptions: dict[str, Any] = field(default_factory=dict)
    customer_of: dict[str, str] = field(default_factory=dict)
    invoices: dict[int, list[StoredInvoice]] = field(default_factory=dict)
    discounts: dict[int, list[DiscountIdentity]] = field(default_factory=dict)

    @classmethod
    def read(cls, session: Session, rows: Sequence[tuple[int, CustomerRow]]) -> Stored:
        subs_t: Table = Subscription.__table__  # type: ignore[assignment]
        disc_t: Table = SubscriptionDiscount.__table__  # type: ignore[assignment]
        stored = cls()
        base = select(subs_t, Customer.external_id.label("customer_ext")).join(
            Customer, Customer.id == subs_t.c.customer_id
        )
        # The subscriptions of the file's customers, then those of its subscriptions that
        # belong to other customers (a reload finds them all in the first query).
        stored._add(session, base, Customer.external_id, {r.customer_id for _, r in rows})
        stored._add(
            session,
            base,
            subs_t.c.external_id,
            {r.subscription_id for _, r in rows} - set(stored.subscriptions),
        )
        ids = [s.id for s in stored.subscriptions.values()]
        for part in bulk.in_chunks(session, ids):
            for d in session.execute(
                select(disc_t)
                .where(bulk.where_in(session, disc_t.c.subscription_id, part))
                .order_by(disc_t.c.id)
            ):
                stored.discounts.setdefault(d.subscription_id, []).append(
                    discount_identity(
                        d.price_id, d.percent_off, d.amount_off, d.valid_from, d.valid_to
                    )
                )
        return stored

    def _add(self, session: Session, query: Any, column: Any, ids: set[str]) -> None:
        for part in bulk.in_chunks(session, sorted(ids)):
            for sub in session.execute(query.where(bulk.where_in(session, column, part))):
                self.subscriptions[sub.external_id] = sub
                self.customer_of[sub.external_id] = sub.customer_ext

    def read_invoices(self, session: Session, ids: Iterable[int]) -> None:
        """Read the live invoices of these stored subscriptions (only the subscriptions a
        file changes need them: terms_problems)."""
        for part in bulk.in_chunks(session, sorted(set(ids))):
            for inv in session.execute(
                select(
                    Invoice.id,
                    Invoice.subscription_id,
                    Invoice.status,
                    Invoice.period_start,
                    Invoice.period_end,
                )
                .where(bulk.where_in(session, Invoice.subscription_id, part))
                .where(Invoice.status != "void")
                .order_by(Invoice.period_start)
            ):
                self.invoices.setdefault(inv.subscription_id, []).append(
                    StoredInvoice(inv.id, inv.status, Period(inv.period_start, inv.period_end))
                )

    def changed(self, rows: Iterable[tuple[int, CustomerRow]]) -> list[int]:
        """The stored subscriptions whose row changes any of their terms or discounts."""
        out: list[int] = []
        for _, row in rows:
            old = self.subscriptions.get(row.subscription_id)
            if old is None:
                continue
            if (
                any(getattr(old, column) != getattr(row, name) for name, column in _TERMS)
                or self.customer_of[row.subscription_id] != row.customer_id
                or not same_discounts(row, self.discounts.get(old.id, []))
            ):
                out.append(old.id)
        return out


def same_discounts(row: CustomerRow, stored: Sequence[DiscountIdentity]) -> bool:
    """True when the row gives its subscription exactly the stored discounts."""
    return sorted((d.identity() for d in row.discounts), key=repr) == sorted(stored, key=repr)


def priced_problems(rows: Iterable[tuple[int, CustomerRow]], catalog: Catalog) -> list[Problem]:
    """Rows whose plan is not in the catalog, whose plan has no price in their currency,
    or whose discount names a price the plan does not have, with what exists."""
    problems: list[Problem] = []
    for number, row in rows:
        if row.plan not in catalog.plans:
            if not catalog.plans:
                text = (
                    f"{row.plan!r}, but no catalog is loaded: load the catalog first"
                    " (`meterline catalog load`)"
                )
            else:
                text = (
                    f"unknown plan {row.plan!r}; the catalog's plans are"
                    f" {', '.join(sorted(catalog.plans))}"
                )
            problems.append(Problem(number, "plan", text))
            continue
        priced = catalog.currencies.get(row.plan, set())
        if row.currency not in priced:
            problems.append(
                Problem(
                    number,
                    "currency",
                    f"plan {row.plan} has no price in {row.currency}; it is"
                    + (f" priced in {', '.join(sorted(priced))}" if priced else " priced in none"),
                )
            )
        prices = catalog.prices.get(row.plan, set())
        for i, discount in enumerate(row.discounts):
            if discount.price not in prices:
                problems.append(
                    Problem(
                        number,
                        f"discounts.{i}.price",
                        f"plan {row.plan} has no price {discount.price!r}; its prices are"
                        f" {', '.join(sorted(prices)) or 'none'}",
                    )
                )
    return problems


@dataclass(frozen=True, slots=True)
class _Span:
    """A subscription's active days [start, end) and what it prices: from a file row
    (`line` > 0) or from the ledger (`line` 0)."""

    subscription: str
    line: int
    plan: str
    currency: str
    start: date
    end: date | None

    def overlap(self, other: _Span) -> tuple[date, date | None] | None:
        start = max(self.start, other.start)
        ends = [d for d in (self.end, other.end) if d is not None]
        end = min(ends) if ends else None
        return (start, end) if end is None or start < end else None

    def where(self) -> str:
        return f"line {self.line}" if self.line else "in the ledger"


def _days(start: date, end: date | None) -> str:
    return f"{start} to {end}" if end is not None else f"{start}, open-ended"


def overlap_problems(
    rows: Sequence[tuple[int, CustomerRow]], stored: Stored, catalog: Catalog
) -> list[Problem]:
    """Pairs of one customer's subscriptions (at least one of them in the file) that are
    active on a common day and price usage both would count (module docstring, rule 2);
    and a file customer whose stored subscriptions (not in the file) bill in another
    currency or timezone than its rows."""
    problems: list[Problem] = []
    spans: dict[str, list[_Span]] = defaultdict(list)
    first: dict[str, tuple[int, CustomerRow]] = {}
    in_file = {row.subscription_id for _, row in rows}
    for number, row in rows:
        first.setdefault(row.customer_id, (number, row))
        spans[row.customer_id].append(
            _Span(row.subscription_id, number, row.plan, row.currency, row.start, row.end)
        )
    for ext, sub in stored.subscriptions.items():
        customer = stored.customer_of[ext]
        if ext in in_file or customer not in first:
            continue
        number, row = first[customer]
        for name, value in (("currency", sub.currency), ("timezone", sub.timezone)):
            if getattr(row, name) != value:
                problems.append(
                    Problem(
                        number,
                        name,
                        f"customer {customer}'s subscription {ext} (in the ledger, not in this"
                        f" file) has {value!r}; a customer's subscriptions agree on its"
                        " currency and timezone",
                    )
                )
        spans[customer].append(
            _Span(ext, 0, sub.plan_id, sub.currency, sub.start_date, sub.end_date)
        )
    for customer, listed in spans.items():
        for i, a in enumerate(listed):
            for b in listed[i + 1 :]:
                if (
                    not (a.line or b.line)
                    or a.subscription == b.subscription  # on two lines: reported as such
                    or (common := a.overlap(b)) is None
                ):
                    continue
                shared = _shared_meters(catalog, a, b)
                if not shared:
                    continue
                # Reported on the file row that starts later (the later line on a tie).
                b_later = b.line and (not a.line or (b.start, b.line) >= (a.start, a.line))
                later, earlier = (b, a) if b_later else (a, b)
                problems.append(_overlap(customer, later, earlier, common, shared))
    return problems


def _shared_meters(catalog: Catalog, a: _Span, b: _Span) -> list[str]:
    """The meters whose usage both subscriptions' plans would bill."""
    return sorted(
        {
            pa.meter
            for pa in catalog.metered.get((a.plan, a.currency), [])
            for pb in catalog.metered.get((b.plan, b.currency), [])
            if pa.shares_usage_with(pb)
        }
    )


def _overlap(
    customer: str, row: _Span, other: _Span, common: tuple[date, date | None], meters: list[str]
) -> Problem:
    starts_later = row.start >= other.start
    if starts_later:
        fix = f"end {other.subscription} on {row.start} or earlier, or start {row.subscription}"
        fix += f" on {other.end} or later" if other.end else " when it ends"
    else:
        fix = f"end {row.subscription} on {other.start} or earlier"
    return Problem(
        row.line,
        "start" if starts_later else "end",
        f"subscription {row.subscription} overlaps subscription {other.subscription} of"
        f" customer {customer} ({other.where()}: {_days(other.start, other.end)}) from"
        f" {_days(*common)}, and both plans ({row.plan}, {other.plan}) price the usage of"
        f" meter{'s' if len(meters) > 1 else ''} {', '.join(meters)}:"
        " usage is billed by customer and meter, so both would bill the same events;"
        f" {fix}",
    )


# The terms that price every period of a subscription: (file field, ledger column).
_PRICING = (
    ("plan", "plan_id"),
    ("currency", "currency"),
    ("billing_anchor_day", "billing_anchor_day"),
    ("timezone", "timezone"),
    ("start", "start_date"),
)
# Every term a row gives its subscription.
_TERMS = (*_PRICING, ("end", "end_date"))
# Of those, the terms that place its periods: fixed once it has any live invoice.
_PLACING = frozenset({"currency", "billing_anchor_day", "timezone", "start"})


def terms_problems(rows: Iterable[tuple[int, CustomerRow]], stored: Stored) -> list[Problem]:
    """What each row would change of the terms that priced its subscription's invoices
    (module docstring, rule 3), and a subscription moving to another customer."""
    problems: list[Problem] = []
    for number, row in rows:
        old = stored.subscriptions.get(row.subscription_id)
        if old is None:
            continue
        ext = row.subscription_id
        if stored.customer_of[ext] != row.customer_id:
            problems.append(
                Problem(
                    number,
                    "customer_id",
                    f"subscription {ext} belongs to customer {stored.customer_of[ext]}; a"
                    " subscription never moves to another customer: give the new one its own"
                    " subscription_id",
                )
            )
        invoices = stored.invoices.get(old.id, [])
        if not invoices:
            continue
        finalized = [i for i in invoices if i.status == "finalized"]
        old_terms = Terms(old.billing_anchor_day, old.timezone, old.start_date, old.end_date)
        # The finalized invoices of its own periods (not carriers of corrections only).
        own = [i for i in finalized if _overlapping(old_terms, i.period) == [i.period]]
        changed = False
        for name, column in _PRICING:
            before, after = getattr(old, column), getattr(row, name)
            if before == after:
                continue
            changed = True
            if finalized:
                problems.append(_frozen(number, ext, name, before, after, finalized[-1], own, old))
            elif name in _PLACING:
                problems.append(_frozen(number, ext, name, before, after, invoices[-1], own, old))
        if changed or not finalized:
            continue
        if row.end != old.end_date:
            problem = _end_problem(number, ext, old_terms, row.end, finalized, own)
            if problem is not None:
                problems.append(problem)
        if not same_discounts(row, stored.discounts.get(old.id, [])):
            wanted = [d.identity() for d in row.discounts]
            problem = _discount_problem(
                number, ext, old, stored.discounts.get(old.id, []), wanted, own
            )
            if problem is not None:
                problems.append(problem)
    return problems


def _local(period: Period, tz: str) -> str:
    local = zone(tz)
    return f"{period.start.astimezone(local).date()} to {period.end.astimezone(local).date()}"


def _last_end(own: Sequence[StoredInvoice], tz: str) -> date | None:
    if not own:
        return None
    return max(i.period.end for i in own).astimezone(zone(tz)).date()


def _frozen(
    number: int,
    ext: str,
    name: str,
    before: Any,
    after: Any,
    invoice: StoredInvoice,
    own: Sequence[StoredInvoice],
    old: Any,
) -> Problem:
    last = _last_end(own, old.timezone)
    end = f"{last} or later" if last is not None else "after its last invoiced period"
    return Problem(
        number,
        name,
        f"subscription {ext} has {invoice.status} invoice {invoice.id}"
        f" ({_local(invoice.period, old.timezone)}) billed with {name} {_shown(before)};"
        f" the terms that priced an invoice never change in place ({name} cannot become"
        f" {_shown(after)}): keep it, end the subscription (end: {end}) and add a new"
        " subscription with the new terms starting on that day",
    )


def _shown(value: Any) -> str:
    return str(value) if isinstance(value, (int, date)) else repr(value)


def _overlapping(terms: Terms, period: Period) -> list[Period]:
    """The subscription's periods under `terms` that share an instant with `period`."""
    # A period is at most 31 days long: one that starts 40 days before `period` ends
    # before it.
    after = period.start - timedelta(days=40)
    found: list[Period] = []
    for candidate in iter_periods(terms, after=after):
        if candidate.start >= period.end:
            break
        if candidate.end > period.start:
            found.append(candidate)
    return found


def _end_problem(
    number: int,
    ext: str,
    old: Terms,
    end: date | None,
    finalized: Sequence[StoredInvoice],
    own: Sequence[StoredInvoice],
) -> Problem | None:
    """Why moving the end to `end` changes a finalized invoice's period (None if none
    changes): each must stay a period of the subscription, or stay outside its periods
    (an invoice after the end carrying corrections)."""
    new = Terms(old.billing_anchor_day, old.timezone, old.start_date, end)
    shown = str(end) if end is not None else "none (open-ended)"
    for invoice in finalized:
        before = _overlapping(old, invoice.period)
        if _overlapping(new, invoice.period) == before:
            continue
        span = _local(invoice.period, old.timezone)
        if before:
            last = _last_end(own, old.timezone)
            return Problem(
                number,
                "end",
                f"subscription {ext} has finalized invoice {invoice.id} ({span}); an end of"
                f" {shown} would change that period: the end can move to {last} or later"
                " (the end of its last finalized period), never into a finalized period",
            )
        return Problem(
            number,
            "end",
            f"subscription {ext} ended on {old.end_date}, and finalized invoice {invoice.id}"
            f" ({span}) carries corrections after its end; an end of {shown} would make that"
            " a billed period: keep the end, or add a new subscription for the new days",
        )
    return None


def _applying(
    identities: Iterable[DiscountIdentity], currency: str, tz: str, period: Period
) -> list[DiscountIdentity]:
    """The discounts that apply to `period`: valid at its end (rating.Discount's rule,
    each date at local midnight in the subscription's timezone), in a stable order."""
    out: list[DiscountIdentity] = []
    for identity in identities:
        price, percent, amount, valid_from, valid_to = identity
        rated = Discount(
            price_id=price,
            percent_off=None if percent is None else Decimal(percent),
            amount_off=None if amount is None else Decimal(amount),
            currency=currency if amount is not None else None,
            valid_from=local_midnight(valid_from, tz),
            valid_to=local_midnight(valid_to, tz) if valid_to is not None else None,
        )
        if rated.valid_for_period(period.start, period.end):
            out.append(identity)
    return sorted(out, key=repr)


def _effects(discounts: Sequence[DiscountIdentity]) -> list[tuple[Any, ...]]:
    """What the discounts do to a period they apply to: price and amount, not validity
    (ending a discount after a period leaves what it did to that period as it was)."""
    return sorted((d[:3] for d in discounts), key=repr)


def _discount_problem(
    number: int,
    ext: str,
    old: Any,
    before: Sequence[DiscountIdentity],
    after: Sequence[DiscountIdentity],
    own: Sequence[StoredInvoice],
) -> Problem | None:
    """Why the new discounts change what a finalized period was charged (None if they
    change no finalized period)."""
    for invoice in own:
        was = _applying(before, old.currency, old.timezone, invoice.period)
        now = _applying(after, old.currency, old.timezone, invoice.period)
        if _effects(was) == _effects(now):
            continue
        gone = ", ".join(_discount_text(d) for d in was if d[:3] not in _effects(now))
        new = ", ".join(_discount_text(d) for d in now if d[:3] not in _effects(was))
        change = " and ".join([f"removes {gone}"] * bool(gone) + [f"adds {new}"] * bool(new))
        last = _last_end(own, old.timezone)
        return Problem(
            number,
            "discounts",
            f"subscription {ext}: this file {change or 'changes the discounts'} for finalized"
            f" invoice {invoice.id} ({_local(invoice.period, old.timezone)}); a discount that"
            " priced a finalized invoice never changes in place: keep it (with valid_to"
            f" {last} or later it still applies to every finalized period) and give a change"
            f" its own discount with valid_from {last} or later",
        )
    return None


def _discount_text(identity: DiscountIdentity) -> str:
    price, percent, amount, valid_from, valid_to = identity
    off = f"{percent}% off" if percent is not None else f"{amount} off"
    return f"{off} {price} ({_days(valid_from, valid_to)})"
