"""A credit grant's double-entry accounts, replayed from its ledger entries. Pure.

Every entry moves a positive amount from one account of its grant to another, always
the same pair for its kind (billing.models.CREDIT_MOVES):

| kind | from | to | when |
|---|---|---|---|
| grant | issuer | available | the grant is created: its whole amount becomes available |
| consume | available | consumed | an invoice line is paid from the grant |
| reverse | consumed | available | a consumption returned (invoice voided, line corrected down) |
| expire | available | expired | the grant expires with a balance left (breakage) |
| void | available | issuer | the grant is voided: what is left goes back |
| rollover | available | rolled_over | a rollover grant's term ends: the rest moves on |

(the rest of a ``rollover`` moves to the next term's grant, which issues it by its own
``grant`` entry: billing/credits/store.py)

So the accounts always add up to zero, and for every grant (DESIGN.md invariant 9)::

    granted = consumed + expired + voided + rolled_over + remaining

where ``granted`` is the grant's amount, ``voided`` what a void took back (zero for a
grant never voided), ``rolled_over`` what moved to the next term's grant (zero for a
grant that does not roll over, which leaves the issue's form: granted = consumed +
expired + remaining) and ``remaining`` the available balance. ``expired`` (breakage)
and ``rolled_over`` stay apart: the first is lost to the customer, the second is still
theirs, and revenue recognition treats them differently. No account is ever below zero,
at any entry: a grant never pays more than it holds, and nothing is returned that was
not consumed. ``replay`` recomputes all of it from the entries and lists every way a
stored ledger breaks it (reconcile reports them: meterline/audit/reconcile).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal

from billing.models import CREDIT_MOVES

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Movement:
    """One ledger entry as the accounts see it. ``available_after`` is what the entry
    stored as the grant's balance after it (None: not stored, nothing to compare);
    ``reverses`` the id of the consumption a reversal returns."""

    kind: str
    amount: Decimal
    entry_id: int | None = None
    from_account: str | None = None
    to_account: str | None = None
    available_after: Decimal | None = None
    reverses: int | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """A grant's accounts: what was granted (its amount) and where it is now."""

    granted: Decimal
    consumed: Decimal = ZERO
    expired: Decimal = ZERO
    voided: Decimal = ZERO
    remaining: Decimal = ZERO
    # Last, so that the five accounts of a grant that never rolls over keep their places.
    rolled_over: Decimal = ZERO

    @property
    def balanced(self) -> bool:
        """The identity: granted = consumed + expired + voided + rolled_over + remaining."""
        return self.granted == (
            self.consumed + self.expired + self.voided + self.rolled_over + self.remaining
        )


@dataclass
class Replay:
    """A grant's ledger replayed: its balance and every problem found, in entry order."""

    balance: Balance
    problems: list[str] = field(default_factory=list)


class BalanceError(ValueError):
    """A movement the grant cannot make (more than it holds, a return of more than was
    consumed, an amount that is not positive). Nothing was written."""


#: The account each kind that takes value out of ``available`` moves it to.
_OUT_OF_AVAILABLE = {
    "consume": "consumed",
    "expire": "expired",
    "void": "voided",
    "rollover": "rolled_over",
}


def move(balance: Balance, kind: str, amount: Decimal) -> Balance:
    """The balance after moving ``amount`` (> 0) by an entry of ``kind``. Raises
    BalanceError when an account would go below zero, ValueError for an unknown kind."""
    if kind not in CREDIT_MOVES:
        raise ValueError(f"unknown credit ledger entry kind {kind!r}")
    if not amount > 0:
        raise BalanceError(f"a {kind} entry moves a positive amount, not {amount}")
    if kind == "grant":
        # The grant entry makes the grant's amount available; nothing else is issued.
        return replace(balance, remaining=balance.remaining + amount)
    if kind == "reverse":
        if amount > balance.consumed:
            raise BalanceError(f"cannot return {amount}: only {balance.consumed} was consumed")
        return replace(
            balance, consumed=balance.consumed - amount, remaining=balance.remaining + amount
        )
    if amount > balance.remaining:
        raise BalanceError(
            f"cannot {kind} {amount}: the grant's remaining balance is {balance.remaining}"
        )
    return _out_of_available(balance, kind, amount)


def _out_of_available(balance: Balance, kind: str, amount: Decimal) -> Balance:
    account = _OUT_OF_AVAILABLE[kind]
    return replace(
        balance,
        remaining=balance.remaining - amount,
        **{account: getattr(balance, account) + amount},
    )


def replay(granted: Decimal, movements: Iterable[Movement]) -> Replay:
    """Replay a grant's entries (in id order) against its amount ``granted``: its
    balance, and every problem (an entry with other accounts than its kind's, a movement
    an account could not make, a stored balance that differs from the replayed one, a
    first entry that is not the grant's whole amount, the identity broken). A movement
    that cannot be made is listed and then counted anyway, so later problems show too."""
    result = Replay(Balance(granted))
    issued = ZERO
    returned: dict[int, Decimal] = {}
    consumed_by: dict[int, Decimal] = {}
    for n, m in enumerate(movements):
        where = f"entry {m.entry_id}" if m.entry_id is not None else f"entry #{n + 1}"
        pair = CREDIT_MOVES.get(m.kind)
        if pair is None:
            result.problems.append(f"{where}: unknown kind {m.kind!r}")
            continue
        if m.from_account is not None and (m.from_account, m.to_account) != pair:
            result.problems.append(
                f"{where}: a {m.kind} entry moves {pair[0]} -> {pair[1]}, not"
                f" {m.from_account} -> {m.to_account}"
            )
        if (n == 0) != (m.kind == "grant"):
            result.problems.append(
                f"{where}: the grant entry must be the grant's first and only issue"
            )
        if m.kind == "grant":
            issued += m.amount
        if m.kind == "consume" and m.entry_id is not None:
            consumed_by[m.entry_id] = m.amount
        if m.kind == "reverse" and m.reverses is not None:
            returned[m.reverses] = returned.get(m.reverses, ZERO) + m.amount
            if returned[m.reverses] > consumed_by.get(m.reverses, ZERO):
                result.problems.append(
                    f"{where}: returns {returned[m.reverses]} in all of consumption entry"
                    f" {m.reverses}, which consumed {consumed_by.get(m.reverses, ZERO)}"
                )
        try:
            result.balance = move(result.balance, m.kind, m.amount)
        except BalanceError as exc:
            result.problems.append(f"{where}: {exc}; a balance went below zero")
            result.balance = _forced(result.balance, m.kind, m.amount)
        if m.available_after is not None and m.available_after != result.balance.remaining:
            result.problems.append(
                f"{where}: stores a remaining balance of {m.available_after}, the entries"
                f" before it and its own make {result.balance.remaining}"
            )
    if issued != granted:
        result.problems.append(f"the grant is of {granted}, its grant entries issue {issued}")
    if not result.balance.balanced:
        b = result.balance
        result.problems.append(
            f"granted {b.granted} != consumed {b.consumed} + expired {b.expired} + voided"
            f" {b.voided} + rolled over {b.rolled_over} + remaining {b.remaining}"
        )
    return result


def _forced(balance: Balance, kind: str, amount: Decimal) -> Balance:
    """The movement made without its check (negative accounts show in the replay)."""
    if kind == "reverse":
        return replace(
            balance, consumed=balance.consumed - amount, remaining=balance.remaining + amount
        )
    if kind == "grant" or amount <= 0:
        return balance
    return _out_of_available(balance, kind, amount)
