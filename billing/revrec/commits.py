"""Paid commitments in revenue recognition (pure; docs/revrec.md, "Credits").

A paid commitment's price is billed when it starts and held as deferred revenue. Its
value leaves the grant in four ways, each moving the matching part of the price:

- a credit line pays usage: that part of the price is **released** to revenue on the
  days of the usage the credit paid (the credit line itself, minus the value, is on the
  same days: together the customer's usage is recognized at what the commitment cost
  per unit of value: the release, not the list value);
- its term ends with value left: **breakage**, recognized on the expiry day;
- it is voided: the unused part's price is un-billed (a credit memo) on the void day;
- it rolls over: the part's price moves, still deferred, to the next term's grant.

The part of the price a movement carries is computed on the running balance, so the
parts add up to the price exactly: with `P` the price (minor units) and `G` the units
granted, the deferred revenue while `r` units remain is ``round_half_up(r x P / G)``,
and a movement of `u` units carries ``value(r) - value(r - u)``. A grant that a
rollover created starts with what the rollover moved (its own recorded price, which the
credit ledger computed the same way: checked).

Promotional credits have no price: their credit lines are revenue reductions (contra
revenue) and nothing else happens here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext

from billing.revrec.allocate import Weight, allocate
from billing.revrec.model import (
    BillingEvent,
    GrantEntry,
    RevGrant,
    RevLine,
    Schedule,
    ScheduleRow,
    Transfer,
    last_day,
    local_day,
)

PAID = "paid_commit"
#: The product line breakage is booked under.
BREAKAGE_PRODUCT = "paid_commit"


def deferred_value(remaining: Decimal, granted: Decimal, price_minor: int) -> int:
    """The part of a commitment's price (minor units) that `remaining` of its `granted`
    units carry: remaining x price / granted, rounded half-up to the minor unit."""
    if granted <= 0:
        raise ValueError(f"a grant's amount must be above 0, got {granted}")
    with localcontext(prec=120):
        exact = remaining * Decimal(price_minor) / granted
        return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


def _order(item: RevLine | GrantEntry) -> tuple[datetime, int, bool, str]:
    """Movements in the credit ledger's order: by when they take effect (a consumption
    at the end of the period it paid, an expiry at the grant's end), consumption first
    at the same instant (close finalizes before it expires grants), and among the lines
    of one instant the units given back before those taken (finalize records a
    correction's returns first: billing.lifecycle.consume_credits)."""
    if isinstance(item, RevLine):
        return (item.service_end, 0, item.quantity >= 0, f"{item.line_id:020d}")
    return (item.effective_at, 1, False, item.key)


def commit_schedule(
    grant: RevGrant,
    credit_lines: Sequence[RevLine],
    placed: Mapping[str, Sequence[tuple[date, int]]],
    *,
    next_term: RevGrant | None = None,
    billed_on: date | None = None,
) -> Schedule:
    """The releases, breakage, billing and rollover transfer of one grant (nothing for a
    promotional credit). `credit_lines` are the live lines it paid (credit lines and
    adjustments of them: quantity = units taken, negative for units given back);
    `placed` the days and amounts of every line (the credit lines' days are where their
    releases go); `next_term` the grant its rollover created; `billed_on` the day the
    commitment was billed (its first term's start)."""
    out = Schedule()
    if grant.kind != PAID or grant.price_paid_minor is None:
        return out
    price, granted = grant.price_paid_minor, grant.granted
    start_day = local_day(grant.effective_from, grant.timezone)
    billed = billed_on or start_day
    if grant.rolled_over_from is None:
        out.billing.append(
            BillingEvent(
                key=f"commit|{grant.grant_id}",
                customer=grant.customer,
                currency=grant.currency,
                day=start_day,
                amount_minor=price,
                kind="commit",
                grant_id=grant.grant_id,
            )
        )
    moves: list[RevLine | GrantEntry] = sorted([*credit_lines, *grant.entries], key=_order)
    remaining = granted
    pending = Decimal(0)  # units of draft credit lines: not in the credit ledger yet
    for move in moves:
        units = move.quantity if isinstance(move, RevLine) else move.amount
        before = deferred_value(remaining, granted, price)
        remaining -= units
        part = before - deferred_value(remaining, granted, price)
        if remaining < 0:
            out.problems.append(
                f"credit grant {grant.grant_id}: its lines and entries take more than it"
                f" holds ({-remaining} over)"
            )
        if isinstance(move, RevLine):
            if move.billed_on is None:
                pending += units
            out.rows += _releases(grant, move, part, placed.get(move.key, ()), billed)
        else:
            _entry(out, grant, move, part, next_term, billed)
    if grant.remaining is not None and remaining + pending != grant.remaining:
        out.problems.append(
            f"credit grant {grant.grant_id}: its credit lines and entries leave"
            f" {remaining + pending} of {granted}, its credit ledger holds {grant.remaining}"
        )
    return out


def _releases(
    grant: RevGrant,
    line: RevLine,
    part: int,
    days: Sequence[tuple[date, int]],
    billed: date,
) -> list[ScheduleRow]:
    """The commitment's `part` released on the days of the credit line `line`."""
    if part == 0:
        return []
    weights: list[tuple[date, Weight]] = [(d, abs(a)) for d, a in days if a]
    if not weights:
        weights = [(d, 1) for d in line.days] or [(last_day(line.service_end, line.timezone), 1)]
    return [
        ScheduleRow(
            key=f"{grant.grant_id}|release|{line.key}@{day.isoformat()}",
            customer=grant.customer,
            currency=grant.currency,
            day=day,
            amount_minor=amount,
            category="commit_release",
            rule="commit_release",
            product=line.price_id,
            line_key=line.key,
            line_id=line.line_id,
            invoice_id=line.invoice_id,
            grant_id=grant.grant_id,
            billed_on=billed,
        )
        for day, amount in allocate(part, weights)
        if amount
    ]


def _entry(
    out: Schedule,
    grant: RevGrant,
    entry: GrantEntry,
    part: int,
    next_term: RevGrant | None,
    billed: date,
) -> None:
    day = local_day(entry.effective_at, grant.timezone)
    if entry.kind == "expire":
        if part:
            out.rows.append(
                ScheduleRow(
                    key=f"{entry.key}@{day.isoformat()}",
                    customer=grant.customer,
                    currency=grant.currency,
                    day=day,
                    amount_minor=part,
                    category="breakage",
                    rule="breakage",
                    product=BREAKAGE_PRODUCT,
                    grant_id=grant.grant_id,
                    billed_on=billed,
                )
            )
    elif entry.kind == "void":
        out.billing.append(
            BillingEvent(
                key=entry.key,
                customer=grant.customer,
                currency=grant.currency,
                day=day,
                amount_minor=-part,
                kind="commit_void",
                grant_id=grant.grant_id,
            )
        )
    else:  # rollover
        if next_term is None:
            out.problems.append(
                f"credit grant {grant.grant_id} rolled over, but no grant names it as the"
                " term before"
            )
            return
        if next_term.price_paid_minor != part:
            out.problems.append(
                f"credit grant {next_term.grant_id}: its price paid is"
                f" {next_term.price_paid_minor} minor units, the part of"
                f" {grant.grant_id}'s price its rollover carried is {part}"
            )
        out.transfers.append(
            Transfer(grant.customer, grant.currency, day, grant.grant_id, next_term.grant_id, part)
        )
