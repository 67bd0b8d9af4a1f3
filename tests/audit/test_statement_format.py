"""The statement's pure parts: amounts with their currency's minor unit, quantities with
their meaningful decimals, tier tables from the rating's typed results, and how
`--period` finds a billing period in the subscription's timezone. No database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.periods import Terms, iter_periods
from meterline.audit.statement import (
    LocalPeriod,
    money_text,
    not_found_message,
    parse_period,
    quantity_text,
    tier_table,
    working,
)
from rating import parse_price, rate, rate_windows

D = Decimal


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        # ISO 4217 minor units: JPY 0, USD 2, KWD 3 (an amount is never cut to two).
        ("3668", "JPY", "3,668"),
        ("3667.8", "USD", "3,667.80"),
        ("12.345", "KWD", "12.345"),
        ("12.3", "KWD", "12.300"),
        ("-1234567.5", "USD", "-1,234,567.50"),
        ("0", "KWD", "0.000"),
        ("1E+3", "USD", "1,000.00"),
        ("0.990000000000", "USD", "0.99"),
        # More decimals than the minor unit (a unit price, an unrounded tier amount):
        # shown whole, never rounded or cut for display.
        ("0.0125", "USD", "0.0125"),
        ("0.0005", "KWD", "0.0005"),
        ("1.5", "JPY", "1.5"),
    ],
)
def test_money_text_uses_the_currency_minor_unit(amount: str, currency: str, text: str) -> None:
    assert money_text(D(amount), currency) == text


@pytest.mark.parametrize(
    ("quantity", "places", "text"),
    [
        ("12226.000000000", None, "12,226"),
        ("1.500000000", None, "1.5"),
        ("0E-9", None, "0"),
        ("1E+3", None, "1,000"),
        ("2.029530201", None, "2.029530201"),
        # The customer view: three decimals at most, "≈" when that rounded.
        ("2.029530201", 3, "≈ 2.03"),
        ("10.333333333", 3, "≈ 10.333"),
        ("12226.000000000", 3, "12,226"),
        ("0.125000000", 3, "0.125"),
    ],
)
def test_quantity_text_shows_meaningful_decimals(
    quantity: str, places: int | None, text: str
) -> None:
    assert quantity_text(D(quantity), places) == text


LADDER_VOLUME = parse_price(
    {
        "currency": "USD",
        "model": "volume",
        "tiers": [{"up_to": "5000", "unit_amount": "0.40"}, {"up_to": None, "unit_amount": "0.30"}],
    },
    name="volume",
)
GRADUATED = {
    "currency": "USD",
    "model": "graduated",
    "tiers": [
        {"up_to": "1000", "unit_amount": "0.99"},
        {"up_to": "10000", "unit_amount": "0.89"},
        {"up_to": None, "unit_amount": "0.79"},
    ],
}


def rows(table: object) -> list[tuple[int, Decimal, Decimal, bool]]:
    return [(r.tier, r.units, r.amount, r.applied) for r in table.rows]  # type: ignore[attr-defined]


def test_volume_applies_one_tier_to_every_unit() -> None:
    # 12,226 > 5,000: all 12,226 units at tier 2's 0.30 = 3,667.80; tier 1 is not used
    # (it once read "5,000 used, 0.00" and tier 2 "7,226 used, 3,667.80").
    table = tier_table(rate(LADDER_VOLUME, D(12226)), LADDER_VOLUME.ladder)
    assert table is not None
    assert rows(table) == [(1, D(0), D(0), False), (2, D(12226), D("3667.80"), True)]
    assert table.applied_tiers == (2,)
    assert [r.unit_amounts for r in table.rows] == [(D("0.40"),), (D("0.30"),)]
    # up_to is inclusive: exactly 5,000 units are all in tier 1, at 0.40 = 2,000.00.
    edge = tier_table(rate(LADDER_VOLUME, D(5000)), LADDER_VOLUME.ladder)
    assert edge is not None
    assert rows(edge) == [(1, D(5000), D("2000.00"), True), (2, D(0), D(0), False)]


def test_graduated_shows_each_tier_units_and_amount() -> None:
    price = parse_price(GRADUATED, name="graduated")
    table = tier_table(rate(price, D(12226)), price.ladder)
    assert table is not None
    # 1,000 x 0.99 = 990.00; 9,000 x 0.89 = 8,010.00; 2,226 x 0.79 = 1,758.54
    assert rows(table) == [
        (1, D(1000), D("990.00"), True),
        (2, D(9000), D("8010.00"), True),
        (3, D(2226), D("1758.54"), True),
    ]
    assert [r.filled for r in table.rows] == [D(1), D(1), D(1)]
    partly = tier_table(rate(price, D(5500)), price.ladder)
    assert partly is not None
    # 1,000 in tier 1 (full), 4,500 of tier 2's 9,000 (half), tier 3 untouched.
    assert rows(partly) == [
        (1, D(1000), D("990.00"), True),
        (2, D(4500), D("4005.00"), True),
        (3, D(0), D(0), False),
    ]
    assert [r.filled for r in partly.rows] == [D(1), D("0.5"), D(0)]


def test_graduated_across_a_price_change_adds_up_each_tier() -> None:
    # 6,000 units before the change, 6,226 after: the ladder continues across it, so
    # tier 2 gets 5,000 units at 0.89 then 4,000 at 0.85, tier 3 2,226 at 0.69.
    before = parse_price(GRADUATED, name="before")
    after = parse_price(
        {**GRADUATED, "tiers": [
            {"up_to": "1000", "unit_amount": "0.99"},
            {"up_to": "10000", "unit_amount": "0.85"},
            {"up_to": None, "unit_amount": "0.69"},
        ]},
        name="after",
    )
    charge = rate_windows([("v1", before, D(6000)), ("v2", after, D(6226))])
    table = tier_table(charge, after.ladder)
    assert table is not None
    assert rows(table) == [
        (1, D(1000), D("990.00"), True),
        # 5,000 x 0.89 + 4,000 x 0.85 = 4,450 + 3,400
        (2, D(9000), D("7850.00"), True),
        # 2,226 x 0.69 = 1,535.94
        (3, D(2226), D("1535.94"), True),
    ]
    assert table.rows[1].unit_amounts == (D("0.89"), D("0.85"))
    assert sum(r.amount for r in table.rows) == charge.amount_precise
    assert table.versions == ("v1", "v2")


def test_other_models_have_no_tier_table_and_working_reads_typed_values() -> None:
    per_unit = parse_price({"currency": "KWD", "model": "per_unit", "unit_amount": "0.005"}, name="p")
    charge = rate(per_unit, D("2469.000000000"))
    assert tier_table(charge, ()) is None
    assert working(charge) == "2,469, per_unit: 2,469 × 0.005 = 12.345 → 12.345 (half-up)"
    volume = rate(LADDER_VOLUME, D("12226.000000000"))
    assert working(volume) == (
        "12,226, volume: tier 2: 12,226 × 0.30 = 3,667.80 → 3,667.80 (half-up)"
    )


# --- periods --------------------------------------------------------------------------


def periods(anchor: int, tz: str, start: str, count: int) -> list[LocalPeriod]:
    terms = Terms(anchor, tz, date.fromisoformat(start))
    found = []
    for period in iter_periods(terms):
        found.append(LocalPeriod(period.start, period.end, tz))
        if len(found) == count:
            return found
    return found


def test_a_dublin_october_is_shown_in_local_dates() -> None:
    (october,) = periods(1, "Europe/Dublin", "2026-10-01", 1)
    # 2026-10-01 00:00 IST is 2026-09-30 23:00 UTC; the clocks go back on 2026-10-25.
    assert october.start == datetime(2026, 9, 30, 23, tzinfo=UTC)
    assert october.local_text == "2026-10-01 to 2026-10-31"
    assert october.utc_text == "2026-09-30T23:00:00Z to 2026-11-01T00:00:00Z"
    assert october.label == "2026-10"
    assert len(october.days()) == 31


def test_period_lookup_by_local_start_month_or_local_day() -> None:
    # Anchor 31 in Tokyo (UTC+9): the periods start on the local days 09-30, 10-31,
    # 11-30 and 12-31 (each the day before at 15:00 UTC); a month finds the period whose
    # first local day is in it, a day the period holding it.
    found = periods(31, "Asia/Tokyo", "2026-09-30", 4)
    assert [p.local_text for p in found] == [
        "2026-09-30 to 2026-10-30",
        "2026-10-31 to 2026-11-29",
        "2026-11-30 to 2026-12-30",
        "2026-12-31 to 2027-01-30",
    ]
    assert found[1].start == datetime(2026, 10, 30, 15, tzinfo=UTC)

    def matching(text: str) -> list[str]:
        asked = parse_period(text)
        return [p.local_text for p in found if asked.matches(p)]

    assert matching("2026-10") == ["2026-10-31 to 2026-11-29"]
    assert matching("2026-12") == ["2026-12-31 to 2027-01-30"]
    assert matching("2026-10-15") == ["2026-09-30 to 2026-10-30"]
    assert matching("2026-10-31") == ["2026-10-31 to 2026-11-29"]
    assert matching("2027-02") == []

    # Anchor 1 east of UTC: the November period starts in October in UTC, not locally.
    (november,) = periods(1, "Asia/Tokyo", "2026-11-01", 1)
    assert november.start == datetime(2026, 10, 31, 15, tzinfo=UTC)
    assert parse_period("2026-11").matches(november)
    assert not parse_period("2026-10").matches(november)


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "October", "2026-02-30", "", "2026-10 "])
def test_bad_periods_are_refused(text: str) -> None:
    if text == "2026-10 ":  # surrounding spaces are forgiven
        assert parse_period(text).month == (2026, 10)
        return
    with pytest.raises(ValueError, match="is not a period: use YYYY-MM"):
        parse_period(text)


def test_not_found_message_lists_the_latest_periods_on_one_line() -> None:
    found = periods(31, "Asia/Kuwait", "2025-01-31", 14)
    message = not_found_message("kuwait", parse_period("2024-01"), found)
    assert "\n" not in message
    assert message.startswith(
        "customer kuwait has no invoice for a billing period starting in 2024-01"
        " (Asia/Kuwait time); its periods: 2025-03 (2025-03-31 to 2025-04-29),"
    )
    assert message.endswith("2026-02 (2026-02-28 to 2026-03-30) and 2 earlier")
    assert not_found_message("new", parse_period("2026-10"), []) == (
        "customer new has no invoice yet (nothing closed for it)"
    )
