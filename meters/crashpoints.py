"""Named points where a test may kill the process, to prove that a crash loses nothing.

Set `METERLINE_CRASH_AT=<point>` (or `<point>:<n>`, the n-th time the point is reached
in this process; several separated by commas) in a process's environment and it kills
itself with SIGKILL there: no `finally`, no flush, exactly like a lost machine. Unset
(always, outside tests), a crash point costs one dictionary lookup. Hits are counted
under a lock: a point reached from several threads (the deliverer's pool) dies at
exactly its n-th hit.

The points, where they are placed, and the test that kills a process at each and
proves the retry repairs it:

- ingest (meters/ingest/ingestor.py; tests/meters/test_ingest_crash.py):
  `ingest.after_begin`, `ingest.after_classify`, `ingest.after_events`,
  `ingest.after_ids`, `ingest.after_rejected`, `ingest.after_log` (per batch),
  `ingest.before_commit`.
- rollup (meters/rollup.py `rebuild_day`; tests/meters/test_rollup_crash.py):
  `rollup.after_staging` (a day's staging table built and summarized, before the swap),
  `rollup.after_swap` (the day swapped in, before its `rollup_state` record),
  `rollup.after_day` (a day rebuilt, recorded, its staging table dropped: once per day
  of a rollup with late days or a backfill, so `rollup.after_day:2` dies mid-run).
- close (meterline/jobs/close.py; tests/meterline/test_close_crash.py):
  `close.after_post` (periods and late adjustments posted, before finalizing: inside the
  close's one ledger transaction, so nothing of it is committed),
  `close.after_finalize` (after the transaction that finalized committed, before the
  close returns its report).
- delivery (tests/sinks/test_delivery_crash.py): `deliver.after_send`
  (meterline/jobs/deliver.py: the sink's call returned, Stripe has acted, the outcome
  is not recorded yet), `stripe.after_lines` (meterline/sinks/stripe/sink.py: an
  invoice's lines added to its Stripe draft, before Stripe's finalize call).
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

ENV = "METERLINE_CRASH_AT"
_hits: Counter[str] = Counter()
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if the environment names this point (and hit)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    with _lock:
        _hits[name] += 1
        hit = _hits[name]
        for entry in spec.split(","):
            point, _, nth = entry.strip().partition(":")
            if point == name and hit == (int(nth) if nth else 1):
                os.kill(os.getpid(), signal.SIGKILL)
