"""Process entry points for the concurrency tests (importable under the spawn method)."""

from __future__ import annotations

from typing import Any

import billing
from billing.db import create_ledger_engine, session_factory


def post_batches(
    url: str,
    batches: list[billing.ChargeBatch],
    barrier: Any,
    results: Any,
    name: str,
    rounds: int = 1,
) -> None:
    """Wait for the others, then post ``batches`` in one transaction (``rounds`` times).
    Each round's result ends with the deadlocks met so far (each retried)."""
    engine = create_ledger_engine(url)
    make = session_factory(engine)
    deadlocks: list[str] = []
    try:
        barrier.wait(timeout=60)
        for _ in range(rounds):
            try:
                result = _post_retrying(make, batches, deadlocks)
                results.put(
                    (
                        name,
                        "ok",
                        result.created,
                        result.unchanged,
                        result.invoices_created,
                        len(deadlocks),
                    )
                )
            except billing.PostingConflict as exc:
                results.put((name, "conflict", str(exc), 0, 0))
    except Exception as exc:  # reported to the test, which fails on it
        results.put((name, "error", repr(exc), 0, 0))
    finally:
        engine.dispose()


def _post_retrying(
    make: Any, batches: list[billing.ChargeBatch], deadlocks: list[str], attempts: int = 3
) -> Any:
    """A client's transaction, retried when PostgreSQL picks it as a deadlock victim (a
    safety net, as a production caller would have: ledger writers queue on one advisory
    lock, so none is expected); posting is idempotent, so a retry posts what is missing."""
    from sqlalchemy.exc import OperationalError

    for attempt in range(attempts):
        try:
            with make.begin() as session:
                return billing.post_charges_bulk(session, batches)
        except OperationalError as exc:
            if "deadlock detected" not in str(exc) or attempt == attempts - 1:
                raise
            deadlocks.append(str(exc))
    raise AssertionError("unreachable")
