"""The PostgreSQL ledger held under concurrent writers, the way it once met a deadlock
(two bulk posts over overlapping sets, each cut into its own 2,000-period chunks: one
locked an existing invoice in one chunk while the other waited on it holding a new
invoice the first needed; fixed by the ledger's advisory write lock, billing.bulk.
lock_ledger_writes). Here: three posting processes over overlapping sets of 2,100,
1,050 and 1,400 periods (the first in two chunks), in rounds, while two processes load customers
files listing the same customers in opposite orders and one finalizes and voids.

Every writer that PostgreSQL picks as a deadlock victim runs its transaction again
(tests/billing/_workers.py, tests/concurrency/_workers.py); none must be picked. Then
the posters are shown to recover from a deadlock they cannot avoid: another program
that locks invoice rows without the advisory lock. Either way every line is posted
exactly once."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

import billing
from billing.models import Customer, Invoice, InvoiceLine, Subscription
from meterline.cli.exits import ExitCode, exit_code_for, message_of
from tests.billing import _workers as posting
from tests.billing.conftest import Ledger, ledger, ledger_url  # noqa: F401
from tests.billing.factories import CATALOG, CUSTOMERS, standard_charges, write_customers
from tests.concurrency import _workers

CTX = mp.get_context("spawn")
SUBS = 2100  # periods of a month: more than one posting chunk (billing.posting.CHUNK)
AS_OF = datetime(2026, 2, 10, tzinfo=UTC)
TIMEOUT = 240
ROUNDS = 2


def period(month: int) -> billing.Period:
    return billing.period_containing(1, "America/New_York", datetime(2026, month, 20, tzinfo=UTC))


def sub(i: int) -> str:
    return f"sub_l{i:04d}"


def customers_file(path: Path, tag: str, *, reverse: bool) -> Path:
    rows = [
        {
            **CUSTOMERS[0],
            "customer_id": f"cus_l{i:04d}",
            "subscription_id": sub(i),
            "name": f"Load {tag} {i}",
        }
        for i in range(SUBS)
    ]
    return write_customers(path, rows[::-1] if reverse else rows)


def batches(charges: list[billing.ChargeLine]) -> list[billing.ChargeBatch]:
    return [billing.ChargeBatch(sub(i), period(1), charges) for i in range(SUBS)]


def run(jobs: list[tuple[Any, tuple[Any, ...], int]]) -> list[tuple[Any, ...]]:
    """Start every (target, args, rounds) in a process of its own behind one barrier;
    each gets (barrier, results, name, rounds) after its args. Their results."""
    barrier = CTX.Barrier(len(jobs))
    results = CTX.Queue()
    procs = [
        CTX.Process(target=target, args=(*args, barrier, results, f"{target.__name__}{i}", rounds))
        for i, (target, args, rounds) in enumerate(jobs)
    ]
    for proc in procs:
        proc.start()
    expected = sum(rounds if target is posting.post_batches else 1 for target, _, rounds in jobs)
    out = [results.get(timeout=TIMEOUT) for _ in range(expected)]
    for proc in procs:
        proc.join(timeout=TIMEOUT)
    return out


def live_lines(ledger: Ledger) -> Counter[tuple[str, datetime, str]]:  # noqa: F811
    with ledger.Session() as session:
        rows = session.execute(
            select(Subscription.external_id, Invoice.period_start, InvoiceLine.idempotency_key)
            .join(Invoice, Invoice.subscription_id == Subscription.id)
            .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
            .where(Invoice.status != "void")
        )
        return Counter((s, p.astimezone(UTC), k) for s, p, k in rows)


# PostgreSQL only: SQLite has one writer at a time (BEGIN IMMEDIATE), no deadlock.
pytestmark = pytest.mark.parametrize(
    "ledger_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def pg(ledger: Ledger, tmp_path: Path) -> Ledger:  # noqa: F811
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
        billing.load_customers_file(
            session, customers_file(tmp_path / "c.jsonl", "0", reverse=False)
        )
    return ledger


def test_concurrent_ledger_writers_meet_no_deadlock(pg: Ledger, tmp_path: Path) -> None:
    with pg.Session() as session:
        charges = standard_charges(session)
    everything = batches(charges)
    with pg.Session.begin() as session:  # existing drafts, which posters lock, not create
        billing.post_charges_bulk(session, everything[::3])
    with pg.Session() as session:
        void = session.scalars(select(Invoice.id).order_by(Invoice.id).limit(ROUNDS)).all()
    # Each load renames every customer, the two loaders in opposite orders.
    files = [
        [
            str(customers_file(tmp_path / f"{k}{n}.jsonl", f"{k}{n}", reverse=(n + k) % 2 == 1))
            for n in range(ROUNDS)
        ]
        for k in (0, 1)
    ]
    lockstep = CTX.Barrier(2)
    out = run(
        [
            (posting.post_batches, (pg.url, everything), ROUNDS),
            (posting.post_batches, (pg.url, everything[1::2]), ROUNDS),
            (posting.post_batches, (pg.url, everything[SUBS // 3 :]), ROUNDS),
            (_workers.load_customers, (pg.url, files[0], lockstep), ROUNDS),
            (_workers.load_customers, (pg.url, files[1], lockstep), ROUNDS),
            (_workers.finalize_and_void, (pg.url, AS_OF, list(void)), ROUNDS),
        ]
    )
    errors = [r for r in out if r[1] != "ok"]
    assert not errors, errors
    # Each writer runs a transaction PostgreSQL fails as a deadlock victim again, and
    # counts it (last in its result, so far): none was failed.
    met: dict[str, int] = {}
    for r in out:
        met[r[0]] = max(met.get(r[0], 0), r[-1])
    assert met == dict.fromkeys(met, 0) and len(met) == 6
    # The next close posts every period again: one live invoice per period (a voided
    # one re-issued), each line on it exactly once.
    with pg.Session.begin() as session:
        billing.post_charges_bulk(session, everything)
    lines = live_lines(pg)
    assert set(lines.values()) == {1}
    assert len(lines) == len(everything) * len(charges)
    with pg.Session() as session:
        voided = session.scalars(select(Invoice.id).where(Invoice.status == "void")).all()
        names = session.scalars(select(Customer.name).where(Customer.external_id == "cus_l0000"))
        assert sorted(voided) == sorted(void)
        assert names.one() in {f"Load {k}{ROUNDS - 1} 0" for k in (0, 1)}


def test_a_poster_chosen_as_a_deadlock_victim_recovers(pg: Ledger) -> None:
    """Another program locks a draft without the advisory lock, then waits on a draft a
    poster locked first while the poster waits on it: a deadlock, which PostgreSQL breaks
    by failing the poster's transaction (its check comes first: the other program's
    deadlock_timeout is longer). The poster gets SQLAlchemy's OperationalError (the
    command line's exit code 4 and a message that says so and to run it again; it used
    to escape as a raw psycopg error from the bulk statements: exit code 5, and no retry
    caught it); nothing of its transaction stays, and running it again posts every line,
    once."""
    with pg.Session() as session:
        charges = standard_charges(session)
    work = [billing.ChargeBatch(sub(i), period(1), charges) for i in range(4)]
    with pg.Session.begin() as session:  # drafts holding their first line only
        billing.post_charges_bulk(
            session, [billing.ChargeBatch(b.subscription, b.period, charges[:1]) for b in work]
        )
    with pg.Session() as session:
        low, *_, high = session.scalars(select(Invoice.id).order_by(Invoice.id)).all()
    failures: list[BaseException] = []
    posted: list[billing.PostResult] = []

    def poster() -> None:
        while True:
            try:
                with pg.Session.begin() as session:
                    # Its deadlock check runs once, this long after it starts waiting:
                    # by then the other program waits too, however loaded the machine.
                    session.execute(text("SET LOCAL deadlock_timeout = '3s'"))
                    posted.append(billing.post_charges_bulk(session, work))
                return
            except OperationalError as exc:
                failures.append(exc)
                if len(failures) > 1:
                    return

    other = pg.engine.connect()
    tx = other.begin()
    other_pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    other.exec_driver_sql("SET LOCAL deadlock_timeout = '60s'")
    other.execute(text("SELECT id FROM invoices WHERE id = :id FOR UPDATE"), {"id": high})
    thread = threading.Thread(target=poster)
    thread.start()
    try:
        # The poster holds the drafts before `high` and waits for it.
        deadline = time.monotonic() + 60
        waiting = 0
        while not waiting and time.monotonic() < deadline:
            with pg.engine.connect() as conn:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE CAST(:pid AS integer) = ANY(pg_blocking_pids(pid))"
                    ),
                    {"pid": other_pid},
                ).scalar_one()
            time.sleep(0.05)
        assert waiting, "the poster never waited for the other program's row"
        # Granted only once the poster's transaction is gone: PostgreSQL failed it.
        other.execute(text("SELECT id FROM invoices WHERE id = :id FOR UPDATE"), {"id": low})
        tx.commit()
    finally:
        other.close()
        thread.join(timeout=TIMEOUT)
    (failure,) = failures
    assert getattr(failure.orig, "sqlstate", None) == "40P01"  # type: ignore[attr-defined]
    assert exit_code_for(failure) == ExitCode.UNAVAILABLE
    assert message_of(failure).startswith(
        "the ledger database rolled this command back: deadlock detected"
    )
    (result,) = posted
    assert (result.created, result.unchanged, result.invoices_created) == (
        len(work) * (len(charges) - 1),
        len(work),
        0,
    )
    lines = live_lines(pg)
    assert set(lines.values()) == {1} and len(lines) == len(work) * len(charges)
