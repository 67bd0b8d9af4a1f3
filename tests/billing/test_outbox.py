"""The transactional outbox (billing/outbox): events written in the transaction of the
change, one per fact, and the delivery rules (order per customer, leases, parking,
replay), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

import billing
from billing.models import OutboxDelivery, OutboxEvent
from billing.outbox import claim, list_deliveries, mark_delivered, mark_failed, replay
from tests.billing.conftest import CATALOG, Ledger
from tests.billing.factories import CUSTOMERS, period_of, standard_charges, write_customers

MARCH = period_of("sub_00001", 2026, 3)
APRIL = period_of("sub_00001", 2026, 4)
MARCH_2 = MARCH  # sub_00009 bills like sub_00001
GRACE = timedelta(days=3)
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
LEASE = timedelta(minutes=15)


@pytest.fixture
def loaded(ledger: Ledger, tmp_path: Path) -> Ledger:
    """The demo catalog; cus_00001 (sub_00001) and cus_00009 (sub_00009), both on the
    standard plan in USD."""
    second = {**CUSTOMERS[0], "customer_id": "cus_00009", "subscription_id": "sub_00009"}
    path = write_customers(tmp_path / "customers.jsonl", [CUSTOMERS[0], second])
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
        billing.load_customers_file(session, path)
    return ledger


def events(ledger: Ledger) -> list[OutboxEvent]:
    with ledger.Session() as session:
        return list(session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


def post(ledger: Ledger, sub: str, period: billing.Period, resolutions: int = 100) -> int:
    with ledger.Session.begin() as session:
        result = billing.post_charges(
            session, sub, period, standard_charges(session, resolutions=resolutions)
        )
    (invoice_id,) = result.invoice_ids.values()
    return invoice_id


def finalize(ledger: Ledger, invoice_id: int, period: billing.Period) -> None:
    with ledger.Session.begin() as session:
        billing.finalize(session, invoice_id, as_of=period.end + GRACE, grace=GRACE)


def test_finalize_writes_one_event_with_every_line_in_minor_units(loaded: Ledger) -> None:
    invoice_id = post(loaded, "sub_00001", MARCH)
    assert events(loaded) == []  # a draft tells nobody
    finalize(loaded, invoice_id, MARCH)
    finalize(loaded, invoice_id, MARCH)  # a re-run: no second event
    (event,) = events(loaded)
    assert (event.kind, event.invoice_id, event.customer) == (
        "invoice.finalized",
        invoice_id,
        "cus_00001",
    )
    assert event.idempotency_key == f"invoice.finalized:{invoice_id}"
    doc = event.payload
    assert (doc["currency"], doc["total_minor"], doc["status"]) == ("USD", 39600, "finalized")
    assert sum(line["amount_minor"] for line in doc["lines"]) == 39600
    assert all(isinstance(line["amount_minor"], int) for line in doc["lines"])
    assert {line["quantity"] for line in doc["lines"]} >= {"100"}
    assert (doc["period_start_local"], doc["period_end_local"]) == ("2026-03-01", "2026-04-01")
    with loaded.Session() as session:
        (delivery,) = session.scalars(select(OutboxDelivery)).all()
        assert (delivery.sink, delivery.status, delivery.attempts) == ("stripe", "pending", 0)


def test_an_event_is_written_only_if_its_change_commits(loaded: Ledger) -> None:
    invoice_id = post(loaded, "sub_00001", MARCH)
    with loaded.Session() as session, session.begin():
        billing.finalize(session, invoice_id, as_of=MARCH.end + GRACE, grace=GRACE)
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 1
        session.rollback()
    assert events(loaded) == []
    with loaded.Session() as session:
        assert session.get(billing.Invoice, invoice_id).status == "draft"  # type: ignore[union-attr]


def test_finalize_due_writes_an_event_per_invoice(loaded: Ledger) -> None:
    first = post(loaded, "sub_00001", MARCH)
    second = post(loaded, "sub_00009", MARCH_2)
    with loaded.Session.begin() as session:
        done = billing.finalize_due(session, as_of=max(MARCH.end, MARCH_2.end) + GRACE, grace=GRACE)
    assert sorted(done) == sorted([first, second])
    assert sorted(e.invoice_id for e in events(loaded)) == sorted([first, second])
    assert {e.kind for e in events(loaded)} == {"invoice.finalized"}


def test_void_and_adjustments_write_their_events(loaded: Ledger) -> None:
    march = post(loaded, "sub_00001", MARCH)
    finalize(loaded, march, MARCH)
    with loaded.Session() as session:
        corrected = standard_charges(session, resolutions=130)
    with loaded.Session.begin() as session:
        result = billing.post_adjustments(session, "sub_00001", MARCH, corrected)
    with loaded.Session.begin() as session:  # the same correction again: nothing new
        billing.post_adjustments(session, "sub_00001", MARCH, corrected)
    kinds = [(e.kind, e.invoice_id) for e in events(loaded)]
    assert kinds == [
        ("invoice.finalized", march),
        ("invoice.adjustments_posted", result.invoice_id),
    ]
    (line,) = events(loaded)[1].payload["lines"]
    assert (line["kind"], line["amount_minor"], Decimal(line["quantity"])) == (
        "adjustment",
        2970,
        Decimal(30),
    )
    with loaded.Session.begin() as session:
        billing.void(session, march, as_of=MARCH.end + GRACE + timedelta(days=1))
    voided, withdrawn = events(loaded)[-2:]
    assert (voided.kind, voided.invoice_id, voided.payload["lines"]) == (
        "invoice.voided",
        march,
        [],
    )
    # Voiding March withdrew its corrections from April's draft: announced too.
    assert (withdrawn.kind, withdrawn.invoice_id, withdrawn.payload["lines"]) == (
        "invoice.adjustments_posted",
        result.invoice_id,
        [],
    )


def _three_events(loaded: Ledger) -> tuple[int, int, int]:
    """cus_00001: March finalized then voided; cus_00002: March finalized."""
    march = post(loaded, "sub_00001", MARCH)
    finalize(loaded, march, MARCH)
    other = post(loaded, "sub_00009", MARCH_2)
    finalize(loaded, other, MARCH_2)
    with loaded.Session.begin() as session:
        billing.void(session, march, as_of=MARCH.end + GRACE + timedelta(days=1))
    ids = [e.id for e in events(loaded)]
    return ids[0], ids[1], ids[2]


def take(loaded: Ledger, owner: str = "a", now: datetime = NOW, limit: int = 100) -> list[int]:
    with loaded.Session.begin() as session:
        return [
            c.event.event_id
            for c in claim(session, sink="stripe", owner=owner, now=now, lease=LEASE, limit=limit)
        ]


def test_a_customers_events_are_claimed_in_order_one_at_a_time(loaded: Ledger) -> None:
    finalized_1, finalized_2, voided_1 = _three_events(loaded)
    assert take(loaded) == [finalized_1, finalized_2]  # one per customer, oldest first
    assert take(loaded, "b") == []  # leased
    with loaded.Session.begin() as session:
        mark_delivered(session, event_id=finalized_1, sink="stripe", now=NOW, external_id="in_1")
    assert take(loaded, "b") == [voided_1]  # its customer's next event, now free
    assert take(loaded, "c", now=NOW + LEASE) == [finalized_2, voided_1]  # leases expired


def test_a_parked_event_holds_its_customers_later_events_back(loaded: Ledger) -> None:
    finalized_1, finalized_2, voided_1 = _three_events(loaded)
    take(loaded)
    with loaded.Session.begin() as session:
        assert (
            mark_failed(
                session,
                event_id=finalized_1,
                sink="stripe",
                now=NOW,
                error="boom",
                max_attempts=2,
                owner="a",
            )
            == "pending"
        )
    assert take(loaded, now=NOW + timedelta(seconds=29)) == []  # backing off (30 s)
    assert take(loaded, now=NOW + timedelta(seconds=31)) == [finalized_1]
    with loaded.Session.begin() as session:
        assert (
            mark_failed(
                session,
                event_id=finalized_1,
                sink="stripe",
                now=NOW,
                error="boom",
                max_attempts=2,
                owner="a",
            )
            == "parked"
        )
    later = NOW + timedelta(days=1)
    assert take(loaded, now=later) == [finalized_2]  # parked: the void waits behind it
    with loaded.Session() as session:
        failed = list_deliveries(session, failed_only=True)
        rows = {r.event_id: r for r in list_deliveries(session)}
    assert [r.event_id for r in failed] == [finalized_1]
    assert (failed[0].status, failed[0].attempts, failed[0].last_error) == ("parked", 2, "boom")
    assert rows[voided_1].waiting_for == finalized_1
    with loaded.Session.begin() as session:
        assert replay(session, from_id=finalized_1) == 3
    assert take(loaded, "z", now=later) == [finalized_1, finalized_2]


def test_replay_from_an_offset_resets_delivered_events(loaded: Ledger) -> None:
    finalized_1, finalized_2, voided_1 = _three_events(loaded)
    for event_id in (finalized_1, finalized_2, voided_1):
        with loaded.Session.begin() as session:
            mark_delivered(session, event_id=event_id, sink="stripe", now=NOW, external_id="x")
    assert take(loaded) == []
    with loaded.Session.begin() as session:
        assert replay(session, from_id=finalized_2) == 2
    assert take(loaded) == [finalized_2, voided_1]


def test_concurrent_claimers_never_take_the_same_event(loaded: Ledger) -> None:
    """Two deliverers claiming at once (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the
    single write lock) get disjoint events."""
    _three_events(loaded)
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(2)

    def run(owner: str) -> None:
        barrier.wait()
        got[owner] = take(loaded, owner)

    threads = [threading.Thread(target=run, args=(o,)) for o in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(got["a"]) & set(got["b"])
    assert len(got["a"]) + len(got["b"]) == 2


def test_replay_past_the_last_event_resets_nothing(loaded: Ledger) -> None:
    _three_events(loaded)
    with loaded.Session.begin() as session:
        assert replay(session, from_id=10**9) == 0


def test_a_late_failure_never_undoes_anothers_delivery(loaded: Ledger) -> None:
    """A deliverer whose lease ran out records nothing: the event was taken over and
    delivered, and its customer's next event too (the breaker's case)."""
    finalized_1, _, voided_1 = _three_events(loaded)
    assert finalized_1 in take(loaded, "A")
    later = NOW + LEASE + timedelta(minutes=1)
    assert finalized_1 in take(loaded, "B", now=later)
    for event_id in (finalized_1,):
        with loaded.Session.begin() as session:
            mark_delivered(session, event_id=event_id, sink="stripe", now=later, external_id="x")
    assert voided_1 in take(loaded, "B", now=later)
    with loaded.Session.begin() as session:
        mark_delivered(session, event_id=voided_1, sink="stripe", now=later, external_id="x")
    with loaded.Session.begin() as session:
        status = mark_failed(
            session,
            event_id=finalized_1,
            sink="stripe",
            now=later,
            error="timeout",
            max_attempts=5,
            owner="A",
        )
    assert status == "superseded"
    with loaded.Session() as session:
        rows = {r.event_id: r.status for r in list_deliveries(session)}
    assert rows[finalized_1] == rows[voided_1] == "delivered"
