"""Ingestion: every received row ends up accepted, duplicate or rejected, never dropped.

Files (or events from the Python API, or request bodies of the HTTP service read by
meters.ingest.bodies) are read into staging batches of text; the engine
validates each batch in one query (sql/queries/ingest/validate.sql, which holds the rules)
and sorts its rows into accepted, duplicate and rejected in another (ingest/classify.sql);
accepted rows go to `usage_events` and their ids to `usage_event_ids`, rejected rows to
`usage_events_rejected`, and the counts to `ingest_log`. For every ingest, per source:
received = accepted + duplicates + rejected. A file's batches hold rows of that file
only; a batch of request bodies (``ingest_texts``) holds the rows of many sources, so that
many small requests cost the statements of one batch, and is counted and logged per
source all the same.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from meters.catalog import MeterCatalog
from meters.crashpoints import crash_point
from meters.ingest.events import Event
from meters.ingest.journal import (
    DEFAULT_LEASE_S,
    IngestNotStored,
    IngestRun,
    InterruptedIngest,
    repair,
)
from meters.ingest.prefetch import prefetched
from meters.ingest.readers import (
    FIELDS,
    Batch,
    UnreadableFile,
    holds_lines,
    line_numbers,
    read_batches,
    staging_table,
)
from meters.sql_files import Swaps, query
from meters.warehouse.base import Warehouse, check_identifier

REASONS = (
    "malformed_row",
    "missing_field",
    "bad_event_id",
    "bad_customer_id",
    "bad_timestamp",
    "timestamp_too_old",
    "timestamp_in_future",
    "unknown_meter",
    "non_numeric_value",
    "value_out_of_range",
    "negative_value",
    "bad_properties",
    "conflicting_duplicate",
)


@dataclass
class SourceCounts:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, other: SourceCounts) -> None:
        self.received += other.received
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        for reason, n in other.rejected_by_reason.items():
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + n

    @property
    def balanced(self) -> bool:
        return self.received == self.accepted + self.duplicates + self.rejected


@dataclass
class IngestSummary:
    ingest_id: str
    ingested_at: datetime
    window: tuple[datetime, datetime]
    sources: dict[str, SourceCounts] = field(default_factory=dict)
    # Files that could not be read (or not to their end), with why; the others were
    # ingested. Rows read before a file failed are counted in `sources`.
    file_errors: dict[str, str] = field(default_factory=dict)
    # Earlier runs whose process died before they committed, rolled back by this one.
    rolled_back: list[InterruptedIngest] = field(default_factory=list)

    @property
    def total(self) -> SourceCounts:
        total = SourceCounts()
        for counts in self.sources.values():
            total.add(counts)
        return total

    def to_json(self) -> dict[str, Any]:
        total = self.total
        return {
            "ingest_id": self.ingest_id,
            "ingested_at": self.ingested_at.isoformat(),
            "accepted_window": [self.window[0].isoformat(), self.window[1].isoformat()],
            "received": total.received,
            "accepted": total.accepted,
            "duplicates": total.duplicates,
            "rejected": total.rejected,
            "rejected_by_reason": dict(sorted(total.rejected_by_reason.items())),
            "balanced": total.balanced,
            "file_errors": dict(self.file_errors),
            "rolled_back": [
                {
                    "ingest_id": run.ingest_id,
                    "ingested_at": run.ingested_at.isoformat(),
                    "sources": list(run.sources),
                }
                for run in self.rolled_back
            ],
            "sources": {
                name: {
                    "received": c.received,
                    "accepted": c.accepted,
                    "duplicates": c.duplicates,
                    "rejected": c.rejected,
                    "rejected_by_reason": dict(sorted(c.rejected_by_reason.items())),
                }
                for name, c in self.sources.items()
            },
        }


@dataclass(frozen=True)
class TextPart:
    """The JSON-lines rows of one source (a request body, meters.ingest.bodies): their
    line numbers (or positions) and texts."""

    source: str
    numbers: pa.Array
    lines: pa.Array


@dataclass(frozen=True)
class IngestOptions:
    """When an event is too old or too far in the future, relative to the ingest time;
    rows per batch; and how long another process's unfinished ingest may go without a
    heartbeat before this one presumes it dead and rolls it back (on a server; on the
    embedded warehouse the folder lock already tells)."""

    max_event_age: timedelta = timedelta(days=45)
    future_tolerance: timedelta = timedelta(minutes=5)
    batch_rows: int = 1_000_000
    lease: timedelta = timedelta(seconds=DEFAULT_LEASE_S)


ProgressFn = Callable[[str, int], None]


def _utc_ms(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("ingest times must be timezone-aware")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Ingestor:
    """One ingest run: an id, an ingest time, and the batches it classifies."""

    def __init__(
        self,
        warehouse: Warehouse,
        catalog: MeterCatalog,
        *,
        ingested_at: datetime | None = None,
        as_of: datetime | None = None,
        options: IngestOptions | None = None,
        progress: ProgressFn | None = None,
        keep_outcomes: bool = False,
    ) -> None:
        self.warehouse = warehouse
        self.catalog = catalog
        self.options = options or IngestOptions()
        # The ingest time is when the rows arrive (the late-event watermark); the
        # accepted window is measured from `as_of`, which a backfill can set to the
        # period it loads, and defaults to the ingest time.
        self.ingested_at = _utc_ms(ingested_at or datetime.now(UTC))
        reference = _utc_ms(as_of) if as_of else self.ingested_at
        self.window = (
            reference - self.options.max_event_age,
            reference + self.options.future_tolerance,
        )
        self.summary = IngestSummary(uuid.uuid4().hex, self.ingested_at, self.window)
        self.progress = progress
        # With keep_outcomes, each batch's rows as classified (sql/queries/ingest/outcomes.sql):
        # what the HTTP service answers per event.
        self.keep_outcomes = keep_outcomes
        self.outcomes: list[pa.Table] = []
        self._seq = itertools.count()
        self._batch_no = itertools.count()
        self._journal = IngestRun(warehouse, self.summary.ingest_id, self.ingested_at, [])
        self._accepted_so_far = 0

    def ingest_files(self, paths: Iterable[Path]) -> IngestSummary:
        """Ingest files in order, as one run: all of it is stored, or (after a crash) none.

        A file that cannot be read, or not to its end, is named in `summary.file_errors`
        and the other files are still ingested.
        """
        paths = list(paths)
        with self._run([str(path) for path in paths]):
            for path in paths:
                source = str(path)
                self.summary.sources.setdefault(source, SourceCounts())
                try:
                    batches = read_batches(path, self.options.batch_rows, self._reserve)
                    for batch in prefetched(batches):
                        self._classify_and_store(batch)
                except UnreadableFile as exc:
                    self.summary.file_errors[source] = str(exc)
        return self.summary

    def ingest_texts(self, parts: Sequence[TextPart]) -> IngestSummary:
        """Ingest JSON-lines rows of several sources (request bodies, read by
        meters.ingest.bodies) as one run, in shared batches of at most `batch_rows` rows,
        in the order given. With `keep_outcomes`, each row's outcome is in `outcomes`."""
        parts = [part for part in parts if len(part.lines)]
        with self._run([part.source for part in parts]):
            tables = []
            for part in parts:
                self.summary.sources.setdefault(part.source, SourceCounts())
                tables.append(
                    staging_table(
                        part.source,
                        self._reserve(len(part.lines)),
                        part.numbers,
                        is_json=True,
                        raw=part.lines,
                    )
                )
            if tables:
                staged = pa.concat_tables(tables)
                step = self.options.batch_rows
                for offset in range(0, staged.num_rows, step):
                    chunk = staged.slice(offset, step).unify_dictionaries().combine_chunks()
                    self._classify_and_store(Batch("", chunk))
        return self.summary

    def ingest_rows(self, rows: Iterable[Event | Mapping[str, Any]], source: str) -> IngestSummary:
        """Ingest events given in Python (or decoded from an API request), as one run."""
        with self._run([source]):
            self._ingest_rows(rows, source)
        return self.summary

    @contextmanager
    def _run(self, sources: list[str]) -> Iterator[None]:
        # First undo what interrupted runs left (DESIGN.md invariant 2), then journal this one.
        lease_s = int(self.options.lease.total_seconds())
        self.summary.rolled_back.extend(repair(self.warehouse, lease_s=lease_s))
        self._journal.sources.extend(s for s in sources if s not in self._journal.sources)
        self._journal.begin()
        crash_point("ingest.after_begin")
        try:
            yield
            self._verify_run_stored()
        except BaseException:
            self._journal.abandon()
            raise
        crash_point("ingest.before_commit")
        self._journal.commit()

    def _ingest_rows(self, rows: Iterable[Event | Mapping[str, Any]], source: str) -> None:
        self.summary.sources.setdefault(source, SourceCounts())
        iterator = iter(rows)
        line = 0
        while chunk := list(itertools.islice(iterator, self.options.batch_rows)):
            texts = [_row_as_text(row) for row in chunk]
            columns = {name: pa.array([t.get(name) for t in texts], pa.string()) for name in FIELDS}
            numbers = line_numbers(line + 1, len(chunk))
            line += len(chunk)
            table = staging_table(
                source, self._reserve(len(chunk)), numbers, is_json=False, columns=columns
            )
            self._classify_and_store(Batch(source, table))

    def _reserve(self, n: int) -> int:
        first = next(self._seq)
        self._seq = itertools.count(first + n)
        return first

    def _classify_and_store(self, batch: Batch) -> None:
        batch_no = next(self._batch_no)
        scratch = f"_ingest_{self.summary.ingest_id}_{batch_no}"
        staging, validated = f"{scratch}_staging", f"{scratch}_validated"
        classified = f"{scratch}_classified"
        wh = self.warehouse
        run_id = self.summary.ingest_id
        times = {"ingested_at": self.ingested_at, "ingest_id": run_id}
        # The insert-deduplication token names this run's batch and nothing else (the run
        # id is random, the batch number counts up in the run): a retry of the same
        # statement is skipped, and no other insert can ever be taken for a retry of it.
        token = f"{run_id}{batch_no:08x}"

        def store(statement: str, part: str) -> None:
            wh.command(
                query(statement, classified=classified),
                times,
                # optimize_on_insert (on by default) runs a ReplacingMergeTree's merge over
                # each inserted block: it found nothing to fold here (classify accepts each
                # event_id once) and cost 3/4 of the insert (8.2 s of 2M rows, 2.3 s without).
                settings={"insert_deduplication_token": f"{token}-{part}", "optimize_on_insert": 0},
            )
            crash_point(f"ingest.after_{part}")

        try:
            wh.command(query("ingest/create_staging", staging=staging))
            wh.insert_arrow(staging, batch.table)
            wh.command(
                query(
                    "ingest/validate",
                    staging=staging,
                    validated=validated,
                    swaps=_fields_reading(batch.table),
                ),
                {
                    "min_ts": self.window[0],
                    "max_ts": self.window[1],
                    "max_age_days": self.options.max_event_age.days,
                    **self.catalog.validation_params(),
                },
            )
            wh.command(f"DROP TABLE {check_identifier(staging)}")
            wh.command(
                query(
                    "ingest/classify",
                    validated=validated,
                    classified=classified,
                    swaps=_earlier_ids_lookup(batch.table.num_rows),
                )
            )
            # Each step's table is dropped as soon as the next is built: a batch of 2M rows
            # is ~400 MB in each.
            wh.command(f"DROP TABLE {check_identifier(validated)}")
            by_source, low, high = self._count(classified)
            counts = SourceCounts()
            for part in by_source.values():
                counts.add(part)
            if self.keep_outcomes:
                outcomes = wh.query_arrow(query("ingest/outcomes", classified=classified))
                self.outcomes.append(outcomes)
            self._journal.extend(list(by_source), low, high)
            crash_point("ingest.after_classify")
            if counts.accepted:
                store("ingest/insert_accepted", "events")
                store("ingest/insert_ids", "ids")
                self._verify_stored(counts.accepted)
            if counts.rejected:
                store("ingest/insert_rejected", "rejected")
            for source, part in by_source.items():
                self._log(source, part)
            crash_point("ingest.after_log")
        finally:
            for table in (classified, validated, staging):
                wh.command(f"DROP TABLE IF EXISTS {check_identifier(table)}")
        for source, part in by_source.items():
            self.summary.sources.setdefault(source, SourceCounts()).add(part)
            if self.progress:
                self.progress(source, part.received)

    def _verify_stored(self, accepted: int) -> None:
        """Every id this run has counted as accepted so far is stored under it, before the
        next batch looks up earlier ids (a lost insert would let a copy in twice)."""
        self._accepted_so_far += accepted
        ((ids,),) = self.warehouse.query_rows(
            query("ingest/stored_ids"), {"ingest_id": self.summary.ingest_id}
        )
        if int(ids) != self._accepted_so_far:
            self._not_stored(
                f"{ids} of the run's {self._accepted_so_far} accepted ids are in usage_event_ids"
            )

    def _verify_run_stored(self) -> None:
        """Every row this run counted as accepted is stored under it in usage_events: one
        count at the end of the run (a count after each batch read the run's rows again
        each time: 15 reads of a 2M-row batch for a 10M-row file)."""
        accepted = self.summary.total.accepted
        if not accepted:
            return
        ((events,),) = self.warehouse.query_rows(
            query("ingest/stored_events"),
            {
                "ingest_id": self.summary.ingest_id,
                "min_ts": self._journal.min_ts,
                "max_ts": self._journal.max_ts,
            },
        )
        if int(events) != accepted:
            self._not_stored(f"{events} of the run's {accepted} accepted rows are in usage_events")

    def _not_stored(self, what: str) -> None:
        raise IngestNotStored(
            f"ingest {self.summary.ingest_id}: {what}; the ingest was rolled back and "
            "nothing of it counts. This is a bug: report it with the input, then ingest "
            "the files again"
        )

    def _count(
        self, classified: str
    ) -> tuple[dict[str, SourceCounts], datetime | None, datetime | None]:
        """The batch's counts per source (in the order the summary lists them), and the
        range of its accepted rows' timestamps."""
        by_source: dict[str, SourceCounts] = {}
        low: datetime | None = None
        high: datetime | None = None
        for source, status, reason, n, min_ts, max_ts in self.warehouse.query_rows(
            query("ingest/summary", classified=classified)
        ):
            n = int(n)
            counts = by_source.setdefault(str(source), SourceCounts())
            counts.received += n
            if status == "accepted":
                counts.accepted += n
                low = min_ts if low is None else min(low, min_ts)
                high = max_ts if high is None else max(high, max_ts)
            elif status == "duplicate":
                counts.duplicates += n
            else:
                counts.rejected += n
                counts.rejected_by_reason[reason] = counts.rejected_by_reason.get(reason, 0) + n
        return by_source, low, high

    def _log(self, source: str, counts: SourceCounts) -> None:
        self.warehouse.command(
            query("ingest/log"),
            {
                "ingest_id": self.summary.ingest_id,
                "ingested_at": self.ingested_at,
                "source": source,
                "received": counts.received,
                "accepted": counts.accepted,
                "duplicates": counts.duplicates,
                "rejected": counts.rejected,
                "by_reason": counts.rejected_by_reason,
            },
        )


def _fields_reading(table: pa.Table) -> Swaps:
    """How validate reads a batch's fields (ingest/validate.sql): JSON and CSV lines are
    parsed; a batch of field columns only (Parquet, the Python API) skips those steps."""
    return () if holds_lines(table) else (("ingest/_fields", "ingest/_fields_columns"),)


# Above this many rows a batch's ids fall in (nearly) every granule of usage_event_ids'
# sort key, so its lookup reads every stored id: by their hashes (ingest/classify.sql).
BY_HASH_ABOVE_ROWS = 100_000


def _earlier_ids_lookup(rows: int) -> Swaps:
    """How a batch of `rows` rows looks up the ids earlier ingests accepted: a small batch
    along the sort key's index, a large one by scanning the stored ids' hashes."""
    if rows > BY_HASH_ABOVE_ROWS:
        return (("ingest/_earlier_ids", "ingest/_earlier_ids_by_hash"),)
    return ()


def _row_as_text(row: Event | Mapping[str, Any]) -> dict[str, str | None]:
    """An API row as the text a file would hold; validation happens in the engine."""
    data: Mapping[str, Any] = row.model_dump() if isinstance(row, Event) else row
    out: dict[str, str | None] = {}
    for name in FIELDS:
        value = data.get(name)
        if value is None:
            out[name] = None
        elif isinstance(value, datetime):
            out[name] = value.isoformat()
        elif isinstance(value, Mapping | list):
            out[name] = json.dumps(value, sort_keys=True)
        elif isinstance(value, Decimal | int | str):
            out[name] = str(value)
        elif isinstance(value, float):
            out[name] = repr(value)
        else:
            out[name] = str(value)
    return out


def ingest_files(
    warehouse: Warehouse, catalog: MeterCatalog, paths: Iterable[Path], **kwargs: Any
) -> IngestSummary:
    return Ingestor(warehouse, catalog, **kwargs).ingest_files(paths)


def ingest_events(
    warehouse: Warehouse,
    catalog: MeterCatalog,
    events: Iterable[Event | Mapping[str, Any]],
    *,
    source: str = "api",
    **kwargs: Any,
) -> IngestSummary:
    return Ingestor(warehouse, catalog, **kwargs).ingest_rows(events, source)
