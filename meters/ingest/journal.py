"""The ingest journal: an ingest lands whole, or not at all.

ClickHouse has no transaction across tables, and an ingest writes four: `usage_events`,
`usage_event_ids`, `usage_events_rejected` and `ingest_log`. So each ingest run is
recorded in `ingest_runs` (sql/migrations/0003_ingest_runs.sql):

- `started` before it writes anything, with the range of event timestamps it may write
  (refreshed, with a heartbeat, before each batch's inserts);
- `committed` after every batch is stored, verified against what it reports, and logged.

The range of a run's accepted event timestamps (`min_ts`, `max_ts`) also tells the
nightly rollup which days a committed or rolled-back run changed, however old
(meters.rollup.plan_scan), and a close how old the events it has not seen may be.

A run that stays `started` after its process died (SIGKILL, a lost machine) is rolled
back by the next ingest or rollup: its rows are deleted from the four tables, its
scratch tables dropped, and it is marked `rolled_back`. Its files were never reported
as ingested, so they are simply ingested again. Stored events and `ingest_log` therefore
always agree, which is what reconcile's intake check relies on (DESIGN.md invariant 2).

When is a `started` run dead? On the embedded warehouse (chDB) this process holds the
folder lock, so any run not in progress in this process is dead. On a server, several
processes may ingest at once: a run is dead when its heartbeat is older than the lease
(`lease_s`, the server's clock). A run that outlives its lease without a heartbeat and
is rolled back finds out at its next heartbeat or at commit, and fails loudly.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from meters.sql_files import query, split_statements
from meters.warehouse.base import Warehouse, WarehouseError, check_identifier

# A run's heartbeat is renewed before each batch; a batch of 2M rows takes well under a
# minute even on a loaded machine, so 15 minutes of silence means the process is gone.
DEFAULT_LEASE_S = 900

OWNER = f"{socket.gethostname()}:{os.getpid()}"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Scratch tables are `_ingest_<run id>_<batch>_<kind>`; the run id is 32 hex digits
# (older versions used its first 12).
_SCRATCH = re.compile(r"^_ingest_([0-9a-f]{12,32})_\d+_[a-z]+$")

_active: set[str] = set()
_active_lock = threading.Lock()


class IngestRolledBack(WarehouseError):
    """This ingest run was rolled back by another process (it missed its lease)."""


class IngestNotStored(WarehouseError):
    """Rows an ingest counted as accepted are not in the warehouse after the insert."""


@dataclass(frozen=True)
class InterruptedIngest:
    """A run whose process died before it committed; it has been rolled back."""

    ingest_id: str
    ingested_at: datetime
    owner: str
    sources: tuple[str, ...]
    # the event timestamps the run may have written (recorded before each insert)
    min_ts: datetime
    max_ts: datetime


@dataclass
class IngestRun:
    """One run's journal entry, as this process keeps it while the run is in progress."""

    warehouse: Warehouse
    ingest_id: str
    ingested_at: datetime
    sources: list[str]
    min_ts: datetime | None = None
    max_ts: datetime | None = None

    def begin(self) -> None:
        with _active_lock:
            _active.add(self.ingest_id)
        self._record("started")

    def extend(self, sources: Sequence[str], low: datetime | None, high: datetime | None) -> None:
        """Widen the recorded source list and timestamp range, before rows are inserted."""
        for source in sources:
            if source not in self.sources:
                self.sources.append(source)
        if low is not None:
            self.min_ts = low if self.min_ts is None else min(self.min_ts, low)
        if high is not None:
            self.max_ts = high if self.max_ts is None else max(self.max_ts, high)
        self.check_alive()
        self._record("started")

    def check_alive(self) -> None:
        if run_state(self.warehouse, self.ingest_id) == "rolled_back":
            raise IngestRolledBack(
                f"ingest {self.ingest_id} was rolled back by another process while it ran "
                "(its heartbeat was older than the lease); nothing of it counts: ingest its "
                "files again"
            )

    def commit(self) -> None:
        self.check_alive()
        self._record("committed")
        self._done()

    def abandon(self) -> None:
        """The run failed in this process: remove what it wrote, now."""
        try:
            roll_back(self.warehouse, self._interrupted())
        finally:
            self._done()

    def _interrupted(self) -> InterruptedIngest:
        return InterruptedIngest(
            self.ingest_id,
            self.ingested_at,
            OWNER,
            tuple(self.sources),
            self.min_ts or _EPOCH,
            self.max_ts or _EPOCH,
        )

    def _done(self) -> None:
        with _active_lock:
            _active.discard(self.ingest_id)

    def _record(self, state: str) -> None:
        record(
            self.warehouse,
            self.ingest_id,
            state,
            ingested_at=self.ingested_at,
            sources=self.sources,
            min_ts=self.min_ts,
            max_ts=self.max_ts,
        )


def record(
    warehouse: Warehouse,
    ingest_id: str,
    state: str,
    *,
    ingested_at: datetime,
    sources: Sequence[str],
    min_ts: datetime | None,
    max_ts: datetime | None,
    owner: str = OWNER,
) -> None:
    warehouse.command(
        query("ingest/run_record"),
        {
            "ingest_id": ingest_id,
            "ingested_at": ingested_at,
            "owner": owner,
            "sources": list(sources),
            "min_ts": min_ts or _EPOCH,
            "max_ts": max_ts or _EPOCH,
            "state": state,
        },
    )


def run_state(warehouse: Warehouse, ingest_id: str) -> str:
    """started, committed or rolled_back; '' for a run never recorded (or before 0003)."""
    rows = warehouse.query_rows(query("ingest/run_state"), {"ingest_id": ingest_id})
    return str(rows[0][0]) if rows and rows[0][0] else ""


def _is_live(warehouse: Warehouse, ingest_id: str, expired: bool) -> bool:
    with _active_lock:
        if ingest_id in _active:
            return True
    # The embedded warehouse is locked by this process: a run not active here is dead.
    return not (getattr(warehouse, "exclusive", False) or expired)


def roll_back(warehouse: Warehouse, run: InterruptedIngest) -> None:
    """Delete every row the run wrote and mark it rolled back (idempotent)."""
    params = {
        "ingest_id": run.ingest_id,
        "min_ms": _ms(run.min_ts),
        "max_ms": _ms(run.max_ts),
    }
    for statement in split_statements(query("ingest/rollback")):
        warehouse.command(statement, params)
    record(
        warehouse,
        run.ingest_id,
        "rolled_back",
        ingested_at=run.ingested_at,
        sources=run.sources,
        min_ts=run.min_ts,
        max_ts=run.max_ts,
        owner=run.owner,
    )


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def repair(warehouse: Warehouse, *, lease_s: int = DEFAULT_LEASE_S) -> list[InterruptedIngest]:
    """Roll back the runs whose process died, and drop scratch tables no live run uses.

    Returns the runs rolled back (their files must be ingested again). Safe to call at any
    time, from any process: a run in progress here, or with a fresh heartbeat, is left alone.
    """
    rolled: list[InterruptedIngest] = []
    live: set[str] = set()
    for ingest_id, ingested_at, owner, sources, low, high, expired in warehouse.query_rows(
        query("ingest/runs_started"), {"lease_s": lease_s}
    ):
        if _is_live(warehouse, ingest_id, bool(expired)):
            live.add(ingest_id)
            continue
        run = InterruptedIngest(ingest_id, ingested_at, owner, tuple(sources), low, high)
        roll_back(warehouse, run)
        rolled.append(run)
    with _active_lock:
        live |= _active
    exclusive = getattr(warehouse, "exclusive", False)
    for (name,) in warehouse.query_rows(query("ingest/scratch_tables")):
        # The engine's own temporary table of a `CREATE TABLE ... AS SELECT` cut short by
        # a kill: removable only where no other process can be creating one right now.
        if name.startswith("_tmp_replace_"):
            if exclusive:
                warehouse.command(f"DROP TABLE IF EXISTS {check_identifier(name)}")
            continue
        match = _SCRATCH.match(name)
        if match is None:
            continue
        if any(run_id.startswith(match.group(1)) for run_id in live):
            continue
        warehouse.command(f"DROP TABLE IF EXISTS {check_identifier(name)}")
    return rolled
