"""The balance identity (DESIGN.md invariant 9) under random sequences of grants, usage
drawn down, invoice voids (consumption returned), expiries, rollovers (the rest moved to
a new grant of the next term) and grant voids: every step is a ledger entry made through
billing.credits.accounts.move, and the replay of the entries finds no problem, no
account below zero, and granted = consumed + expired + voided + rolled_over + remaining
for every grant; what rolled over is what the next terms' grants were issued."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.credits.accounts import Balance, BalanceError, Movement, move, replay
from rating.credits import CreditableLine, Grant, draw_down

D = Decimal
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Book:
    """The entries of each grant, as the ledger would hold them."""

    grants: dict[str, Grant] = field(default_factory=dict)
    amounts: dict[str, Decimal] = field(default_factory=dict)
    entries: dict[str, list[Movement]] = field(default_factory=dict)
    balances: dict[str, Balance] = field(default_factory=dict)
    # Consumption of each invoice: (grant, entry id, units).
    invoices: list[list[tuple[str, int, Decimal]]] = field(default_factory=list)
    voided: set[str] = field(default_factory=set)
    # Each grant that rolled over, and the grant of its next term.
    rolled: dict[str, str] = field(default_factory=dict)
    next_id: int = 1

    def write(self, grant_id: str, kind: str, amount: Decimal, reverses: int | None = None) -> int:
        after = move(self.balances[grant_id], kind, amount)  # raises: nothing written
        self.balances[grant_id] = after
        entry = Movement(
            kind, amount, self.next_id, available_after=after.remaining, reverses=reverses
        )
        self.entries[grant_id].append(entry)
        self.next_id += 1
        return entry.entry_id or 0


steps = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(1, 5000), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("usage"), st.integers(0, 3000), st.integers(0, 2000)),
        st.tuples(st.just("void_invoice"), st.integers(0, 20)),
        st.tuples(st.just("expire"), st.integers(0, 20)),
        st.tuples(st.just("void_grant"), st.integers(0, 20)),
        st.tuples(st.just("rollover"), st.integers(0, 20)),
        st.tuples(st.just("overdraw"), st.integers(0, 20)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_the_identity_holds_after_every_step(sequence: list[tuple]) -> None:  # type: ignore[type-arg]
    book = Book()
    month = 0
    for step in sequence:
        kind = step[0]
        names = sorted(book.grants)
        if kind == "grant":
            _, amount, priority, units = step
            gid = f"g{len(book.grants)}"
            book.grants[gid] = Grant(
                gid,
                "USD",
                D(amount),
                priority,
                START,
                None,
                len(book.grants),
                meter="fin" if units else None,
            )
            book.amounts[gid] = D(amount)
            book.entries[gid] = []
            book.balances[gid] = Balance(D(amount))
            book.write(gid, "grant", D(amount))
        elif kind == "usage":
            _, cents, quantity = step
            month += 1
            end = START + timedelta(days=31 * month)
            line = CreditableLine("l", "fin", "fin", D(quantity), D(cents) / 100, "USD")
            live = [
                Grant(
                    g.grant_id,
                    g.currency,
                    book.balances[g.grant_id].remaining,
                    g.priority,
                    g.effective_from,
                    g.expires_at,
                    g.order,
                    meter=g.meter,
                )
                for g in book.grants.values()
                if g.grant_id not in book.voided
            ]
            result = draw_down([line], live, period_end=end)
            made = []
            for c in result.consumptions:
                made.append((c.grant_id, book.write(c.grant_id, "consume", c.units), c.units))
            book.invoices.append(made)
        elif kind == "void_invoice" and book.invoices:
            for gid, entry_id, units in book.invoices.pop(step[1] % len(book.invoices)):
                book.write(gid, "reverse", units, reverses=entry_id)
        elif kind in ("expire", "void_grant") and names:
            gid = names[step[1] % len(names)]
            left = book.balances[gid].remaining
            if left > 0:
                book.write(gid, "expire" if kind == "expire" else "void", left)
            book.voided.add(gid)
        elif kind == "rollover" and names:
            # The term ends: the rest moves to the next term's grant, issued by its own
            # grant entry; the parent pays nothing more.
            gid = names[step[1] % len(names)]
            left = book.balances[gid].remaining
            if left > 0 and gid not in book.voided:
                book.write(gid, "rollover", left)
                child = f"{gid}:rollover"
                parent = book.grants[gid]
                book.grants[child] = Grant(
                    child,
                    "USD",
                    left,
                    parent.priority,
                    START,
                    None,
                    len(book.grants),
                    meter=parent.meter,
                )
                book.amounts[child] = left
                book.entries[child] = []
                book.balances[child] = Balance(left)
                book.write(child, "grant", left)
                book.rolled[gid] = child
            book.voided.add(gid)
        elif kind == "overdraw" and names:
            gid = names[step[1] % len(names)]
            before = book.balances[gid]
            with pytest.raises(BalanceError):
                book.write(gid, "consume", before.remaining + D("0.01"))
            assert book.balances[gid] == before
        for gid, entries in book.entries.items():
            result = replay(book.amounts[gid], entries)
            assert result.problems == [], (gid, result.problems)
            b = result.balance
            assert b == book.balances[gid] and b.balanced
            assert min(b.consumed, b.expired, b.voided, b.rolled_over, b.remaining) >= 0
        for parent, child in book.rolled.items():
            assert book.balances[parent].rolled_over == book.amounts[child]


def test_replay_finds_each_way_a_stored_ledger_breaks() -> None:
    ok = [Movement("grant", D(100), 1, "issuer", "available", D(100))]
    assert replay(D(100), ok).problems == []
    cases = {
        "issue 90": [Movement("grant", D(90), 1, "issuer", "available", D(90))],
        "below zero": [*ok, Movement("consume", D(150), 2, "available", "consumed", D(-50))],
        "stores a remaining balance of 70": [
            *ok,
            Movement("consume", D(20), 2, "available", "consumed", D(70)),
        ],
        "moves available -> consumed, not issuer -> consumed": [
            *ok,
            Movement("consume", D(20), 2, "issuer", "consumed", D(80)),
        ],
        "only 0 was consumed": [
            *ok,
            Movement("reverse", D(5), 2, "consumed", "available", D(105), 9),
        ],
        "first and only issue": [*ok, Movement("grant", D(5), 2, "issuer", "available", D(105))],
        "moves available -> rolled_over, not available -> expired": [
            *ok,
            Movement("rollover", D(100), 2, "available", "expired", D(0)),
        ],
        "cannot rollover 150": [
            *ok,
            Movement("rollover", D(150), 2, "available", "rolled_over", D(-50)),
        ],
        # The identity, broken, names every account (rolled over too).
        "granted 100 != consumed 0 + expired 0 + voided 0 + rolled over 0 + remaining 90": [
            Movement("grant", D(90), 1, "issuer", "available", D(90)),
        ],
    }
    for fragment, entries in cases.items():
        problems = replay(D(100), entries).problems
        assert any(fragment in p for p in problems), (fragment, problems)


def test_a_rollover_moves_the_rest_to_rolled_over_apart_from_breakage() -> None:
    b = move(move(Balance(D(100)), "grant", D(100)), "consume", D(30))
    rolled = move(b, "rollover", D(70))
    assert (rolled.consumed, rolled.expired, rolled.rolled_over, rolled.remaining) == (
        D(30),
        0,
        D(70),
        0,
    )
    assert rolled.balanced and not Balance(D(100), rolled_over=D(70)).balanced
    with pytest.raises(BalanceError, match=r"cannot rollover 70\.01"):
        move(b, "rollover", D("70.01"))
    with pytest.raises(BalanceError, match="positive amount"):
        move(b, "rollover", D(0))
    # A return after the rollover makes value available again, not rolled-over value back.
    back = move(move(rolled, "reverse", D(10)), "rollover", D(10))
    assert (back.consumed, back.rolled_over, back.remaining) == (D(20), D(80), 0)
    entries = [
        Movement("grant", D(100), 1, "issuer", "available", D(100)),
        Movement("consume", D(30), 2, "available", "consumed", D(70)),
        Movement("rollover", D(70), 3, "available", "rolled_over", D(0)),
    ]
    result = replay(D(100), entries)
    assert result.problems == [] and result.balance == rolled
