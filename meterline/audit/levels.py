"""Gauge levels (seats): the values a gauge held and for how long, from its events.
Pure. `explain` shows them with their share of the billing cycle; the statement draws
them per local day.

Business rule (meters/quantities.py, quantities/raw_gauges.sql): each event holds its
value from its timestamp until the next event of its dimension group; a time-weighted
quantity is the integral of the levels over the window divided by the length of the
full billing cycle, rounded once to 9 decimal places half-even (a partial period is
prorated).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal

from pydantic import Field

from meterline.audit.facts import Span
from meterline.audit.values import Dims, Exact, Instant, Report, dims_label

# The aggregations whose events report a level held until the next one (a gauge).
GAUGES = ("time_weighted", "latest")
# Quantities are rounded once to 9 decimal places (meters/quantities.py QUANTUM).
QUANTUM = Decimal("1e-9")
_DIVISION = Context(prec=100, rounding=ROUND_HALF_EVEN)
_MS_PER_HOUR = Decimal(3_600_000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Level:
    """A level a gauge held without change, e.g. "3 advanced seats for 240 h"."""

    dims: Dims
    value: Decimal
    from_ms: int
    to_ms: int
    event_ids: tuple[str, ...]

    @property
    def held_ms(self) -> int:
        return self.to_ms - self.from_ms

    def share(self, cycle_ms: int) -> Decimal:
        """value x time held / length of the billing cycle (exact at 100 digits)."""
        return _DIVISION.divide(self.value * self.held_ms, Decimal(cycle_ms))


class HeldLevel(Report):
    """A level as a report shows it: the group, the value, when it held (UTC), the hours
    held, and its share of the billing cycle (9 decimal places)."""

    group: str
    value: Exact
    start: Instant = Field(serialization_alias="from")
    end: Instant = Field(serialization_alias="to")
    hours: Exact
    held_ms: int
    share_of_cycle: Exact
    events: tuple[str, ...]

    @classmethod
    def of(cls, level: Level, cycle_ms: int) -> HeldLevel:
        hours = _DIVISION.divide(Decimal(level.held_ms), _MS_PER_HOUR)
        return cls(
            group=dims_label(level.dims),
            value=level.value,
            start=_at(level.from_ms),
            end=_at(level.to_ms),
            hours=hours.quantize(Decimal("0.001"), context=_DIVISION),
            held_ms=level.held_ms,
            share_of_cycle=level.share(cycle_ms).quantize(QUANTUM, context=_DIVISION),
            events=level.event_ids,
        )


def _at(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def levels(spans: Iterable[Span]) -> list[Level]:
    """Consecutive spans of one dimension group with the same value, merged: a daily
    re-report of an unchanged seat count is one level, not thirty."""
    out: list[Level] = []
    for span in sorted(spans, key=lambda s: (s.dims, s.from_ms, s.event_id)):
        if span.to_ms <= span.from_ms:
            continue
        last = out[-1] if out else None
        if (
            last is not None
            and last.dims == span.dims
            and last.value == span.value
            and last.to_ms == span.from_ms
        ):
            out[-1] = Level(
                last.dims, last.value, last.from_ms, span.to_ms, (*last.event_ids, span.event_id)
            )
        else:
            out.append(Level(span.dims, span.value, span.from_ms, span.to_ms, (span.event_id,)))
    return out


def time_weighted_quantities(found: Iterable[Level], cycle_ms: int) -> dict[Dims, Decimal]:
    """Per dimension group: the integral of its levels over the billing cycle's length,
    rounded once to 9 places half-even, as raw_period_quantities computes it."""
    integrals: dict[Dims, Decimal] = defaultdict(Decimal)
    for level in found:
        integrals[level.dims] += level.value * level.held_ms
    return {
        dims: _DIVISION.divide(integral, Decimal(cycle_ms)).quantize(
            QUANTUM, rounding=ROUND_HALF_EVEN, context=_DIVISION
        )
        for dims, integral in integrals.items()
    }


def last_levels(found: Sequence[Level]) -> list[Level]:
    """The last level of each dimension group (what a `latest` meter bills)."""
    last: dict[Dims, Level] = {}
    for level in found:
        last[level.dims] = level
    return list(last.values())
