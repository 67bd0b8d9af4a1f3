"""What every command shares: one type per kind of option value, and one console.

- ``Timestamp`` (every ``--as-of`` and ``--at``): RFC 3339 with its offset,
  ``2026-11-04T00:00:00Z`` or ``2026-11-04T09:30:00+09:00`` (a fraction of a second is
  allowed; ``T`` or a space between date and time), or a date ``2026-11-04``, which means
  its midnight UTC. A time without an offset is refused: it names a different instant in
  every timezone. The value is a timezone-aware ``datetime`` in UTC.
- ``Month`` (every ``--period`` that names a month): ``YYYY-MM``, as that text.
- ``Day`` (``--day``, ``--from``, ``--to``, ``--start``): ``YYYY-MM-DD``, a UTC day, as a
  ``date``.
- ``Id`` (invoice and line ids): a whole number from 1 to 2^63-1, the range of the
  ledger's ids (a 64-bit signed integer); anything else is refused (exit code 2), as a
  value that cannot be an id, rather than looked up.
- ``console()``: the console a command prints to (meterline.output.console).

Every date and instant must lie from 2000-01-01 to 2199-12-31 (UTC; ``FIRST_DAY``,
``LAST_DAY``): a month, a day, or an instant in that range. Nothing meterline bills lies
outside it, and with it every computation on a date given on the command line (a month's
end plus the grace period, an instant less the late-event lookback) stays within the
calendar; outside it a value is refused (exit code 2) naming the range.

The types are click parameter types (a bad value is a usage error: exit code 2, one
line naming the option); ``parse_timestamp``, ``parse_month`` and ``parse_day`` are the
same rules for values that do not come from the command line. This module imports only
click, so ``meterline --help`` stays fast.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "AS_OF_HELP",
    "FIRST_DAY",
    "LAST_DAY",
    "MAX_ID",
    "Day",
    "Id",
    "Month",
    "Timestamp",
    "console",
    "parse_day",
    "parse_month",
    "parse_timestamp",
]

AS_OF_HELP = "RFC 3339 with an offset (2026-11-04T00:00:00Z), or a date (midnight UTC)"

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)
# A date and a time with no offset (or with seconds left out): said apart from garbage,
# so the message can say what is missing.
_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?")
_MONTH = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])")

# The calendar range of every date, month and instant on the command line (module doc).
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2199, 12, 31)
_RANGE = f"from {FIRST_DAY} to {LAST_DAY}"
# The largest ledger id: a 64-bit signed integer.
MAX_ID = 2**63 - 1


def _in_range(text: str, day: date, what: str) -> None:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{text!r} is outside the {what}s meterline accepts ({_RANGE}, UTC)")


def parse_timestamp(text: str) -> datetime:
    """The instant ``text`` names, in UTC (module docstring: RFC 3339 with an offset, or
    a date meaning its midnight UTC). Raises ValueError with what to write instead."""
    value = text.strip()
    if _DATE.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{text!r} is not a calendar date") from None
        _in_range(text, day, "date")
        return datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    match = _RFC3339.fullmatch(value)
    if match is None:
        if _NAIVE.fullmatch(value):
            raise ValueError(
                f"{text!r} has no UTC offset: write it as RFC 3339 with Z or +HH:MM"
                " (2026-11-04T00:00:00Z), or give a date (midnight UTC)"
            )
        raise ValueError(
            f"{text!r} is not a timestamp: use RFC 3339 with an offset"
            " (2026-11-04T00:00:00Z, 2026-11-04T09:00:00+09:00) or a date (2026-11-04,"
            " midnight UTC)"
        )
    # Python reads at most microseconds; finer digits cannot change a billing instant.
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}{offset}")
    except ValueError:
        raise ValueError(f"{text!r} is not a real date and time") from None
    return check_instant(moment, text)


def check_instant(moment: datetime, text: str | None = None) -> datetime:
    """An aware instant in UTC, when it lies in the range (module docstring); ValueError
    naming the range otherwise. Near the calendar's ends the UTC date is compared
    without converting (a conversion there would overflow)."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError(f"{text or moment.isoformat()!r} has no UTC offset")
    shown = text if text is not None else moment.isoformat()
    if not date(FIRST_DAY.year - 1, 1, 2) <= moment.date() <= date(LAST_DAY.year + 1, 12, 30):
        _in_range(shown, moment.date(), "time")
    utc = moment.astimezone(UTC)
    _in_range(shown, utc.date(), "time")
    return utc


def parse_month(text: str) -> str:
    """``YYYY-MM`` (a month from 01 to 12), returned as written. Raises ValueError."""
    value = text.strip()
    if not _MONTH.fullmatch(value):
        raise ValueError(f"{text!r} is not a month YYYY-MM (e.g. 2026-10)")
    _in_range(text, date(int(value[:4]), int(value[5:7]), 1), "month")
    return value


def parse_day(text: str) -> date:
    """``YYYY-MM-DD``, a calendar day. Raises ValueError."""
    value = text.strip()
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a day YYYY-MM-DD (e.g. 2026-10-01)") from None
    _in_range(text, day, "day")
    return day


class Timestamp(click.ParamType):
    """An instant: RFC 3339 with an offset, or a date meaning its midnight UTC."""

    name = "timestamp"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        try:
            if isinstance(value, datetime):
                return check_instant(value)
            return parse_timestamp(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Month(click.ParamType):
    """A calendar month, YYYY-MM (kept as that text)."""

    name = "month"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "YYYY-MM"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        try:
            return parse_month(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Day(click.ParamType):
    """A UTC calendar day, YYYY-MM-DD."""

    name = "day"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "YYYY-MM-DD"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> date:
        try:
            if isinstance(value, date):
                day = value.date() if isinstance(value, datetime) else value
                _in_range(day.isoformat(), day, "day")
                return day
            return parse_day(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Id(click.ParamType):
    """A ledger id (an invoice's, a line's): a whole number from 1 to 2^63-1. Anything
    else cannot name a stored row and is refused (exit code 2), never looked up."""

    name = "id"

    def __init__(self, what: str = "id") -> None:
        self.what = what

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return (param.name or "ID").upper()

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            if text.isascii() and text.isdigit():
                # More digits than the largest id has: out of range, without reading it.
                number = MAX_ID + 1 if len(text) > len(str(MAX_ID)) else int(text)
        if number is None or not 1 <= number <= MAX_ID:
            self.fail(
                f"{value!r} is not {self.what}: ids are whole numbers from 1 to {MAX_ID}",
                param,
                ctx,
            )
        return number


def console(*, stderr: bool = False, wrap: bool = False) -> Console:
    """The console a command prints to: meterline.output.console (the terminal's width,
    or 80 columns for a file or pipe; no colouring of numbers)."""
    from meterline.output import console as make

    return make(stderr=stderr, wrap=wrap)
