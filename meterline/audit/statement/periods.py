"""Which billing periods `meterline statement --period` means, in the subscription's
timezone. Pure.

``--period YYYY-MM`` selects the billing periods whose first local day falls in that
month (an anchor-31 subscription's period 2026-10-31..2026-11-29 is "2026-10");
``--period YYYY-MM-DD`` selects the period containing that local day. Nothing found is
StatementNotFound, whose one-line message lists the periods the customer has.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from billing.periods import zone
from meterline.audit.errors import AuditError

# The not-found message lists this many of the customer's latest periods at most.
LISTED_PERIODS = 12


class StatementNotFound(AuditError):
    """No such customer, or no invoice of the customer for the period asked. The
    message lists the periods the customer has. Exit code 3 (not found)."""


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class PeriodQuery:
    """What `--period` asks for: a month (periods whose first local day is in it) or a
    local day (the period containing it)."""

    text: str
    month: tuple[int, int] | None = None
    day: date | None = None

    def matches(self, period: LocalPeriod) -> bool:
        if self.month is not None:
            first = period.first_day
            return (first.year, first.month) == self.month
        assert self.day is not None
        return period.first_day <= self.day <= period.last_day

    def describe(self) -> str:
        if self.month is not None:
            return f"a billing period starting in {self.text}"
        return f"a billing period containing {self.text}"


def parse_period(text: str) -> PeriodQuery:
    """``YYYY-MM`` or ``YYYY-MM-DD`` as a PeriodQuery; anything else is a ValueError."""
    value = text.strip()
    match = _MONTH.match(value)
    if match and 1 <= int(match.group(2)) <= 12:
        return PeriodQuery(value, month=(int(match.group(1)), int(match.group(2))))
    if _DAY.match(value):
        try:
            return PeriodQuery(value, day=date.fromisoformat(value))
        except ValueError:
            pass
    raise ValueError(
        f"{text!r} is not a period: use YYYY-MM (the periods starting in that month, local"
        " time) or YYYY-MM-DD (the period containing that local day)"
    )


@dataclass(frozen=True)
class LocalPeriod:
    """A billing period [start, end) (UTC instants) seen in its subscription's timezone."""

    start: datetime
    end: datetime
    timezone: str

    @property
    def first_day(self) -> date:
        return self.start.astimezone(zone(self.timezone)).date()

    @property
    def last_day(self) -> date:
        """The last local day in the period (its end is the next day's local midnight)."""
        return (self.end - timedelta(microseconds=1)).astimezone(zone(self.timezone)).date()

    @property
    def label(self) -> str:
        """The month `--period` finds it by: the month of its first local day."""
        return f"{self.first_day:%Y-%m}"

    @property
    def local_text(self) -> str:
        return f"{self.first_day.isoformat()} to {self.last_day.isoformat()}"

    @property
    def utc_text(self) -> str:
        return f"{_utc(self.start)} to {_utc(self.end)}"

    def days(self) -> list[date]:
        first, last = self.first_day, self.last_day
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def not_found_message(customer: str, query: PeriodQuery, periods: Sequence[LocalPeriod]) -> str:
    """One line: what was not found, and the periods the customer does have."""
    if not periods:
        return f"customer {customer} has no invoice yet (nothing closed for it)"
    zones = sorted({p.timezone for p in periods})
    shown = list(periods)[-LISTED_PERIODS:]
    listed = ", ".join(f"{p.label} ({p.local_text})" for p in shown)
    earlier = len(periods) - len(shown)
    more = f" and {earlier} earlier" if earlier else ""
    return (
        f"customer {customer} has no invoice for {query.describe()} ({', '.join(zones)} time);"
        f" its periods: {listed}{more}"
    )
