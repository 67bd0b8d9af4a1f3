"""Delivery state: claim events for a sink, record what became of them, list, replay.

Rules (docs/stripe.md, "Delivery"):

- A customer's events are delivered in order: an event is claimable only when every
  earlier event of its customer for that sink is delivered. A parked event therefore
  holds its customer's later events back until a person replays it (a void must never
  reach Stripe before the invoice it voids). Different customers go in parallel.
- An invoice whose tax is pending (billing.tax: finalized with the tax sink enabled, its
  tax not yet recorded) is not claimed for the invoice sinks after tax (``SINKS``).
- Claiming is safe between processes: on PostgreSQL the claim locks the rows it takes
  (``FOR UPDATE SKIP LOCKED``: a concurrent claimer skips them, and the per-customer
  rule stops it taking that customer's next event), then leases them (``lease_owner``,
  ``lease_until``) and commits; on SQLite the claim runs under the database's single
  write lock (``BEGIN IMMEDIATE``, billing/db.py). A deliverer that dies leaves leases
  that expire; the event is then delivered again, which the sinks make harmless (they
  look before they create).
- A failed attempt backs off (``next_attempt_at``); after ``max_attempts`` failures, or
  at once for an error that retrying cannot fix, the event is parked with its last
  error, shown by ``meterline outbox list --failed``.

All times here are wall-clock instants passed in by the caller (when we talked to
another system), never billing times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, literal, select, update
from sqlalchemy.orm import Session, aliased

from billing import bulk
from billing.models import InvoiceTax, OutboxDelivery, OutboxEvent
from billing.outbox.payloads import EventDoc
from billing.outbox.record import SINKS
from billing.types import UTCDateTime

#: Longest error text kept per delivery.
ERROR_MAX = 2000


@dataclass(frozen=True)
class Claim:
    """An event leased to one deliverer for one sink; ``attempts`` failed before."""

    event: EventDoc
    sink: str
    attempts: int
    #: No event of its invoice was attempted for this sink before this claim: the sink
    #: has made nothing for that invoice yet (so it need not look before it creates).
    first_of_invoice: bool = False


@dataclass(frozen=True)
class DeliveryRow:
    """One event's delivery to one sink, for `meterline outbox list`."""

    event_id: int
    kind: str
    customer: str
    #: None for an event about no invoice (alert.*).
    invoice_id: int | None
    sink: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    external_id: str | None
    created_at: datetime
    #: An earlier event of the same customer that is not delivered holds this one back.
    waiting_for: int | None
    #: A sink after tax (``SINKS``) waits for the invoice's tax, pending (billing.tax).
    waiting_for_tax: bool = False


def _blocked_by_earlier(sink: str) -> Any:
    """SQL: an earlier event of this event's customer is not delivered to ``sink``."""
    d2, e2 = aliased(OutboxDelivery), aliased(OutboxEvent)
    return exists(
        select(d2.event_id)
        .join(e2, e2.id == d2.event_id)
        .where(
            d2.sink == sink,
            d2.status != "delivered",
            e2.customer == OutboxEvent.customer,
            d2.event_id < OutboxDelivery.event_id,
        )
    )


def _tax_pending() -> Any:
    """SQL: the event's invoice has its tax pending (billing.tax): the invoice sinks
    after tax wait for it."""
    return exists(
        select(InvoiceTax.invoice_id).where(
            InvoiceTax.invoice_id == OutboxEvent.invoice_id, InvoiceTax.status == "pending"
        )
    )


#: The first attempt of a delivery attempted before first attempts were recorded
#: (migration 0015 marks those rows so; replay keeps the mark): when is not known.
UNKNOWN_ATTEMPT = datetime(1970, 1, 1, tzinfo=UTC)


def attempted() -> Any:
    """A delivery that was ever attempted: claimed at least once (its first attempt, or
    from before first attempts were recorded: a lease, a failure, a delivery)."""
    return (
        OutboxDelivery.first_attempted_at.is_not(None)
        | (OutboxDelivery.status != "pending")
        | (OutboxDelivery.attempts > 0)
        | OutboxDelivery.lease_owner.is_not(None)
        | OutboxDelivery.delivered_at.is_not(None)
        | OutboxDelivery.external_id.is_not(None)
    )


def _attempted_invoices(session: Session, sink: str, event_ids: list[int]) -> set[int]:
    """The invoices of these events of which some event was attempted for ``sink``."""
    claimed = aliased(OutboxEvent)
    found: set[int] = set()
    for part in bulk.chunks(event_ids):
        found.update(
            session.scalars(
                select(OutboxEvent.invoice_id)
                .join(OutboxDelivery, OutboxDelivery.event_id == OutboxEvent.id)
                .where(
                    OutboxDelivery.sink == sink,
                    OutboxEvent.invoice_id.in_(
                        select(claimed.invoice_id).where(claimed.id.in_(part))
                    ),
                    attempted(),
                )
                .distinct()
            )
        )
    return found


def claim(
    session: Session,
    *,
    sink: str,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
) -> list[Claim]:
    """Lease up to ``limit`` deliverable events for ``sink`` (at most one per customer:
    the earliest undelivered), oldest first. Runs in the caller's transaction, which
    should commit at once (the lease is what keeps others off, not the lock)."""
    query = (
        select(OutboxDelivery.event_id)
        .join(OutboxEvent, OutboxEvent.id == OutboxDelivery.event_id)
        .where(
            OutboxDelivery.sink == sink,
            OutboxDelivery.status == "pending",
            (OutboxDelivery.next_attempt_at.is_(None)) | (OutboxDelivery.next_attempt_at <= now),
            (OutboxDelivery.lease_until.is_(None)) | (OutboxDelivery.lease_until <= now),
            ~_blocked_by_earlier(sink),
        )
        .order_by(OutboxDelivery.event_id)
        .limit(limit)
    )
    if sink in SINKS:
        # An invoice taxed through the tax sink reaches the sinks after tax (Stripe) with
        # its tax recorded; until then it waits, and its customer's later events with it.
        query = query.where(~_tax_pending())
    if bulk.dialect(session) == "postgresql":
        query = query.with_for_update(skip_locked=True, of=OutboxDelivery)
    ids = list(session.scalars(query))
    if not ids:
        return []
    tried = _attempted_invoices(session, sink, ids)  # before this claim counts as one
    for part in bulk.chunks(ids):
        session.execute(
            update(OutboxDelivery)
            .where(OutboxDelivery.sink == sink, OutboxDelivery.event_id.in_(part))
            .values(
                lease_owner=owner,
                lease_until=now + lease,
                first_attempted_at=func.coalesce(
                    OutboxDelivery.first_attempted_at, literal(now, UTCDateTime())
                ),
            )
            .execution_options(synchronize_session=False)
        )
    claims: list[Claim] = []
    for part in bulk.chunks(ids):
        rows = session.execute(
            select(OutboxEvent, OutboxDelivery.attempts)
            .join(OutboxDelivery, OutboxDelivery.event_id == OutboxEvent.id)
            .where(OutboxDelivery.sink == sink, OutboxEvent.id.in_(part))
            .order_by(OutboxEvent.id)
        ).all()
        claims.extend(
            Claim(
                event=event_doc(event),
                sink=sink,
                attempts=n,
                first_of_invoice=event.invoice_id is not None and event.invoice_id not in tried,
            )
            for event, n in rows
        )
    return claims


def event_doc(event: OutboxEvent) -> EventDoc:
    return EventDoc(
        event_id=event.id,
        kind=event.kind,
        customer=event.customer,
        idempotency_key=event.idempotency_key,
        created_at=event.created_at,
        data=event.payload,
    )


def mark_delivered(
    session: Session, *, event_id: int, sink: str, now: datetime, external_id: str | None
) -> None:
    """Record a delivery the sink confirmed (whoever holds the lease: it happened)."""
    session.execute(
        update(OutboxDelivery)
        .where(OutboxDelivery.event_id == event_id, OutboxDelivery.sink == sink)
        .values(
            status="delivered",
            delivered_at=now,
            external_id=external_id,
            last_error=None,
            next_attempt_at=None,
            lease_owner=None,
            lease_until=None,
        )
    )


def backoff(attempts: int) -> timedelta:
    """Wait before the next attempt after ``attempts`` failures: 30 s doubling, capped at
    one hour (the next run of the deliverer picks the event up after it)."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def mark_failed(
    session: Session,
    *,
    event_id: int,
    sink: str,
    now: datetime,
    error: str,
    max_attempts: int,
    owner: str,
    permanent: bool = False,
) -> str:
    """Count a failed attempt; park the event after ``max_attempts`` failures (or at
    once when ``permanent``: retrying cannot help). Returns the new status.

    Only while ``owner`` still holds the claim: a deliverer whose lease ran out and was
    taken over (the event maybe delivered since) records nothing, so a late failure
    never undoes another's delivery ("superseded" is returned)."""
    current = session.execute(
        select(OutboxDelivery.attempts, OutboxDelivery.status, OutboxDelivery.lease_owner).where(
            OutboxDelivery.event_id == event_id, OutboxDelivery.sink == sink
        )
    ).one()
    if current.status != "pending" or current.lease_owner != owner:
        return "superseded"
    attempts = (current.attempts or 0) + 1
    status = "parked" if permanent or attempts >= max_attempts else "pending"
    session.execute(
        update(OutboxDelivery)
        .where(OutboxDelivery.event_id == event_id, OutboxDelivery.sink == sink)
        .values(
            status=status,
            attempts=attempts,
            last_error=error[:ERROR_MAX],
            next_attempt_at=None if status == "parked" else now + backoff(attempts),
            lease_owner=None,
            lease_until=None,
        )
    )
    return status


def list_deliveries(
    session: Session,
    *,
    sink: str | None = None,
    failed_only: bool = False,
    from_id: int | None = None,
    limit: int | None = None,
) -> list[DeliveryRow]:
    """Deliveries in event order: all, or with ``failed_only`` those parked or with a
    failed attempt not yet delivered."""
    query = select(OutboxEvent, OutboxDelivery).join(
        OutboxDelivery, OutboxDelivery.event_id == OutboxEvent.id
    )
    if sink is not None:
        query = query.where(OutboxDelivery.sink == sink)
    if failed_only:
        query = query.where(
            OutboxDelivery.status != "delivered",
            (OutboxDelivery.status == "parked") | (OutboxDelivery.attempts > 0),
        )
    if from_id is not None:
        query = query.where(OutboxEvent.id >= from_id)
    query = query.order_by(OutboxEvent.id, OutboxDelivery.sink)
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    first_open: dict[tuple[str, str], int] = {}
    heads = session.execute(
        select(OutboxEvent.customer, OutboxDelivery.sink, func.min(OutboxEvent.id))
        .join(OutboxDelivery, OutboxDelivery.event_id == OutboxEvent.id)
        .where(OutboxDelivery.status != "delivered")
        .group_by(OutboxEvent.customer, OutboxDelivery.sink)
    ).all()
    for customer, row_sink, first in heads:
        first_open[(customer, row_sink)] = first
    # The invoices whose tax is pending, among those an undelivered after-tax row names.
    held = sorted(
        {
            event.invoice_id
            for event, delivery in rows
            if delivery.sink in SINKS and delivery.status != "delivered" and event.invoice_id
        }
    )
    tax_pending: set[int] = set()
    for part in bulk.chunks(held):
        tax_pending.update(
            session.scalars(
                select(InvoiceTax.invoice_id).where(
                    InvoiceTax.invoice_id.in_(part), InvoiceTax.status == "pending"
                )
            )
        )
    result = []
    for event, delivery in rows:
        head = first_open.get((event.customer, delivery.sink))
        waiting = (
            head
            if delivery.status != "delivered" and head is not None and head < event.id
            else None
        )
        result.append(
            DeliveryRow(
                event_id=event.id,
                kind=event.kind,
                customer=event.customer,
                invoice_id=event.invoice_id,
                sink=delivery.sink,
                status=delivery.status,
                attempts=delivery.attempts,
                last_error=delivery.last_error,
                next_attempt_at=delivery.next_attempt_at,
                delivered_at=delivery.delivered_at,
                external_id=delivery.external_id,
                created_at=event.created_at,
                waiting_for=waiting,
                waiting_for_tax=(
                    delivery.sink in SINKS
                    and delivery.status != "delivered"
                    and event.invoice_id in tax_pending
                ),
            )
        )
    return result


def replay(session: Session, *, from_id: int, sink: str | None = None) -> int:
    """Make every event from ``from_id`` on pending again for ``sink`` (all sinks when
    None): delivered and parked alike, attempts reset. Delivering again is harmless (the
    sinks look before they create and bring the other system to the event's state).
    Returns the number of deliveries reset."""
    conditions = [OutboxDelivery.event_id >= from_id]
    if sink is not None:
        conditions.append(OutboxDelivery.sink == sink)
    result = session.execute(
        update(OutboxDelivery)
        .where(and_(*conditions))
        .values(
            status="pending",
            attempts=0,
            last_error=None,
            next_attempt_at=None,
            lease_owner=None,
            lease_until=None,
            delivered_at=None,
            # What was attempted stays so (the sinks look before they create again, and
            # the reconcile looks where the first attempt could have left something).
            first_attempted_at=case(
                (attempted(), func.coalesce(OutboxDelivery.first_attempted_at, _unknown())),
                else_=None,
            ),
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _unknown() -> Any:
    return literal(UNKNOWN_ATTEMPT, UTCDateTime())


def release(session: Session, *, event_ids: list[int], sink: str, owner: str) -> None:
    """Give back claims without counting an attempt (the run stopped before trying them,
    or for a reason that is not theirs: the sink's credentials were refused)."""
    for part in bulk.chunks(event_ids):
        session.execute(
            update(OutboxDelivery)
            .where(
                OutboxDelivery.sink == sink,
                OutboxDelivery.event_id.in_(part),
                OutboxDelivery.lease_owner == owner,
            )
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )


def undelivered(session: Session, *, sink: str) -> dict[str, int]:
    """How many deliveries to ``sink`` are pending and parked, and (``tax``) of the
    pending ones to a sink after tax how many wait for their invoice's tax."""
    rows = session.execute(
        select(OutboxDelivery.status, func.count())
        .where(OutboxDelivery.sink == sink, OutboxDelivery.status != "delivered")
        .group_by(OutboxDelivery.status)
    ).all()
    counts = {"pending": 0, "parked": 0, "tax": 0}
    counts.update({status: int(n) for status, n in rows})
    if sink in SINKS and counts["pending"]:
        counts["tax"] = int(
            session.scalar(
                select(func.count())
                .select_from(OutboxDelivery)
                .join(OutboxEvent, OutboxEvent.id == OutboxDelivery.event_id)
                .where(
                    OutboxDelivery.sink == sink,
                    OutboxDelivery.status == "pending",
                    _tax_pending(),
                )
            )
            or 0
        )
    return counts
