"""rating.period.apply_credits: credit lines after the discounts, before the minimum
true-up, which keeps the usage total before credits (docs/rating.md, "Credits")."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from rating.credits import Grant
from rating.money import Money
from rating.period import MinimumTrueUp, RatedLine, apply_credits

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


def usage(price_id: str, quantity: str, amount: str) -> RatedLine:
    return RatedLine(
        price_id=price_id,
        price_version="v1",
        kind="usage",
        group=None,
        meter=price_id,
        quantity=Decimal(quantity),
        amount=Decimal(amount),
        amount_precise=Decimal(amount),
        currency="USD",
        unit_amount=None,
        detail=true_up("0").detail,
        description="",
    )


def true_up(amount: str) -> RatedLine:
    detail = MinimumTrueUp(
        Money(Decimal("2000.00"), "USD"),
        Money(Decimal("1793.00"), "USD"),
        Money(Decimal(amount), "USD"),
    )
    return RatedLine(
        price_id="minimum_commitment",
        price_version="plan",
        kind="minimum_true_up",
        group=None,
        meter=None,
        quantity=Decimal(1),
        amount=Decimal(amount),
        amount_precise=Decimal(amount),
        currency="USD",
        unit_amount=None,
        detail=detail,
        description=detail.explanation,
    )


def grant(grant_id: str, amount: str, **kw: object) -> Grant:
    return Grant(
        grant_id=grant_id,
        currency="USD",
        remaining=Decimal(amount),
        priority=50,
        effective_from=START,
        expires_at=None,
        order=1,
        **kw,  # type: ignore[arg-type]
    )


def test_credits_come_before_the_true_up_which_keeps_the_pre_credit_total() -> None:
    lines = [
        usage("resolution", "1200", "693.00"),
        usage("seat", "10", "1100.00"),
        true_up("207.00"),
    ]
    out = apply_credits(lines, [grant("G", "500.00")], period_end=END, subscription="sub_1")
    assert [ln.kind for ln in out] == ["usage", "usage", "credit", "minimum_true_up"]
    # Lines in key order: the resolutions first, which take the grant's whole 500.00.
    (credit,) = (ln for ln in out if ln.kind == "credit")
    assert (credit.price_id, credit.amount, credit.grant_id) == (
        "resolution",
        Decimal("-500.00"),
        "G",
    )
    assert sum(ln.amount for ln in out) == Decimal("1500.00")
    assert out[-1].amount == Decimal("207.00")  # unchanged by the credits


def test_no_grant_no_change_and_a_grant_not_in_effect_pays_nothing() -> None:
    lines = [usage("resolution", "10", "10.00")]
    assert apply_credits(lines, [], period_end=END) == lines
    late = Grant(
        grant_id="late",
        currency="USD",
        remaining=Decimal(100),
        priority=50,
        effective_from=END,
        expires_at=None,
        order=1,
    )
    assert apply_credits(lines, [late], period_end=END) == lines


def test_a_credit_line_records_its_grant_units_and_the_line_it_pays() -> None:
    lines = [usage("resolution", "100", "80.00")]
    units = Grant(
        grant_id="U",
        currency="USD",
        remaining=Decimal(25),
        priority=50,
        effective_from=START,
        expires_at=None,
        order=1,
        meter="resolution",
    )
    (_, credit) = apply_credits(lines, [units], period_end=END, subscription="s")
    assert (credit.kind, credit.quantity, credit.amount) == (
        "credit",
        Decimal(25),
        Decimal("-20.00"),
    )
    assert credit.breakdown() == {
        "grant_id": "U",
        "pays": "s|resolution|",
        "amount": "-20.00",
        "units": "25",
        "unit": "resolution",
    }
    assert credit.description == "credit grant U pays 25 resolution (20.00 USD) of resolution"
