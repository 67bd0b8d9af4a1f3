"""The one rule for each kind of option value (meterline.cli.options), value by value."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import click
import pytest

from meterline.cli.options import (
    Day,
    Id,
    Month,
    Timestamp,
    parse_day,
    parse_month,
    parse_timestamp,
)

MIDNIGHT = datetime(2026, 11, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-11-04", MIDNIGHT),
        ("2026-11-04T00:00:00Z", MIDNIGHT),
        ("2026-11-04t00:00:00z", MIDNIGHT),
        ("2026-11-04 00:00:00+00:00", MIDNIGHT),
        ("2026-11-04T00:00:00-00:00", MIDNIGHT),
        ("2026-11-04T09:00:00+09:00", MIDNIGHT),
        ("2026-11-03T19:30:00-04:30", MIDNIGHT),
        ("2026-11-04T00:00:00.250Z", MIDNIGHT + timedelta(milliseconds=250)),
        # Digits past the microsecond are dropped, never rounded up into the next one.
        ("2026-11-04T00:00:00.0000019Z", MIDNIGHT + timedelta(microseconds=1)),
        (" 2026-11-04T00:00:00Z ", MIDNIGHT),
        ("2024-02-29", datetime(2024, 2, 29, tzinfo=UTC)),
    ],
)
def test_a_timestamp_is_rfc3339_with_an_offset_or_a_date_at_midnight_utc(
    text: str, instant: datetime
) -> None:
    parsed = parse_timestamp(text)
    assert parsed == instant
    assert parsed.tzinfo is UTC  # always given back in UTC, whatever offset was written


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2026-11-04T00:00", "has no UTC offset"),
        ("2026-11-04T00:00:00", "has no UTC offset"),
        ("2026-11-04 00:00:00.5", "has no UTC offset"),
        ("2026-11-04T00:00Z", "is not a timestamp"),  # RFC 3339 has seconds
        ("2026-11-04T00Z", "is not a timestamp"),
        ("20261104T000000Z", "is not a timestamp"),  # ISO 8601 basic form
        ("2026-W45-3", "is not a timestamp"),
        ("04/11/2026", "is not a timestamp"),
        ("1762214400", "is not a timestamp"),
        ("now", "is not a timestamp"),
        ("", "is not a timestamp"),
        ("2026-02-30", "is not a calendar date"),
        ("2026-11-04T24:00:00Z", "is not a real date and time"),
        ("2026-11-04T00:00:00+24:00", "is not a real date and time"),
    ],
)
def test_anything_else_is_refused_saying_what_to_write(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_timestamp(text)
    assert fragment in str(info.value)
    assert "2026-11-04T00:00:00Z" in str(info.value) or "date" in str(info.value)


def test_the_timestamp_type_takes_an_aware_datetime_and_refuses_a_naive_one() -> None:
    kind = Timestamp()
    tokyo = datetime(2026, 11, 4, 9, tzinfo=timezone(timedelta(hours=9)))
    assert kind.convert(tokyo, None, None) == MIDNIGHT
    with pytest.raises(click.BadParameter, match="UTC offset"):
        kind.convert(datetime(2026, 11, 4), None, None)
    with pytest.raises(click.BadParameter, match="UTC offset"):
        kind.convert("2026-11-04T00:00", None, None)


@pytest.mark.parametrize("text", ["2026-01", "2026-12", "2000-01", "2199-12"])
def test_a_month_is_yyyy_mm(text: str) -> None:
    assert parse_month(text) == text
    assert Month().convert(text, None, None) == text


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-3", "2026/03", "26-03", "2026-03-01", "oct"])
def test_anything_else_is_not_a_month(text: str) -> None:
    with pytest.raises(ValueError, match="is not a month YYYY-MM"):
        parse_month(text)
    with pytest.raises(click.BadParameter, match="YYYY-MM"):
        Month().convert(text, None, None)


def test_a_day_is_yyyy_mm_dd() -> None:
    assert parse_day("2026-10-01") == date(2026, 10, 1)
    assert Day().convert("2024-02-29", None, None) == date(2024, 2, 29)
    assert Day().convert(datetime(2026, 10, 1, 23, tzinfo=UTC), None, None) == date(2026, 10, 1)
    for bad in ("2026-10-32", "2026-10-1", "20261001", "2026-10-01T00:00:00Z", "tomorrow"):
        with pytest.raises(ValueError, match="is not a day YYYY-MM-DD"):
            parse_day(bad)


# --- the one calendar range (2000-01-01 .. 2199-12-31, UTC) --------------------------------------

@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_timestamp, "9999-12-31T23:59:59Z"),
        (parse_timestamp, "0001-01-01"),
        (parse_timestamp, "0001-01-01T00:00:00+14:00"),  # before year 1 in UTC: no overflow
        (parse_timestamp, "9999-12-31T23:59:59-14:00"),  # after year 9999 in UTC
        (parse_timestamp, "2200-01-01T00:00:00Z"),
        (parse_timestamp, "2000-01-01T00:30:00+01:00"),  # 1999-12-31T23:30Z
        (parse_timestamp, "1999-12-31"),
        (parse_month, "9999-12"),
        (parse_month, "0001-01"),
        (parse_month, "1999-12"),
        (parse_month, "2200-01"),
        (parse_day, "0001-01-01"),
        (parse_day, "9999-12-31"),
        (parse_day, "2200-01-01"),
    ],
)
def test_dates_outside_the_range_are_refused_naming_it(parse: object, text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse(text)  # type: ignore[operator]
    assert "outside" in str(info.value) and "2000-01-01 to 2199-12-31" in str(info.value)


def test_the_range_ends_are_accepted() -> None:
    assert parse_timestamp("2000-01-01") == datetime(2000, 1, 1, tzinfo=UTC)
    assert parse_timestamp("2199-12-31T23:59:59Z") == datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)
    # The offset is applied first: 2200-01-01T00:00+01:00 is 2199-12-31T23:00Z.
    assert parse_timestamp("2200-01-01T00:00:00+01:00") == datetime(2199, 12, 31, 23, tzinfo=UTC)
    assert parse_day("2199-12-31") == date(2199, 12, 31)
    assert parse_month("2000-01") == "2000-01"


def test_the_types_refuse_values_outside_the_range_given_as_python_values() -> None:
    with pytest.raises(click.BadParameter, match="outside"):
        Timestamp().convert(datetime(9999, 12, 31, 23, tzinfo=UTC), None, None)
    with pytest.raises(click.BadParameter, match="outside"):
        Day().convert(date(1, 1, 1), None, None)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("99999999999999999999999", "ids are whole numbers from 1 to 9223372036854775807"),
        ("9223372036854775808", "ids are whole numbers from 1"),
        ("0", "is not an invoice id: ids are whole numbers from 1"),
        ("-1", "is not an invoice id: ids"),
        ("1.0", "is not an invoice id: ids"),
        ("١٢", "is not an invoice id: ids"),  # Arabic-Indic digits: not ASCII
        ("9" * 5000, "ids are whole numbers from 1"),  # longer than int() reads
    ],
)
def test_an_id_is_a_whole_number_within_the_ledgers_range(value: str, fragment: str) -> None:
    with pytest.raises(click.BadParameter, match=fragment):
        Id("an invoice id").convert(value, None, None)


def test_an_id_up_to_2_63_minus_1_is_taken() -> None:
    assert Id().convert("9223372036854775807", None, None) == 2**63 - 1
    assert Id().convert(" 42 ", None, None) == 42
    assert Id().convert(7, None, None) == 7
