"""Named points where a test may kill the process, to prove that a crash loses nothing.

Set `METERLINE_CRASH_AT=<point>` (or `<point>:<n>`, the n-th time the point is reached;
several separated by commas) in a process's environment and it kills itself with SIGKILL
there: no `finally`, no flush, exactly like a lost machine. Unset (always, outside
tests), a crash point costs one dictionary lookup. The points are listed where they are
placed (`crash_point("ingest.after_events")`); tests/meters/test_ingest_crash.py kills an
ingest at each of them.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "METERLINE_CRASH_AT"
_hits: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if the environment names this point (and hit)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    _hits[name] += 1
    for entry in spec.split(","):
        point, _, nth = entry.strip().partition(":")
        if point == name and _hits[name] == (int(nth) if nth else 1):
            os.kill(os.getpid(), signal.SIGKILL)
