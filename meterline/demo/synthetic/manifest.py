"""The ground truth of a generated folder (`manifest.json`): what was written and the
exact counts an ingestion of it must reproduce, per file and in total."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from meterline.demo.synthetic.config import MALFORMED_REASONS, METERS, Format


@dataclass(frozen=True)
class MeterTotal:
    events: int
    value_sum: int

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, "value_sum": str(self.value_sum)}


# The plain counts of a FileCounts, in manifest order.
_COUNTS = ("rows", "valid_events", "exact_duplicates", "conflicting_duplicates")


@dataclass
class FileCounts:
    """Counts of a set of rows read in file order (days in order, rows in order)."""

    rows: int = 0
    """Rows written, of every kind."""
    valid_events: int = 0
    """First copies of valid events: what an ingest accepts."""
    exact_duplicates: int = 0
    """Re-sent copies with the first copy's content: an ingest's duplicates."""
    conflicting_duplicates: int = 0
    """Re-sent ids with other content: rejected as conflicting_duplicate."""
    malformed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MALFORMED_REASONS, 0))
    """Malformed rows by the rejection reason each one has."""
    totals_by_meter: dict[str, MeterTotal] = field(
        default_factory=lambda: {m: MeterTotal(0, 0) for m in METERS}
    )
    """Valid events and their value sum, by meter."""

    def add(self, other: FileCounts) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, n in other.malformed.items():
            self.malformed[reason] += n
        for meter, total in other.totals_by_meter.items():
            mine = self.totals_by_meter[meter]
            self.totals_by_meter[meter] = MeterTotal(
                mine.events + total.events, mine.value_sum + total.value_sum
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in _COUNTS},
            "malformed": dict(self.malformed),
            "totals_by_meter": {m: t.to_dict() for m, t in self.totals_by_meter.items()},
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FileCounts:
        return cls(
            **{name: doc[name] for name in _COUNTS},
            malformed=dict(doc["malformed"]),
            totals_by_meter={
                m: MeterTotal(t["events"], int(t["value_sum"]))
                for m, t in doc["totals_by_meter"].items()
            },
        )


@dataclass
class Manifest:
    """The ground truth of one generated folder (`manifest.json`)."""

    seed: int
    customers: int
    start: date
    days: int
    format: Format
    options: dict[str, Any]
    files: list[str]
    late_files: list[str]
    daily: FileCounts
    late: FileCounts
    file_stats: dict[str, FileCounts]
    truth_file: str = "truth.parquet"
    customers_file: str = "customers.jsonl"

    @property
    def rows_written(self) -> int:
        return self.daily.rows

    @property
    def valid_events(self) -> int:
        return self.daily.valid_events

    def to_dict(self) -> dict[str, Any]:
        # The daily counts at the top level, its rows as rows_written.
        daily = {("rows_written" if k == "rows" else k): v for k, v in self.daily.to_dict().items()}
        return {
            "seed": self.seed,
            "customers": self.customers,
            "start": self.start.isoformat(),
            "days": self.days,
            "format": self.format,
            "options": dict(self.options),
            "customers_file": self.customers_file,
            "truth_file": self.truth_file,
            "files": list(self.files),
            "late_files": list(self.late_files),
            **daily,
            "late": self.late.to_dict(),
            "file_stats": {path: c.to_dict() for path, c in self.file_stats.items()},
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Manifest:
        daily = FileCounts.from_dict({**doc, "rows": doc["rows_written"]})
        return cls(
            seed=doc["seed"],
            customers=doc["customers"],
            start=date.fromisoformat(doc["start"]),
            days=doc["days"],
            format=doc["format"],
            options=dict(doc["options"]),
            files=list(doc["files"]),
            late_files=list(doc["late_files"]),
            daily=daily,
            late=FileCounts.from_dict(doc["late"]),
            file_stats={p: FileCounts.from_dict(c) for p, c in doc["file_stats"].items()},
            truth_file=doc["truth_file"],
            customers_file=doc["customers_file"],
        )

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        return cls.from_dict(json.loads((Path(folder) / "manifest.json").read_text()))

