"""Process entry points of the ledger load test (importable under the spawn method),
besides tests/billing/_workers.post_batches, which the posters use. Each reports
(name, "ok" | "error", count, deadlocks met) on `results`; a writer that PostgreSQL picks
as a deadlock victim says so and runs its transaction again, as a production caller
(the DAG task's retry) would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import billing
from billing.db import create_ledger_engine, session_factory


def _deadlock(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == "40P01"


def _writer(
    url: str,
    barrier: Any,
    results: Any,
    name: str,
    rounds: int,
    work: Callable[[Session, int], int],
    lockstep: Any = None,
) -> None:
    engine = create_ledger_engine(url)
    make = session_factory(engine)
    done = deadlocks = 0
    try:
        barrier.wait(timeout=60)
        for n in range(rounds):
            if lockstep is not None:  # every round starts with the other workers' round
                lockstep.wait(timeout=120)
            while True:
                try:
                    with make.begin() as session:
                        done += work(session, n)
                    break
                except OperationalError as exc:
                    if not _deadlock(exc) or deadlocks > 10 * rounds:
                        raise
                    deadlocks += 1
        results.put((name, "ok", done, deadlocks))
    except Exception as exc:  # reported to the test, which fails on it
        results.put((name, "error", repr(exc), deadlocks))
    finally:
        engine.dispose()


def load_customers(
    url: str,
    paths: list[str],
    lockstep: Any,
    barrier: Any,
    results: Any,
    name: str,
    rounds: int,
) -> None:
    """Load the customers files in turn, `rounds` times (each load one transaction),
    each round started together with the other loaders' (`lockstep`, a barrier)."""

    def work(session: Session, n: int) -> int:
        billing.load_customers_file(session, Path(paths[n % len(paths)]))
        return 1

    _writer(url, barrier, results, name, rounds, work, lockstep)


def finalize_and_void(
    url: str,
    as_of: datetime,
    void: list[int],
    barrier: Any,
    results: Any,
    name: str,
    rounds: int,
) -> None:
    """Finalize every due draft, then void one invoice of `void` per round."""

    def work(session: Session, n: int) -> int:
        finalized = len(billing.finalize_due(session, as_of=as_of))
        if n < len(void):
            billing.void(session, void[n], as_of=as_of)
        return finalized

    _writer(url, barrier, results, name, rounds, work)
