"""The HTTP service's event intake (``POST /v1/events``): request bodies buffered into
shared ingest runs, stored with group commit.

Each request body is read as the JSON-lines file it stands for (meters.ingest.bodies)
and ingested by the same code as files (meters.ingest.ingestor: the same validation in
the engine, the same deduplication by event_id against everything stored, the same
accounting in ``ingest_log``, where each request is a source of its own). What differs
is only how rows are grouped: requests wait in a buffer, and a flusher thread ingests
everything waiting as one run, in batches of up to METERLINE_INGEST_BATCH_ROWS rows, once
METERLINE_SERVICE_FLUSH_EVENTS events wait or the oldest has waited
METERLINE_SERVICE_FLUSH_MS, so many small requests cost the statements of one batch
(validating a batch costs the engine about half a second whatever its size).

Durability (docs/service.md): a request's outcome is handed back only after the run that
holds its events committed (its journal entry `committed`, written after every batch of
the run was stored and verified). A run that fails is rolled back whole, and every
request of it gets the error: nothing of it was stored. A process that dies mid-run
leaves a `started` run, rolled back by the next ingest; its requests were never
answered, so their clients send them again (event_id makes that safe).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, Field

from meterline import connections
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog
from meters.ingest.bodies import BodyError, json_array_rows, ndjson_rows
from meters.ingest.ingestor import Ingestor, TextPart

__all__ = [
    "BodyError",
    "BufferFull",
    "EventIntake",
    "EventOutcome",
    "EventsResult",
    "IngestFailed",
    "IntakeClosed",
]

log = logging.getLogger(__name__)

BodyKind = Literal["json", "ndjson"]
Status = Literal["accepted", "duplicate", "rejected"]


class BufferFull(RuntimeError):
    """More events wait to be stored than METERLINE_SERVICE_BUFFER_MAX_EVENTS: the
    request is refused, nothing of it stored (send it again shortly)."""


class IngestFailed(RuntimeError):
    """The ingest run holding a request's events failed before it committed: it was rolled
    back (or never began), nothing of the request was stored. The cause is chained."""


class IntakeClosed(RuntimeError):
    """The intake is stopping (the service shuts down): nothing more is taken."""


class EventOutcome(BaseModel):
    """What became of one event of a request."""

    index: int = Field(description="Position of the event in the request, from 0.")
    line: int = Field(
        description="Where the event is in the body, as stored with a rejected row:"
        " its physical line (NDJSON), or its position from 1 (a JSON array)."
    )
    event_id: str | None = Field(description="The event's id as read; null when unreadable.")
    status: Status
    reason: str | None = Field(
        default=None, description="Why it was rejected (`meterline rejected --reason`)."
    )
    detail: str | None = Field(default=None, description="The rejection in words.")


class EventsResult(BaseModel):
    """One request's events: the ingest run that stored them and each event's outcome.
    received = accepted + duplicates + rejected."""

    source: str = Field(description="The request as named in ingest_log and rejected rows.")
    ingest_id: str | None = Field(description="The ingest run; null for an empty request.")
    ingested_at: datetime | None
    received: int
    accepted: int
    duplicates: int
    rejected: int
    rejected_by_reason: dict[str, int]
    events: list[EventOutcome]


@dataclass
class _Waiting:
    source: str
    numbers: pa.Array
    lines: pa.Array
    since: float
    future: Future[EventsResult] = field(default_factory=Future)


def read_body(body: bytes, kind: BodyKind) -> tuple[pa.Array, pa.Array]:
    """A body's rows: (line numbers or positions, texts). Raises BodyError."""
    return ndjson_rows(body) if kind == "ndjson" else json_array_rows(body)


class EventIntake:
    """The buffer and its flusher thread, holding the warehouse open from `start` to
    `close` (an embedded chDB folder is this process's alone meanwhile)."""

    def __init__(
        self,
        config: Settings | None = None,
        *,
        catalog: Callable[[], MeterCatalog] | None = None,
    ) -> None:
        self.config = config or settings()
        self.flush_events = self.config.service_flush_events
        self.flush_s = self.config.service_flush_ms / 1000
        self.max_waiting = self.config.service_buffer_max_events
        self._catalog = catalog or (lambda: connections.meter_catalog(self.config))
        self._cond = threading.Condition()
        self._waiting: list[_Waiting] = []
        self._waiting_events = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stack = ExitStack()
        # what the flusher has done, for the benchmark and the logs
        self.flushes = 0
        self.flushed_events = 0

    def start(self) -> None:
        """Open the warehouse (checked as every command checks it), check that a catalog
        is loaded (CatalogNotLoaded), and start flushing."""
        self.warehouse = self._stack.enter_context(connections.open_warehouse(self.config))
        try:
            self._catalog()
        except BaseException:
            self._stack.close()
            raise
        self._thread = threading.Thread(target=self._loop, name="meterline-intake", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Store what waits, stop the flusher, release the warehouse."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._stack.close()

    @property
    def running(self) -> bool:
        """The flusher runs and takes requests."""
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def submit(self, body: bytes, kind: BodyKind, source: str) -> Future[EventsResult]:
        """Queue a request body; the future is resolved once its run committed (or with
        the error that rolled it back). Raises BodyError for a body that is not a batch
        of events, BufferFull and IntakeClosed."""
        numbers, lines = read_body(body, kind)
        item = _Waiting(source, numbers, lines, time.monotonic())
        if not len(lines):
            item.future.set_result(_result(source, None, None, []))
            return item.future
        with self._cond:
            if self._stopping or self._thread is None:
                raise IntakeClosed("the service is stopping; send the events again shortly")
            if self._waiting_events + len(lines) > self.max_waiting and self._waiting:
                raise BufferFull(
                    f"{self._waiting_events:,} events wait to be stored (at most"
                    f" {self.max_waiting:,}, METERLINE_SERVICE_BUFFER_MAX_EVENTS); nothing of"
                    " this request was stored: send it again shortly"
                )
            self._waiting.append(item)
            self._waiting_events += len(lines)
            if self._waiting_events >= self.flush_events:
                self._cond.notify_all()
            elif len(self._waiting) == 1:
                self._cond.notify_all()  # the flusher starts its clock
        return item.future

    def _due(self) -> bool:
        if not self._waiting:
            return False
        if self._stopping or self._waiting_events >= self.flush_events:
            return True
        return time.monotonic() - self._waiting[0].since >= self.flush_s

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    if self._stopping and not self._waiting:
                        return
                    wait = None
                    if self._waiting:
                        wait = max(0.0, self.flush_s - (time.monotonic() - self._waiting[0].since))
                    self._cond.wait(wait)
                taken, self._waiting = self._waiting, []
                self._waiting_events = 0
            self._flush(taken)

    def _flush(self, taken: list[_Waiting]) -> None:
        events = sum(len(item.lines) for item in taken)
        started = time.monotonic()
        try:
            ingestor = Ingestor(
                self.warehouse,
                self._catalog(),
                options=connections.ingest_options(self.config),
                keep_outcomes=True,
            )
            summary = ingestor.ingest_texts(
                [TextPart(item.source, item.numbers, item.lines) for item in taken]
            )
        except Exception as exc:  # rolled back by the ingestor (or never begun)
            log.error(
                "ingest of %d request(s), %d event(s) failed and stored nothing: %s: %s",
                len(taken),
                events,
                type(exc).__name__,
                exc,
                exc_info=True,
            )
            failure = IngestFailed(
                f"the events could not be stored ({type(exc).__name__}); nothing of this"
                " request was stored: send it again"
            )
            failure.__cause__ = exc
            for item in taken:
                item.future.set_exception(failure)
            return
        try:
            results = _results(taken, ingestor, summary.ingest_id, summary.ingested_at)
            for item, result in zip(taken, results, strict=True):
                counts = summary.sources[item.source]
                if (counts.received, counts.accepted, counts.duplicates, counts.rejected) != (
                    result.received,
                    result.accepted,
                    result.duplicates,
                    result.rejected,
                ):
                    raise RuntimeError(
                        f"ingest {summary.ingest_id}: the outcomes of {item.source} do not"
                        " add up to its ingest_log counts (a bug)"
                    )
        except Exception as exc:  # stored, but not told: a bug
            log.error("ingest %s: outcomes not read: %s", summary.ingest_id, exc, exc_info=True)
            for item in taken:
                item.future.set_exception(exc)
            return
        self.flushes += 1
        self.flushed_events += events
        log.info(
            "ingest %s: %d request(s), %d event(s) stored in %.3f s",
            summary.ingest_id,
            len(taken),
            events,
            time.monotonic() - started,
        )
        for item, result in zip(taken, results, strict=True):
            item.future.set_result(result)


def _results(
    taken: list[_Waiting], ingestor: Ingestor, ingest_id: str, ingested_at: datetime
) -> list[EventsResult]:
    """Each request's outcomes: the classified rows come back in the order staged (the
    requests in turn, each in its own order)."""
    table = pa.concat_tables(ingestor.outcomes) if ingestor.outcomes else None
    columns = (
        {name: table.column(name).to_pylist() for name in table.column_names}
        if table is not None
        else {}
    )
    rows = iter(
        zip(
            columns.get("source", []),
            columns.get("source_line", []),
            columns.get("status", []),
            columns.get("reason", []),
            columns.get("detail", []),
            columns.get("event_id", []),
            strict=True,
        )
    )
    results = []
    for item in taken:
        outcomes = []
        for index, number in enumerate(item.numbers.to_pylist()):
            source, line, status, reason, detail, event_id = next(rows)
            if source != item.source or int(line) != number:
                raise RuntimeError(
                    f"outcome of {source} line {line} came back where {item.source} line"
                    f" {number} was expected (a bug)"
                )
            outcomes.append(
                EventOutcome(
                    index=index,
                    line=int(line),
                    event_id=event_id,
                    status=status,
                    reason=reason or None,
                    detail=detail or None,
                )
            )
        results.append(_result(item.source, ingest_id, ingested_at, outcomes))
    return results


def _result(
    source: str, ingest_id: str | None, ingested_at: datetime | None, events: list[EventOutcome]
) -> EventsResult:
    by_reason: dict[str, int] = {}
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for event in events:
        counts[event.status] += 1
        if event.reason:
            by_reason[event.reason] = by_reason.get(event.reason, 0) + 1
    return EventsResult(
        source=source,
        ingest_id=ingest_id,
        ingested_at=ingested_at,
        received=len(events),
        accepted=counts["accepted"],
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        rejected_by_reason=dict(sorted(by_reason.items())),
        events=events,
    )
