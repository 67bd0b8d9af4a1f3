"""The suite's input: one generated UTC day per size, as one Parquet file with string
columns (as delivered), and the totals every contender must reproduce.

A day is made by meterline's own generator (meterline.demo.synthetic, what `meterline
generate --customers 25000 --days 1 --events-per-day N --duplicates 0.01` writes). The
generator holds a whole day in memory, so a day of more than CHUNK_EVENTS events is
generated in chunks (one seed each, so each chunk has its own event ids, over the same
customers) and the chunks' files are concatenated, row group by row group, into one
file. A day once generated is reused by later runs with the same arguments, if its files
are still whole (a Parquet file that cannot be read, or holds other than the manifest's
rows, is generated again).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from meterline.demo.synthetic import FIN, SEATS, GeneratorConfig, Manifest, generate

DAY = date(2026, 10, 1)
"""The generated day (UTC)."""
SEED = 1
"""`meterline generate`'s default seed: chunk k of a day uses SEED + k."""
CHUNK_EVENTS = 10_000_000
"""Most events the generator is asked for at once (~2 GB of its memory per 10M)."""


@dataclass(frozen=True)
class Totals:
    """What every contender reports after dedup (first copy of an event id wins).

    Counts are events; `seat_value_sum` is the exact sum of the seat events' values as a
    canonical decimal string (no exponent, no trailing zeros: "340935", "12.5")."""

    resolutions: int
    seat_events: int
    seat_value_sum: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Totals:
        return cls(int(doc["resolutions"]), int(doc["seat_events"]), str(doc["seat_value_sum"]))


@dataclass(frozen=True)
class Day:
    """One generated day: its file and what the generator's manifests say it holds."""

    events_per_day: int
    customers: int
    file: Path
    rows: int
    """Rows in the file, duplicates included."""
    accepted: int
    """First copies of valid events: what a deduplicating load keeps."""
    exact_duplicates: int
    conflicting_duplicates: int
    totals: Totals
    chunks: int
    generated: bool = False
    """Whether this run generated it (else an earlier run's day was reused)."""

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["file"] = str(self.file)
        doc["totals"] = self.totals.to_dict()
        return doc


def chunk_sizes(events_per_day: int) -> list[int]:
    """Events asked of each generator run: CHUNK_EVENTS each, the rest last."""
    full, rest = divmod(events_per_day, CHUNK_EVENTS)
    return [CHUNK_EVENTS] * full + ([rest] if rest else [])


def prepare_day(
    root: Path,
    events_per_day: int,
    customers: int,
    duplicates: float,
    say: Callable[[str], None] = print,
) -> Day:
    """The day of `events_per_day` events over `customers` customers under `root`,
    generated now unless an earlier run left it complete. Raises ValueError for
    arguments the generator refuses."""
    folder = root / f"day_{events_per_day}e_{customers}c_{duplicates:g}d"
    manifests: list[Manifest] = []
    files: list[Path] = []
    generated = False
    for k, size in enumerate(chunk_sizes(events_per_day)):
        out = folder / f"chunk{k}"
        if not _complete(out, size, customers, duplicates, SEED + k):
            say(f"generating {size:,} events over {customers:,} customers (seed {SEED + k})")
            generate(GeneratorConfig(customers=customers, start=DAY, days=1, seed=SEED + k,
                                     out=out, events_per_day=size, duplicates=duplicates,
                                     overwrite=True))
            generated = True
        manifest = Manifest.read(out)
        manifests.append(manifest)
        files.append(out / manifest.files[0])
    if len(files) == 1:
        file = files[0]
    else:
        file = folder / f"{DAY.isoformat()}.parquet"
        marker = folder / "combined.json"
        rows = sum(m.daily.rows for m in manifests)
        if generated or not marker.exists() or json.loads(marker.read_text()) != [str(f) for f in files] \
                or not _whole(file, rows):
            say(f"concatenating {len(files)} chunks into one file")
            marker.unlink(missing_ok=True)
            concatenate(files, file)
            marker.write_text(json.dumps([str(f) for f in files]))
            generated = True
    return _day(events_per_day, customers, file, manifests, generated)


def _complete(out: Path, size: int, customers: int, duplicates: float, seed: int) -> bool:
    """Whether `out` holds a finished generation with these arguments, its file whole."""
    if not (out / "manifest.json").exists():
        return False
    try:
        m = Manifest.read(out)
    except (OSError, ValueError, KeyError, TypeError):
        return False  # a manifest cut short or edited: generate again
    return (m.seed, m.customers, m.start, m.days, m.format) == (seed, customers, DAY, 1, "parquet") \
        and m.options.get("events_per_day") == size and m.options.get("duplicates") == duplicates \
        and not m.options.get("late") and not m.options.get("malformed") \
        and len(m.files) == 1 and _whole(out / m.files[0], m.daily.rows)


def _whole(file: Path, rows: int) -> bool:
    """Whether `file` is a readable Parquet file of `rows` rows (its footer only is read)."""
    try:
        return bool(pq.ParquetFile(file).metadata.num_rows == rows)
    except (OSError, pa.ArrowException):
        return False


def concatenate(files: list[Path], target: Path) -> None:
    """Write the rows of `files`, in order, into one Parquet file (row group by row group,
    so memory stays bounded by one row group)."""
    tmp = target.with_suffix(".parquet.tmp")
    writer: pq.ParquetWriter | None = None
    try:
        for f in files:
            source = pq.ParquetFile(f)
            if writer is None:
                writer = pq.ParquetWriter(tmp, source.schema_arrow)
            for i in range(source.num_row_groups):
                writer.write_table(source.read_row_group(i))
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(target)


def _day(events_per_day: int, customers: int, file: Path, manifests: list[Manifest],
         generated: bool) -> Day:
    fin = sum(m.daily.totals_by_meter[FIN].events for m in manifests)
    seats = sum(m.daily.totals_by_meter[SEATS].events for m in manifests)
    seat_sum = sum(m.daily.totals_by_meter[SEATS].value_sum for m in manifests)
    return Day(
        events_per_day=events_per_day,
        customers=customers,
        file=file,
        rows=sum(m.daily.rows for m in manifests),
        accepted=sum(m.daily.valid_events for m in manifests),
        exact_duplicates=sum(m.daily.exact_duplicates for m in manifests),
        conflicting_duplicates=sum(m.daily.conflicting_duplicates for m in manifests),
        totals=Totals(fin, seats, str(seat_sum)),
        chunks=len(manifests),
        generated=generated,
    )


MONTH_SEED = 9
"""The seed of the month the close is timed on (bench/bench_pipeline.py close's)."""


def prepare_month(root: Path, customers: int, say: Callable[[str], None] = print) -> Path:
    """The folder of a generated month (October 2026, the generator's own event rates:
    ~16M events for 25,000 customers) for the close, generated now unless an earlier run
    left it complete. Generated day by day, so memory stays bounded."""
    out = root / f"month_{customers}c"
    if (out / "manifest.json").exists():
        m = Manifest.read(out)
        if (m.seed, m.customers, m.start, m.days) == (MONTH_SEED, customers, DAY, 31):
            return out
    say(f"generating a month of events for {customers:,} customers (seed {MONTH_SEED})")
    generate(GeneratorConfig(customers=customers, start=DAY, days=31, seed=MONTH_SEED, out=out,
                             overwrite=True))
    return out
