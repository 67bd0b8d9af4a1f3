"""What a contender reports, and the helpers they share."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq

from bench.data import Totals

FIN = "fin_resolution"
SEATS = "seats"


@dataclass
class Outcome:
    """One contender's run: seconds per phase (wall clock, in the order run), the rows it
    read, the events it kept after dedup, the groups (customer, meter, properties, hour)
    its group-by made, and the totals read back from its grouped rows."""

    phases: dict[str, float] = field(default_factory=dict)
    rows: int = 0
    accepted: int = 0
    groups: int = 0
    totals: Totals | None = None
    notes: list[str] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as phase `name`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = time.perf_counter() - started

    def to_dict(self) -> dict[str, Any]:
        return {
            "phases": dict(self.phases),
            "wall_s": sum(self.phases.values()),
            "rows": self.rows,
            "accepted": self.accepted,
            "groups": self.groups,
            "totals": self.totals.to_dict() if self.totals else None,
            "notes": list(self.notes),
        }


def canon(value: Any) -> str:
    """An exact number (int, Decimal, or their text) as a canonical decimal string:
    no exponent, no trailing fractional zeros ("340935", "12.5"). Raises TypeError for
    a float: a sum that went through a float is not exact."""
    if isinstance(value, float):
        raise TypeError(f"inexact value {value!r}")
    d = Decimal(str(value))
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def totals_from(by_meter: dict[str, tuple[Any, Any]]) -> Totals:
    """Totals from {meter: (events, value sum)} (a meter absent: none of its events)."""
    fin = by_meter.get(FIN, (0, 0))
    seats = by_meter.get(SEATS, (0, 0))
    return Totals(int(fin[0]), int(seats[0]), canon(seats[1] or 0))


def file_rows(path: Any) -> int:
    """Rows in a Parquet file, from its footer."""
    return int(pq.ParquetFile(path).metadata.num_rows)
