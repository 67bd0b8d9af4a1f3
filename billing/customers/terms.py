"""Rule 3 of billing.customers.checks: the terms that priced an invoice never change in
place (the catalog's edit rule, billing/catalog/edit_rule.py, for subscriptions).

Close, the late-usage corrections and the audit re-rate a finalized period with the
subscription's terms as the ledger holds them, so a reload may not change what priced a
finalized invoice: its plan, currency, billing anchor day, timezone, start date (the last
four neither once it has any live invoice: they move its periods), the discounts that
applied to a finalized period (valid at its end), or an end date that changes a
finalized invoice's period. What to do instead: end the subscription after its last
finalized period and add a new one with the new terms from that day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from billing.customers.checks import (
    PLACING,
    PRICING,
    Stored,
    StoredInvoice,
    days_text,
    same_discounts,
)
from billing.customers.errors import Problem
from billing.customers.rows import CustomerRow, DiscountIdentity
from billing.periods import (
    Period,
    Terms,
    iter_periods,
    local_midnight,
    period_containing,
    zone,
)
from rating import Discount


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
        for name, column in PRICING:
            before, after = getattr(old, column), getattr(row, name)
            if before == after:
                continue
            changed = True
            if finalized:
                problems.append(_frozen(number, ext, name, before, after, finalized[-1], own, old))
            elif name in PLACING:
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


def allowed_ends(
    old: Terms, finalized: Sequence[StoredInvoice]
) -> tuple[date | None, date | None, bool]:
    """Exactly the end dates that leave every finalized invoice's period as it is, as
    (first, last, open_ended): every date from `first` (None: any after the start) to
    `last` (None: no limit), and None (open-ended) too when `open_ended`. The current end
    is always among them.

    Each finalized invoice sets one bound, with X its last anchor cycle's end (all in the
    subscription's timezone, ends exclusive): one outside the periods (a carrier of
    corrections after the end) needs an end on or before its start; one of the periods
    needs an end on or after X, unless the current end cuts it (before X): then that end
    is the only one (any other changes its period)."""
    tz = old.timezone
    first: date | None = None
    last: date | None = None
    open_ended = True
    for invoice in finalized:
        if not _overlapping(old, invoice.period):
            begins = invoice.period.start.astimezone(zone(tz)).date()
            last = begins if last is None else min(last, begins)
            open_ended = False
            continue
        before_end = invoice.period.end - timedelta(microseconds=1)
        cycle_end = period_containing(old.billing_anchor_day, tz, before_end).end
        x = cycle_end.astimezone(zone(tz)).date()
        if old.end_date is not None and old.end_date < x:
            return old.end_date, old.end_date, False
        first = x if first is None else max(first, x)
    return first, last, open_ended


def allowed_text(first: date | None, last: date | None, open_ended: bool) -> str:
    """`allowed_ends` in words: "2026-04-01 or later, or none (open-ended)"."""
    if first is not None and first == last:
        return f"only {first} (where it is now)"
    if last is not None:
        return f"from {first} to {last}" if first is not None else f"{last} or earlier"
    if first is None:
        return "any date, or none (open-ended)"
    return f"{first} or later" + (", or none (open-ended)" if open_ended else "")


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
    (an invoice after the end carrying corrections). The refusal names exactly the ends
    allowed (allowed_ends)."""
    new = Terms(old.billing_anchor_day, old.timezone, old.start_date, end)
    shown = str(end) if end is not None else "none (open-ended)"
    for invoice in finalized:
        before = _overlapping(old, invoice.period)
        if _overlapping(new, invoice.period) == before:
            continue
        span = _local(invoice.period, old.timezone)
        allowed = allowed_text(*allowed_ends(old, finalized))
        if before:
            return Problem(
                number,
                "end",
                f"subscription {ext} has finalized invoice {invoice.id} ({span}); an end of"
                f" {shown} would change that period, and a finalized period never changes:"
                f" the end can be {allowed}",
            )
        return Problem(
            number,
            "end",
            f"subscription {ext} ended on {old.end_date}, and finalized invoice {invoice.id}"
            f" ({span}) carries corrections after its end; an end of {shown} would make that"
            f" a billed period: the end can be {allowed}; add a new subscription for later"
            " days",
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
    return f"{off} {price} ({days_text(valid_from, valid_to)})"
