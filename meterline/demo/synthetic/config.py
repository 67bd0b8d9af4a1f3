"""What a generation is asked for (GeneratorConfig), the event file layout, and the
seeded random streams every part draws from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from meterline.settings import DEMO_CATALOG

FIN = "fin_resolution"
SEATS = "seats"
METERS = (FIN, SEATS)
EVENT_COLUMNS = ("event_id", "customer_id", "meter", "timestamp", "value", "properties")
EVENT_SCHEMA = pa.schema([(name, pa.string()) for name in EVENT_COLUMNS])
MALFORMED_REASONS = (
    "missing_field",
    "bad_timestamp",
    "timestamp_too_old",
    "timestamp_in_future",
    "unknown_meter",
    "negative_value",
    "non_numeric_value",
    "bad_properties",
    "bad_event_id",
)
# Offsets of the out-of-window malformed timestamps: far outside any acceptance window.
OUT_OF_WINDOW_DAYS = 400

Format = Literal["parquet", "jsonl"]
ProgressFn = Callable[[int, int, str], None]
"""Called as (rows written so far, rows to write in total, file being written)."""
IntArray = npt.NDArray[np.int64]

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000

# Random streams (the second element of every SeedSequence). Each part of the data draws
# from its own stream, so the messiness options never change which valid events exist.
S_CUSTOMERS, S_COUNTS, S_DETAILS, S_MESS, S_MALFORMED, S_PLACEMENT = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class GeneratorConfig:
    """Arguments of one generation; the output is a pure function of them.

    Raises ValueError for values out of range (fractions outside 0..1, no customers...).
    """

    customers: int
    start: date
    days: int
    seed: int
    out: Path
    duplicates: float = 0.0
    late: float = 0.0
    malformed: float = 0.0
    format: Format = "parquet"
    events_per_day: int | None = None
    """Scale the resolution rates so the range averages about this many per day."""
    catalog_path: Path = DEMO_CATALOG
    overwrite: bool = False
    """Replace the generator's own files in `out` (never anything else)."""

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError("customers must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.seed < 0:
            raise ValueError("seed must be a non-negative integer")
        for name in ("duplicates", "late", "malformed"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, got {value}")
        if self.format not in ("parquet", "jsonl"):
            raise ValueError(f"format must be parquet or jsonl, got {self.format!r}")
        if self.events_per_day is not None and self.events_per_day < 1:
            raise ValueError("events_per_day must be at least 1")
        if not isinstance(self.start, date) or isinstance(self.start, datetime):
            raise ValueError("start must be a datetime.date")

    @property
    def end(self) -> date:
        """First day after the range."""
        return self.start + timedelta(days=self.days)

    @property
    def range_start_ms(self) -> int:
        """The range's first instant (midnight UTC of `start`), in epoch milliseconds."""
        return epoch_day(self.start) * MS_PER_DAY

    @property
    def range_end_ms(self) -> int:
        """The first instant after the range, in epoch milliseconds."""
        return self.range_start_ms + self.days * MS_PER_DAY


def stream(seed: int, *keys: int) -> np.random.Generator:
    """The random stream `keys` (S_* first, then a day or a sub-stream) of a seed."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *keys])))


_EPOCH = date(1970, 1, 1)


def epoch_day(d: date) -> int:
    return (d - _EPOCH).days


def from_epoch_day(n: int) -> date:
    return _EPOCH + timedelta(days=n)
