"""A rated line (rating.period.RatedLine) -> the ledger line it posts as
(billing.charges.charge_line), and the ledger's currency exponents, which are rating's."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import iso4217
import pytest

from billing.charges import charge_line
from billing.money import CurrencyError, exponent
from rating import Discount, Money, parse_price
from rating.money import minor_unit_exponent
from rating.period import PriceSpec, PriceVersionSpec, rate_period

D = Decimal
NOV = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def _spec(price_id: str, body: dict[str, object], meter: str | None, **filt: str) -> PriceSpec:
    version = PriceVersionSpec("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC), parse_price(body, name=price_id))
    return PriceSpec(price_id, meter, filt, [version], "count" if meter else None)


def _lines() -> list:  # type: ignore[type-arg]
    seats = _spec("seat_advanced", {"currency": "USD", "model": "per_unit", "unit_amount": "85"}, "seats", seat_type="advanced")
    fee = _spec("platform_fee", {"currency": "USD", "model": "flat", "amount": "100"}, None)
    quantities = {NOV: {("seats", (("seat_type", "advanced"),)): D(3)}}
    off = Discount(price_id="seat_advanced", percent_off=D("12.5"))
    return rate_period([seats, fee], start=NOV[0], end=NOV[1], quantities=quantities, discounts=[off],
                       minimum_commitment=Money(D(500), "USD"))


def test_every_kind_maps_to_its_ledger_line_with_the_same_key_parts_and_amounts() -> None:
    rated = _lines()
    posted = [charge_line(r) for r in rated]
    # 3 x 85 = 255; 12.5% off = -31.875 -> -31.88; flat 100; 255 - 31.88 + 100 = 323.12,
    # trued up to the 500 commitment by 176.88.
    assert [(p.price_id, p.price_version, p.kind, p.group, p.amount, p.amount_minor) for p in posted] == [
        ("platform_fee", "2026-01-01", "flat", None, D("100.00"), 10000),
        ("seat_advanced", "2026-01-01", "usage", "seat_type=advanced", D("255.00"), 25500),
        ("seat_advanced", "2026-01-01", "discount", "seat_type=advanced", D("-31.88"), -3188),
        ("minimum_commitment", "plan", "minimum_true_up", None, D("176.88"), 17688),
    ]
    assert posted[2].amount_precise == D("-31.875")
    assert posted[1].unit_amount == D(85) and posted[0].unit_amount is None
    assert posted[1].meter == posted[2].meter == "seats"
    for r, p in zip(rated, posted, strict=True):
        assert (p.quantity, p.currency, p.description) == (r.quantity, r.currency, r.description)


def test_the_breakdown_is_the_rated_detail_as_json() -> None:
    usage, fee = charge_line(_lines()[1]), charge_line(_lines()[0])
    # One version in the period: the entries carry no version label (the line's
    # price_version names it).
    assert usage.breakdown["breakdown"] == [
        {"kind": "unit", "version": None, "tier": None, "range_from": "0", "range_to": "3", "units": "3",
         "blocks": None, "unit_amount": "85", "flat_amount": "0", "amount": "255"}
    ]
    assert (usage.breakdown["amount_precise"], usage.breakdown["rounding"]) == ("255", "half_up")
    assert fee.breakdown["model"] == "flat" and fee.breakdown["amount"] == "100.00"
    true_up = charge_line(_lines()[3])
    assert true_up.breakdown == {"commitment": "500", "lines_total": "323.12"}
    assert true_up.description == "minimum commitment 500 USD: lines total 323.12, true-up 176.88"


def test_a_line_the_ledger_refuses_raises() -> None:
    # A price id with the key separator rates fine and is refused as a ledger line.
    spec = _spec("a|b", {"currency": "USD", "model": "flat", "amount": "1"}, None)
    (rated,) = rate_period([spec], start=NOV[0], end=NOV[1], quantities={})
    with pytest.raises(ValueError, match="must not contain"):
        charge_line(rated)


def test_the_ledger_reads_exponents_from_ratings_one_table() -> None:
    for currency in iso4217.Currency:
        code = currency.code
        if currency.exponent is None:
            with pytest.raises(CurrencyError, match="has no minor unit"):
                exponent(code)
        else:
            assert exponent(code) == minor_unit_exponent(code) == currency.exponent
    assert (exponent("JPY"), exponent("USD"), exponent("KWD")) == (0, 2, 3)
    with pytest.raises(CurrencyError, match="unknown ISO 4217 currency 'ABC'"):
        exponent("ABC")
    # Rating reads "usd"; the ledger stores only the upper-case code.
    assert minor_unit_exponent("usd") == 2
    with pytest.raises(CurrencyError, match="upper-case"):
        exponent("usd")
