"""Credit drawdown (rating/credits.py, docs/credits.md): the worked example, the order,
unit grants valued at the line's price, and properties (hypothesis)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from rating.credits import CreditableLine, Grant, creditable_lines, draw_down
from rating.money import round_money
from rating.period import RatedLine

D = Decimal
END = datetime(2026, 12, 1, 5, tzinfo=UTC)  # November's end in America/New_York
FIN = CreditableLine(
    "sub_1|fin_resolution|", "fin_resolution", "fin_resolution", D(1200), D("1069.20"), "USD"
)
SEATS = CreditableLine(
    "sub_1|seat_advanced|seat_type=advanced", "seat_advanced", "seats", D(10), D("990.00"), "USD"
)


def grant(grant_id: str, remaining: str, order: int, **kw: object) -> Grant:
    values: dict[str, object] = {
        "currency": "USD",
        "priority": 50,
        "effective_from": datetime(2026, 1, 1, 5, tzinfo=UTC),
        "expires_at": None,
    }
    values.update(kw)
    return Grant(grant_id, remaining=D(remaining), order=order, **values)  # type: ignore[arg-type]


def test_the_worked_example_of_docs_credits() -> None:
    a = grant(
        "A", "1000", 1, meter="fin_resolution", expires_at=datetime(2027, 1, 1, 5, tzinfo=UTC)
    )
    b = grant(
        "B",
        "300",
        2,
        priority=10,
        expires_at=datetime(2026, 12, 31, 5, tzinfo=UTC),
        applies_to="meters",
        applies_to_ids=frozenset({"seats"}),
    )
    c = grant("C", "500", 3)
    result = draw_down([SEATS, FIN], [c, a, b], period_end=END, subscription="sub_1")
    assert [(x.grant_id, x.price_id, x.amount, x.units) for x in result.consumptions] == [
        ("B", "seat_advanced", D("-300.00"), D("300.00")),
        ("A", "fin_resolution", D("-891.00"), D(1000)),
        ("C", "fin_resolution", D("-178.20"), D("178.20")),
        ("C", "seat_advanced", D("-321.80"), D("321.80")),
    ]
    assert result.remaining == {"A": 0, "B": 0, "C": 0}
    assert result.overage == {FIN.key: 0, SEATS.key: D("368.20")}


def test_order_is_priority_then_earliest_expiry_then_oldest() -> None:
    early = datetime(2026, 12, 15, tzinfo=UTC)
    late = datetime(2027, 6, 1, tzinfo=UTC)
    grants = [
        grant("never", "100", 1),
        grant("late", "100", 2, expires_at=late),
        grant("early_new", "100", 4, expires_at=early),
        grant("early_old", "100", 3, expires_at=early),
        grant("urgent", "100", 5, priority=0),
    ]
    line = CreditableLine("k", "fin_resolution", "fin_resolution", D(1000), D("450"), "USD")
    result = draw_down([line], grants, period_end=END)
    assert [c.grant_id for c in result.consumptions] == [
        "urgent",
        "early_old",
        "early_new",
        "late",
        "never",
    ]
    assert result.remaining["never"] == D(50)


def test_only_grants_in_effect_at_the_period_end_of_the_subscription_and_scope_pay() -> None:
    grants = [
        grant("expired_mid_period", "100", 1, expires_at=END - timedelta(days=1)),
        grant("not_yet", "100", 2, effective_from=END),
        grant("other_sub", "100", 3, subscription="sub_2"),
        grant("eur", "100", 4, currency="EUR"),
        grant("prices", "100", 5, applies_to="prices", applies_to_ids=frozenset({"seat_expert"})),
        grant("seat_units", "100", 6, meter="seats"),
        grant("until_end", "7", 7, expires_at=END),  # expires_at == end covers the period
    ]
    result = draw_down([FIN], grants, period_end=END, subscription="sub_1")
    assert [(c.grant_id, c.amount) for c in result.consumptions] == [("until_end", D("-7"))]


def test_unit_grants_pay_at_the_lines_average_price_and_a_line_to_the_cent() -> None:
    line = CreditableLine("k", "p", "m", D(3), D("10.00"), "USD")
    grants = [grant(f"u{i}", "1", i, meter="m") for i in range(3)]
    result = draw_down([line], grants, period_end=END)
    assert [c.amount for c in result.consumptions] == [D("-3.33"), D("-3.33"), D("-3.34")]
    assert [c.units for c in result.consumptions] == [1, 1, 1]
    # A money grant first: the unit grant then pays the units the rest is worth.
    money = grant("money", "5.00", 0, priority=0)
    result = draw_down([line], [money, grant("u", "5", 1, meter="m")], period_end=END)
    assert [(c.grant_id, c.amount, c.units) for c in result.consumptions] == [
        ("money", D("-5.00"), D("5.00")),
        ("u", D("-5.00"), D("1.5")),
    ]
    assert result.remaining["u"] == D("3.5")
    # A line of quantity 0 (a minimum fee) is paid by money grants only.
    fee = CreditableLine("f", "p", "m", D(0), D("20.00"), "USD")
    assert draw_down([fee], [grant("u", "5", 1, meter="m")], period_end=END).consumptions == ()


def rated(kind: str, price_id: str, amount: str, group: str | None = None) -> RatedLine:
    return RatedLine(
        price_id=price_id,
        price_version="v1",
        kind=kind,  # type: ignore[arg-type]
        group=group,
        meter="fin_resolution" if price_id == "fin_resolution" else None,
        quantity=D(1200) if kind == "usage" else D(1),
        amount=D(amount),
        amount_precise=D(amount),
        currency="USD",
        unit_amount=None,
        detail=None,  # type: ignore[arg-type]
        description="",
    )


def test_creditable_lines_are_usage_after_discounts() -> None:
    lines = [
        rated("usage", "fin_resolution", "1188.00"),
        rated("discount", "fin_resolution", "-118.80"),
        rated("usage", "seat_advanced", "990.00", "seat_type=advanced"),
        rated("discount", "seat_advanced", "-5.00", "seat_type=essential"),  # another group
        rated("flat", "platform_fee", "250.00"),
        rated("minimum_true_up", "minimum_commitment", "10.00"),
    ]
    assert [(c.key, c.amount) for c in creditable_lines(lines, "sub_1")] == [
        ("sub_1|fin_resolution|", D("1069.20")),
        ("sub_1|seat_advanced|seat_type=advanced", D("990.00")),
    ]


CURRENCIES = ["USD", "JPY", "KWD"]
amounts = st.decimals(min_value=0, max_value=10_000, places=0)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[CreditableLine], list[Grant]]:
    currency = draw(st.sampled_from(CURRENCIES))
    lines = []
    for i in range(draw(st.integers(1, 4))):
        quantity = draw(st.decimals(min_value=0, max_value=5000, places=draw(st.integers(0, 2))))
        unit = draw(st.decimals(min_value=0, max_value=5, places=3))
        lines.append(
            CreditableLine(
                f"l{i}",
                f"p{i % 2}",
                f"m{i % 3}",
                quantity,
                round_money(quantity * unit, currency),
                currency,
            )
        )
    grants = []
    for i in range(draw(st.integers(0, 5))):
        unit_grant = draw(st.booleans())
        grants.append(
            Grant(
                f"g{i}",
                currency=currency,
                remaining=draw(st.decimals(min_value=0, max_value=3000, places=1))
                if unit_grant
                else round_money(draw(amounts), currency),
                priority=draw(st.integers(0, 3)),
                effective_from=datetime(2026, 1, 1, tzinfo=UTC),
                expires_at=draw(st.sampled_from([None, END, END + timedelta(days=9)])),
                order=i,
                meter=f"m{draw(st.integers(0, 2))}" if unit_grant else None,
                applies_to=draw(st.sampled_from(["all_usage", "prices", "meters"])),
                applies_to_ids=frozenset(draw(st.sets(st.sampled_from(["p0", "p1", "m0", "m1"])))),
            )
        )
    return lines, grants


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_drawdown_pays_each_line_at_most_once_and_no_grant_below_zero(
    case: tuple[list[CreditableLine], list[Grant]], rnd: random.Random
) -> None:
    lines, grants = case
    result = draw_down(lines, grants, period_end=END)
    by_grant = {g.grant_id: g for g in grants}
    for line in lines:
        paid = [c for c in result.consumptions if c.line_key == line.key]
        assert sum((-c.amount for c in paid), D(0)) + result.overage[line.key] == line.amount
        assert result.overage[line.key] >= 0
        for c in paid:
            assert c.amount < 0 and c.amount == round_money(c.amount, line.currency)
            assert by_grant[c.grant_id].applies(line)
    for g in grants:
        used = sum((c.units for c in result.consumptions if c.grant_id == g.grant_id), D(0))
        assert result.remaining[g.grant_id] == g.remaining - used >= 0
        if g.meter is None:
            assert all(
                c.units == -c.amount for c in result.consumptions if c.grant_id == g.grant_id
            )
    # The order of the inputs changes nothing.
    shuffled_lines, shuffled_grants = list(lines), list(grants)
    rnd.shuffle(shuffled_lines)
    rnd.shuffle(shuffled_grants)
    assert draw_down(shuffled_lines, shuffled_grants, period_end=END) == result
