"""The revenue waterfall (pure; docs/revrec.md, "Waterfall"): recognized revenue by
month of recognition (columns) against month of billing (rows).

A row's billing month is the month its source was billed: a line's invoice
finalization, a paid commitment's start for its releases and breakage; revenue earned
and not billed yet sits in the row ``unbilled``. Amounts are minor units per currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from billing.revrec.model import ScheduleRow

UNBILLED = "unbilled"
#: The most months of recognition one waterfall shows (ten years): a longer range is a
#: mistyped year far more often than a report anyone reads (`meterline revrec waterfall`).
MAX_WATERFALL_MONTHS = 120


def month_of(day: date) -> str:
    return f"{day:%Y-%m}"


def months_between(first: str, last: str) -> list[str]:
    """Every month YYYY-MM from `first` to `last`, both included."""
    year, month = int(first[:4]), int(first[5:7])
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


@dataclass
class Waterfall:
    """Per currency: cells[(billing month or "unbilled", recognition month)] in minor
    units, for the recognition months `months`."""

    months: list[str]
    cells: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)

    def billing_months(self, currency: str) -> list[str]:
        """The rows of a currency: billing months in order, then ``unbilled``."""
        found = {b for b, _ in self.cells.get(currency, {})}
        return sorted(found - {UNBILLED}) + ([UNBILLED] if UNBILLED in found else [])

    def recognized(self, currency: str, month: str) -> int:
        """A column's total: everything recognized in `month`."""
        return sum(v for (_, m), v in self.cells.get(currency, {}).items() if m == month)


def waterfall(rows: Iterable[ScheduleRow], first: str, last: str) -> Waterfall:
    """The waterfall of the rows recognized in months `first`..`last` (YYYY-MM)."""
    months = months_between(first, last)
    wanted = set(months)
    out = Waterfall(months)
    cells: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        recognized = month_of(row.day)
        if recognized not in wanted:
            continue
        billed = month_of(row.billed_on) if row.billed_on is not None else UNBILLED
        cells[row.currency][(billed, recognized)] += row.amount_minor
    out.cells = {c: {k: v for k, v in cells[c].items() if v} for c in sorted(cells)}
    return out
