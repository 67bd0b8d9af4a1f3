"""Concurrent posting from real processes: exactly one set of lines per period, on
SQLite (database write lock from BEGIN IMMEDIATE) and PostgreSQL (row locks and the
unique live-invoice index)."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from typing import Any

from sqlalchemy import func, select

import billing
from billing.models import Invoice, InvoiceLine
from tests.billing import _workers
from tests.billing.conftest import Ledger
from tests.billing.factories import period_of, standard_charges, usage, versions

CTX = mp.get_context("spawn")
TIMEOUT = 120


def run_workers(
    url: str, jobs: dict[str, list[billing.ChargeBatch]], rounds: int = 1
) -> list[tuple[Any, ...]]:
    barrier = CTX.Barrier(len(jobs))
    results = CTX.Queue()
    procs = [
        CTX.Process(
            target=_workers.post_batches, args=(url, batches, barrier, results, name, rounds)
        )
        for name, batches in jobs.items()
    ]
    for proc in procs:
        proc.start()
    out = [results.get(timeout=TIMEOUT) for _ in range(len(jobs) * rounds)]
    for proc in procs:
        proc.join(timeout=TIMEOUT)
        assert proc.exitcode == 0
    errors = [r for r in out if r[1] == "error"]
    assert not errors, errors
    return out


def lines_by_invoice(ledger: Ledger) -> dict[int, list[tuple[str, str]]]:
    with ledger.Session() as session:
        rows = session.execute(
            select(
                InvoiceLine.invoice_id, InvoiceLine.idempotency_key, InvoiceLine.content_hash
            ).order_by(InvoiceLine.invoice_id, InvoiceLine.idempotency_key)
        ).all()
    out: dict[int, list[tuple[str, str]]] = {}
    for invoice_id, key, chash in rows:
        out.setdefault(invoice_id, []).append((key, chash))
    return out


def test_processes_posting_the_same_period_produce_one_set_of_lines(loaded: Ledger) -> None:
    march = period_of("sub_00001", 2026, 3)
    with loaded.Session() as session:
        charges = standard_charges(session)
    batch = [billing.ChargeBatch("sub_00001", march, charges)]
    results = run_workers(loaded.url, {f"p{i}": batch for i in range(4)}, rounds=3)
    assert {r[1] for r in results} == {"ok"}
    assert sum(r[2] for r in results) == len(charges)  # lines created, over every process
    assert sum(r[4] for r in results) == 1  # invoices created
    assert sum(r[3] for r in results) == len(charges) * (len(results) - 1)
    (lines,) = lines_by_invoice(loaded).values()
    assert len(lines) == len(charges)
    with loaded.Session() as session:
        (inv,) = session.scalars(select(Invoice)).all()
        assert inv.total_minor == sum(c.amount_minor for c in charges)


def test_concurrent_different_content_one_wins_the_other_conflicts(loaded: Ledger) -> None:
    march = period_of("sub_00001", 2026, 3)
    with loaded.Session() as session:
        a = standard_charges(session, resolutions=100)
        b = standard_charges(session, resolutions=200)
    results = run_workers(
        loaded.url,
        {
            "a": [billing.ChargeBatch("sub_00001", march, a)],
            "b": [billing.ChargeBatch("sub_00001", march, b)],
        },
    )
    assert sorted(r[1] for r in results) == ["conflict", "ok"]
    winner = a if next(r for r in results if r[1] == "ok")[0] == "a" else b
    (lines,) = lines_by_invoice(loaded).values()
    assert sorted(h for _, h in lines) == sorted(c.content_hash() for c in winner)


def test_overlapping_bulk_posts_from_several_processes(loaded: Ledger) -> None:
    with loaded.Session() as session:
        std = standard_charges(session)
        vol = versions(session, "volume", "EUR")
    globex = [
        usage("seat_advanced", vol["seat_advanced"], 2, "79", "EUR", group="g", meter="seats")
    ]
    batches = [
        billing.ChargeBatch("sub_00001", period_of("sub_00001", 2026, month), std)
        for month in range(1, 7)
    ] + [
        billing.ChargeBatch("sub_00002", period_of("sub_00002", 2026, month), globex)
        for month in range(2, 7)
    ]
    jobs = {
        "all": batches,
        "reversed": list(reversed(batches)),
        "evens": batches[::2],
        "odds": batches[1::2],
    }
    results = run_workers(loaded.url, jobs)
    assert {r[1] for r in results} == {"ok"}
    expected_lines = sum(len(b.charges) for b in batches)
    assert sum(r[2] for r in results) == expected_lines
    assert sum(r[4] for r in results) == len(batches)
    by_invoice = lines_by_invoice(loaded)
    assert len(by_invoice) == len(batches)
    assert sum(len(v) for v in by_invoice.values()) == expected_lines
    with loaded.Session() as session:
        assert session.scalar(select(func.count()).select_from(Invoice)) == len(batches)


def test_concurrent_additions_to_an_existing_draft(loaded: Ledger) -> None:
    """The draft exists (with one line): posters must serialise on its row lock to add
    the missing lines once, not just rely on invoice creation."""
    march = period_of("sub_00001", 2026, 3)
    with loaded.Session() as session:
        charges = standard_charges(session)
    with loaded.Session.begin() as session:
        billing.post_charges(session, "sub_00001", march, charges[:1])
    batch = [billing.ChargeBatch("sub_00001", march, charges)]
    results = run_workers(loaded.url, {f"p{i}": batch for i in range(4)})
    assert {r[1] for r in results} == {"ok"}
    assert sum(r[2] for r in results) == len(charges) - 1
    (lines,) = lines_by_invoice(loaded).values()
    assert len(lines) == len(charges)
    with loaded.Session() as session:
        (inv,) = session.scalars(select(Invoice)).all()
        assert inv.total_minor == sum(c.amount_minor for c in charges)


def test_ledger_writers_queue_behind_each_other(loaded: Ledger) -> None:
    """Two writers of unrelated periods: the second waits until the first's transaction
    ends (PostgreSQL: the ledger's advisory write lock; SQLite: the database write lock),
    so overlapping writers can never wait on each other in a cycle."""
    with loaded.Session() as session:
        std = standard_charges(session)
        vol = versions(session, "volume", "EUR")
    globex = [
        usage("seat_advanced", vol["seat_advanced"], 2, "79", "EUR", group="g", meter="seats")
    ]
    first = loaded.Session()
    first.begin()
    billing.post_charges(first, "sub_00001", period_of("sub_00001", 2026, 3), std)
    done = threading.Event()
    failed: list[BaseException] = []

    def second() -> None:
        try:
            with loaded.Session.begin() as session:
                billing.post_charges(session, "sub_00002", period_of("sub_00002", 2026, 3), globex)
            done.set()
        except BaseException as exc:  # reported below
            failed.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        if loaded.backend == "postgresql":
            # The second writer's backend is seen waiting on an advisory lock.
            deadline = time.monotonic() + 30
            waiting = 0
            while not waiting and time.monotonic() < deadline:
                with loaded.engine.connect() as conn:
                    waiting = conn.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
                    ).scalar_one()
                time.sleep(0.1)
            assert waiting == 1
        assert not done.wait(1.0), "the second writer did not wait for the first"
    finally:
        first.commit()
        first.close()
        thread.join(timeout=60)
    assert not failed, failed
    assert done.is_set()
    assert len(lines_by_invoice(loaded)) == 2
