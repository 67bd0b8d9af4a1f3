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
3. **Finalized terms stay** (billing/customers/terms.py): the rule the catalog applies
   to past prices (billing/catalog/edit_rule.py), for a subscription's terms: the terms
   that priced a finalized invoice never change in place; ending a subscription after
   its last finalized period, then a new subscription from that day, is the way to
   change them.
4. **One Stripe customer per customer** (`stripe_id_problems`): a file customer's
   Stripe customer id is not that of a stored customer the file does not list (the
   file's own customers are checked against each other by billing.customers.read). A
   customer's Stripe terms (id, collection method, days until due) are delivery terms,
   not pricing terms: a reload may change them at any time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from billing import bulk
from billing.customers.errors import Problem
from billing.customers.read import shared_stripe_id
from billing.customers.rows import CustomerRow, DiscountIdentity, discount_identity
from billing.models import Customer, Invoice, Plan, PriceVersion, Subscription, SubscriptionDiscount
from billing.periods import Period

# The terms that price every period of a subscription: (file field, ledger column).
PRICING = (
    ("plan", "plan_id"),
    ("currency", "currency"),
    ("billing_anchor_day", "billing_anchor_day"),
    ("timezone", "timezone"),
    ("start", "start_date"),
)
# Every term a row gives its subscription.
TERMS = (*PRICING, ("end", "end_date"))
# Of those, the terms that place its periods: fixed once it has any live invoice.
PLACING = frozenset({"currency", "billing_anchor_day", "timezone", "start"})


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
                any(getattr(old, column) != getattr(row, name) for name, column in TERMS)
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


def days_text(start: date, end: date | None) -> str:
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
        f" customer {customer} ({other.where()}: {days_text(other.start, other.end)}) from"
        f" {days_text(*common)}, and both plans ({row.plan}, {other.plan}) price the usage of"
        f" meter{'s' if len(meters) > 1 else ''} {', '.join(meters)}:"
        " usage is billed by customer and meter, so both would bill the same events;"
        f" {fix}",
    )


def stripe_id_problems(session: Session, rows: Sequence[tuple[int, CustomerRow]]) -> list[Problem]:
    """File customers whose Stripe customer id a stored customer not in the file has
    (module docstring, rule 4), on each such customer's first line."""
    first: dict[str, tuple[int, str | None]] = {}
    for number, row in rows:
        first.setdefault(row.customer_id, (number, row.stripe_customer_id))
    wanted = {sid: (number, ext) for ext, (number, sid) in first.items() if sid is not None}
    problems: list[Problem] = []
    for part in bulk.in_chunks(session, sorted(wanted)):
        for owner, sid in session.execute(
            select(Customer.external_id, Customer.stripe_customer_id).where(
                bulk.where_in(session, Customer.stripe_customer_id, part)
            )
        ):
            # A stored customer the file lists gets the file's id: read.py compares those.
            if sid is None or owner in first:
                continue
            number, customer = wanted[sid]
            problems.append(shared_stripe_id(number, customer, sid, owner, "in the ledger"))
    return problems
