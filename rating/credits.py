"""Credit drawdown: a period's usage lines paid from the customer's credit grants. Pure.

The rules (docs/credits.md, with a worked example; DESIGN.md invariant 9):

- **What is drawn down**: the period's usage lines after their discounts (a line's
  amount less its price's discount lines), before the plan's minimum true-up. Flat fees
  are not. A grant pays for lines in its own currency only.
- **Which grants**: those in effect at the period's end (``effective_from < end <=
  expires_at``, no expiry: always), as discounts (rating/discounts.py), not voided,
  with a balance, of the subscription or of the whole customer, and for each line only
  a grant that applies to it: all usage prices, the prices it lists, or the meters it
  lists. A grant of units of a meter pays for lines of that meter only.
- **Order**: grant by grant, by ``priority`` (lower first), then the earliest
  ``expires_at`` (a grant that never expires last), then the oldest grant (its ledger
  id). Each grant pays for the lines it applies to, in line key order, until it is
  empty; then the next grant pays for what is left.
- **Money grants** pay the line's amount left, up to their balance.
- **Unit grants** pay for quantities, valued at the line's average price (its amount
  after discounts over its quantity): N units pay ``amount x N / quantity``, rounded
  once to the minor unit (half-up); a grant that covers the rest of a line pays exactly
  the rest, so a line paid by several grants is paid to the cent. A line of quantity 0
  (a minimum fee) is paid by money grants only.
- What no grant pays is **overage**, billed at the price (the line as rated).

Each payment is a ``Consumption``: a negative amount for the invoice, linked to the
grant and the line it pays, and the units it takes from the grant's balance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Context, Decimal
from typing import TYPE_CHECKING

from rating.money import round_money

if TYPE_CHECKING:  # rating.period applies the drawdown: it imports this module
    from rating.period import RatedLine

ZERO = Decimal(0)
#: Wide enough for any quotient of two ledger amounts; a quotient is then rounded once.
_QUOTIENT = Context(prec=80, rounding=ROUND_DOWN)
#: Grant scopes (billing.models.GRANT_SCOPES).
ALL_USAGE = "all_usage"


@dataclass(frozen=True, slots=True)
class CreditableLine:
    """A usage line a grant may pay: its key (unique in the period), price, meter,
    quantity and amount after its discounts (major units, rounded, >= 0)."""

    key: str
    price_id: str
    meter: str | None
    quantity: Decimal
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class Grant:
    """A grant as the drawdown needs it: its balance (``remaining``, in its unit: money
    of ``currency``, or units of ``meter``) and what decides its turn and its lines.
    ``order`` is its age (the ledger's id: lower is older); ``subscription`` None means
    any subscription of the customer."""

    grant_id: str
    currency: str
    remaining: Decimal
    priority: int
    effective_from: datetime
    expires_at: datetime | None
    order: int
    meter: str | None = None
    applies_to: str = ALL_USAGE
    applies_to_ids: frozenset[str] = frozenset()
    subscription: str | None = None

    def in_effect(self, period_end: datetime) -> bool:
        """In effect at the period's end (the discounts' rule)."""
        return self.effective_from < period_end and (
            self.expires_at is None or period_end <= self.expires_at
        )

    def applies(self, line: CreditableLine) -> bool:
        if line.currency != self.currency:
            return False
        if self.meter is not None and line.meter != self.meter:
            return False
        if self.applies_to == "prices":
            return line.price_id in self.applies_to_ids
        if self.applies_to == "meters":
            return line.meter in self.applies_to_ids
        return True


def draw_order(grant: Grant) -> tuple[int, int, datetime, int]:
    """The documented order: priority, earliest expiry (none last), oldest."""
    never = grant.expires_at is None
    return (grant.priority, int(never), grant.expires_at or grant.effective_from, grant.order)


@dataclass(frozen=True, slots=True)
class Consumption:
    """One grant paying (part of) one line: ``amount`` is the invoice's negative line
    (major units, rounded), ``units`` what leaves the grant's balance (its unit)."""

    grant_id: str
    line_key: str
    price_id: str
    amount: Decimal
    units: Decimal
    currency: str

    @property
    def description(self) -> str:
        return f"credit {self.grant_id} on {self.price_id}"

    def doc(self, unit: str) -> dict[str, str]:
        """As a credit line's breakdown stores it (decimals as text): the grant, the line
        it pays, what it paid and what left the grant (``units`` of ``unit``: its
        currency or its meter)."""
        return {
            "grant_id": self.grant_id,
            "pays": self.line_key,
            "amount": format(self.amount, "f"),
            "units": format(self.units, "f"),
            "unit": unit,
        }


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The consumptions in the order made, each grant's balance after them, and each
    line's overage (what no grant paid)."""

    consumptions: tuple[Consumption, ...]
    remaining: Mapping[str, Decimal]
    overage: Mapping[str, Decimal]


def draw_down(
    lines: Sequence[CreditableLine],
    grants: Sequence[Grant],
    *,
    period_end: datetime,
    subscription: str | None = None,
) -> Drawdown:
    """Pay ``lines`` from ``grants`` in the documented order (module docstring). Grants
    not in effect at ``period_end``, of another subscription, or empty are left as they
    are. Raises ValueError for a negative line or balance, or two lines with one key."""
    ordered = sorted(lines, key=lambda ln: ln.key)
    if len({ln.key for ln in ordered}) != len(ordered):
        raise ValueError("two creditable lines have the same key")
    state: dict[str, _Left] = {}
    for line in ordered:
        if line.amount < 0 or line.quantity < 0:
            raise ValueError(f"line {line.key}: a creditable line is never negative")
        state[line.key] = _Left(line.amount, line.quantity)
    remaining = {g.grant_id: g.remaining for g in grants}
    out: list[Consumption] = []
    for grant in sorted(grants, key=draw_order):
        if grant.remaining < 0:
            raise ValueError(f"grant {grant.grant_id}: a balance is never negative")
        usable = grant.in_effect(period_end) and (
            grant.subscription is None or grant.subscription == subscription
        )
        if not usable:
            continue
        for line in ordered:
            balance = remaining[grant.grant_id]
            if balance <= 0:
                break
            left = state[line.key]
            if left.money <= 0 or not grant.applies(line):
                continue
            paid = _pay(grant, line, balance, left)
            if paid is None:
                continue
            value, units = paid
            remaining[grant.grant_id] = balance - units
            out.append(
                Consumption(grant.grant_id, line.key, line.price_id, -value, units, line.currency)
            )
    return Drawdown(tuple(out), remaining, {k: v.money for k, v in state.items()})


@dataclass(slots=True)
class _Left:
    """What no grant has paid of a line yet: money, and the units it is worth."""

    money: Decimal
    units: Decimal


def _pay(
    grant: Grant, line: CreditableLine, balance: Decimal, left: _Left
) -> tuple[Decimal, Decimal] | None:
    """Pay what ``grant`` can of the line (updating ``left``): (money value paid, units
    taken from the grant), or None when it can pay nothing."""
    if grant.meter is None:
        value = min(balance, left.money)
        # The units a part of the line is worth, for a unit grant drawn after this one.
        worth = left.units if value == left.money else _units_worth(line, value)
        left.money -= value
        left.units -= worth
        return value, value
    if left.units <= 0 or line.amount == 0:
        return None
    if balance >= left.units:
        # The grant covers the rest of the line: it pays exactly the rest.
        value, units = left.money, left.units
    else:
        value = min(
            round_money(_QUOTIENT.divide(line.amount * balance, line.quantity), line.currency),
            left.money,
        )
        units = balance
        if value <= 0:
            return None
    left.money -= value
    left.units -= units
    return value, units


def _units_worth(line: CreditableLine, value: Decimal) -> Decimal:
    """The units ``value`` of the line is worth at its average price (rounded down)."""
    if line.amount == 0:
        return ZERO
    return _QUOTIENT.divide(line.quantity * value, line.amount)


def creditable_lines(lines: Sequence[RatedLine], subscription: str) -> list[CreditableLine]:
    """A period's usage lines after their discounts (rating/period.py: a discount line
    has its price's id and group), keyed ``subscription|price|group``; flat fees,
    discounts and the minimum true-up are not drawn down."""
    discounts: dict[tuple[str, str | None], Decimal] = {}
    for line in lines:
        if line.kind == "discount":
            at = (line.price_id, line.group)
            discounts[at] = discounts.get(at, ZERO) + line.amount
    out = []
    for line in lines:
        if line.kind != "usage":
            continue
        net = line.amount + discounts.get((line.price_id, line.group), ZERO)
        out.append(
            CreditableLine(
                key=f"{subscription}|{line.price_id}|{line.group or ''}",
                price_id=line.price_id,
                meter=line.meter,
                quantity=line.quantity,
                amount=max(net, ZERO),
                currency=line.currency,
            )
        )
    return out
