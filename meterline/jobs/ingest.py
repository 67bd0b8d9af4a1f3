"""The ingest job: usage files into the warehouse as one ingest run, and the verdict a
person needs. `meterline ingest` and the usage_ingest DAG's task both call it
(`ingest_paths` for files and folders, `ingest_delivery` for a UTC day's delivery at
METERLINE_DELIVERY_PATH), so a scheduled run fails exactly when the command exits
non-zero:

- ``report.file_errors``: a file that could not be read, or a folder holding no usage
  file (exit code 2); every other file is still ingested.
- ``report.problem``: the rejections need a person (exit code 1): more rows rejected
  than METERLINE_INGEST_MAX_REJECTED_SHARE allows, or every row received.
- ``report.balanced`` false: the accounting received = accepted + duplicates + rejected
  does not hold (a bug, exit code 5).

Time: the ingest time (the late-event watermark) is when the rows are stored, never a
logical date; the accepted event window is measured from ``as_of`` (a delivery: the end
of its day, the data interval's end), so a backfill of an old day accepts its events.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from meterline import connections
from meterline.jobs.rollup import day_end
from meterline.settings import Settings, settings
from meters.ingest.ingestor import REASONS, Ingestor, IngestSummary, SourceCounts
from meters.ingest.readers import FORMATS, count_rows

# The file types ingest reads (meters.ingest.readers.FORMATS), for walking folders.
SUFFIXES = tuple(FORMATS)


__all__ = [
    "REASONS",
    "DeliveryNotFound",
    "IngestReport",
    "RejectedRow",
    "UnknownIngest",
    "expected_rows",
    "ingest_delivery",
    "ingest_paths",
    "rejected_rows",
    "rejected_share_problem",
    "usage_files",
]


class DeliveryNotFound(FileNotFoundError):
    """A day's delivery is not there (yet): its location does not exist or holds no
    usage file. A scheduled run retries (the delivery may be late); by hand, exit code 2."""


class UnknownIngest(LookupError):
    """No ingest has this id (exit code 3)."""


@dataclass(frozen=True)
class RejectedRow:
    """A row an ingest refused: where it came from (file and physical line, or batch),
    why (one of REASONS, and the detail), and its raw payload as it arrived."""

    ingest_id: str
    ingested_at: datetime
    source: str
    line: int
    reason: str
    detail: str
    raw: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ingest_id": self.ingest_id,
            "ingested_at": self.ingested_at.isoformat(),
            "source": self.source,
            "line": self.line,
            "reason": self.reason,
            "detail": self.detail,
            "raw": self.raw,
        }


@dataclass(frozen=True)
class IngestReport:
    """One ingest run: its summary (per source counts, rolled-back runs), every file or
    folder that could not be used with why, and why its rejections need a person."""

    summary: IngestSummary
    file_errors: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    # A delivery: the UTC day and the location it was read from.
    day: date | None = None
    location: str | None = None

    @property
    def ingest_id(self) -> str:
        return self.summary.ingest_id

    @property
    def total(self) -> SourceCounts:
        return self.summary.total

    @property
    def balanced(self) -> bool:
        return self.total.balanced

    def to_json(self) -> dict[str, Any]:
        """The summary as `meterline ingest --json` prints it (every file error named)."""
        doc = self.summary.to_json()
        doc["file_errors"] = dict(self.file_errors)
        if self.day is not None:
            doc["day"] = self.day.isoformat()
            doc["location"] = self.location
        return doc

    def failure(self) -> str | None:
        """Why a scheduled run of this ingest must fail (what the command exits non-zero
        for), as one text; None when it needs no one."""
        total = self.total
        if not self.balanced:
            return (
                f"ingest {self.ingest_id} does not balance (received {total.received} !="
                f" accepted {total.accepted} + duplicates {total.duplicates} + rejected"
                f" {total.rejected}): a bug, please report it"
            )
        reasons = list(self.file_errors.values())
        if self.problem:
            reasons.append(
                f"{self.problem}; see them with: meterline rejected --ingest {self.ingest_id}"
            )
        return "; ".join(reasons) or None


def rejected_share_problem(total: SourceCounts, max_share: Decimal) -> str | None:
    """Why an ingest's rejections need a person (exit code 1), or None.

    Every row rejected is always a problem (a nightly job must not go green on a file it
    could not use); otherwise rejected / received above `max_share`, compared exactly
    (rejected > max_share x received, in Decimal)."""
    received, rejected = total.received, total.rejected
    if not received:
        return None
    share = (Decimal(rejected) * 100 / received).quantize(Decimal("0.1"))
    if rejected == received:
        return f"every row was rejected ({rejected:,} of {received:,})"
    if Decimal(rejected) > max_share * received:
        return (
            f"{rejected:,} of {received:,} rows were rejected ({share}%), more than "
            f"METERLINE_INGEST_MAX_REJECTED_SHARE allows ({max_share})"
        )
    return None


def usage_files(paths: Sequence[Path]) -> tuple[list[Path], dict[str, str]]:
    """The files to ingest, folders walked recursively (usage files only, in name
    order), and a refusal for each folder that holds none."""
    files: list[Path] = []
    problems: dict[str, str] = {}
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
            )
            if not found:
                problems[str(path)] = (
                    f"{path}: the folder holds no usage files ({', '.join(SUFFIXES)})"
                )
            files.extend(found)
        else:
            files.append(path)
    return files, problems


def expected_rows(paths: Sequence[Path]) -> int | None:
    """Rows the files hold when every one is known cheaply (Parquet), for a progress
    bar's total; else None."""
    known = [count_rows(p) for p in usage_files(paths)[0]]
    return sum(n for n in known if n is not None) if all(n is not None for n in known) else None


def ingest_paths(
    paths: Sequence[Path],
    *,
    as_of: datetime | None = None,
    config: Settings | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest files and folders (read recursively) as one run. `as_of` (default: now)
    is the time event ages are judged against; `on_rows(n)` is called as rows are
    stored. Raises what the warehouse and ledger openers raise (a schema that is not
    this code's: exit code 2; unreachable: 4) and CatalogNotLoaded (2)."""
    config = config or settings()
    files, problems = usage_files(paths)
    catalog = connections.meter_catalog(config)
    with connections.open_warehouse(config) as warehouse:
        ingestor = Ingestor(
            warehouse,
            catalog,
            as_of=as_of,
            options=connections.ingest_options(config),
            progress=(lambda _source, rows: on_rows(rows)) if on_rows else None,
        )
        summary = ingestor.ingest_files(files)
    return IngestReport(
        summary,
        {**problems, **summary.file_errors},
        rejected_share_problem(summary.total, config.ingest_max_rejected_share),
    )


def ingest_delivery(
    day: date,
    *,
    as_of: datetime | None = None,
    config: Settings | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest the delivery of UTC `day` (METERLINE_DELIVERY_PATH filled with the day) as
    one run; `as_of` defaults to the day's end. Raises DeliveryNotFound when the location
    does not exist or holds no usage file, and what `ingest_paths` raises."""
    config = config or settings()
    location = config.delivery_location(day)
    with _fetched(location) as files:
        report = ingest_paths(files, as_of=as_of or day_end(day), config=config, on_rows=on_rows)
    return IngestReport(
        report.summary, report.file_errors, report.problem, day=day, location=location
    )


@contextmanager
def _fetched(location: str) -> Iterator[list[Path]]:
    """The usage files of a delivery as local paths: local folders and file:// URLs as
    they are; any other fsspec URL copied to a temporary folder for the ingest."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, path = fsspec.core.url_to_fs(location)
    if fs.isdir(path):
        found = [p for p in fs.find(path) if posixpath.splitext(p)[1].lower() in SUFFIXES]
        if not found:
            raise DeliveryNotFound(
                f"{location}: the delivery holds no usage files ({', '.join(SUFFIXES)}) yet"
            )
    elif fs.isfile(path):
        found = [path]
    elif any(c in path for c in "*?["):
        found = [p for p in fs.glob(path) if fs.isfile(p)]
        if not found:
            raise DeliveryNotFound(f"{location}: no file of the delivery matches (yet)")
    else:
        raise DeliveryNotFound(
            f"{location}: no delivery there (yet); METERLINE_DELIVERY_PATH names where a"
            " day's usage files arrive"
        )
    found.sort()
    if isinstance(fs, LocalFileSystem):
        yield [Path(p) for p in found]
        return
    with tempfile.TemporaryDirectory(prefix="meterline-delivery-") as folder:
        local = []
        for n, remote in enumerate(found):
            target = Path(folder) / f"{n:05d}-{posixpath.basename(remote)}"
            fs.get_file(remote, str(target))
            local.append(target)
        yield local


def rejected_rows(
    *,
    ingest_id: str | None = None,
    reason: str | None = None,
    limit: int = 20,
    config: Settings | None = None,
) -> list[RejectedRow]:
    """The rejected rows, newest first, of one ingest and/or one reason (at most
    `limit`). Raises UnknownIngest for an ingest id no ingest has, ValueError for a
    reason not in REASONS."""
    if reason is not None and reason not in REASONS:
        raise ValueError(f"{reason!r} is not a rejection reason (reasons: {', '.join(REASONS)})")
    with connections.open_warehouse(config or settings()) as warehouse:
        if ingest_id is not None:
            ((known,),) = warehouse.query_rows(
                "SELECT count() FROM ingest_log WHERE ingest_id = {ingest:String}",
                {"ingest": ingest_id},
            )
            if not int(known):
                raise UnknownIngest(
                    f"no ingest {ingest_id!r}: ingest ids are printed by `meterline ingest`"
                )
        rows = warehouse.query_rows(
            "SELECT ingest_id, ingested_at, source, source_line, reason, detail, raw "
            "FROM usage_events_rejected "
            "WHERE ({ingest:String} = '' OR ingest_id = {ingest:String}) "
            "AND ({reason:String} = '' OR reason = {reason:String}) "
            "ORDER BY ingested_at DESC, source, source_line LIMIT {limit:UInt32}",
            {"ingest": ingest_id or "", "reason": reason or "", "limit": limit},
        )
    return [
        RejectedRow(str(i), at, str(src), int(line), str(why), str(detail), str(raw))
        for i, at, src, line, why, detail, raw in rows
    ]
