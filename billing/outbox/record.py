"""Outbox writers: each runs inside the transaction of the change it reports, so the
event exists if and only if the change committed (DESIGN.md invariant 8).

One event per fact, keyed so that writing it twice is impossible:
``invoice.finalized:{invoice}`` and ``invoice.voided:{invoice}`` (an invoice is
finalized and voided at most once), ``invoice.adjustments_posted:{invoice}:{n}:{hash}``
(the n-th state of the draft's adjustment lines: a change that leaves them as last
announced writes nothing). Every event gets one pending delivery per sink in ``SINKS``
(and the tax sink's, for an invoice taxed through it: ``invoice_sinks``).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Table, insert, literal, select
from sqlalchemy.orm import Session

from billing import bulk
from billing.models import (
    Customer,
    Invoice,
    InvoiceLine,
    OutboxDelivery,
    OutboxEvent,
    Subscription,
)
from billing.outbox.payloads import InvoiceDoc, LineDoc
from billing.tax import mark_pending, taxed_invoice_ids

#: The sinks every invoice event is delivered to (meterline/sinks): one delivery row each.
SINKS: tuple[str, ...] = ("stripe",)
#: The tax sink (meterline/sinks/tax, docs/tax.md). A session whose invoice sinks include
#: it (``session.info[INVOICE_SINKS]``, set by billing.db.session_factory from the
#: settings) marks the tax of each invoice it finalizes pending (billing.tax) and gives
#: the invoice's finalized and voided events a delivery to it; the other invoice sinks
#: wait until the tax is recorded (billing.outbox.delivery.claim).
TAX_SINK = "avalara"
#: The invoice events the tax sink hears: a draft's adjustment lines are taxed when the
#: draft is finalized.
TAX_KINDS: tuple[str, ...] = ("invoice.finalized", "invoice.voided")
#: The key of a session's ``info`` that names its invoice sinks (default SINKS).
INVOICE_SINKS = "invoice_sinks"
#: The sinks an alert event is delivered to (docs/alerts.md).
ALERT_SINKS: tuple[str, ...] = ("webhook",)
#: Every sink a delivery row can name.
ALL_SINKS: tuple[str, ...] = (*SINKS, TAX_SINK, *ALERT_SINKS)


def invoice_sinks(session: Session) -> tuple[str, ...]:
    """The sinks this session's invoice events are delivered to: SINKS, and the tax sink
    when the session was made with it (billing.db.session_factory)."""
    return tuple(session.info.get(INVOICE_SINKS, SINKS))


EVENTS: Table = OutboxEvent.__table__  # type: ignore[assignment]
DELIVERIES: Table = OutboxDelivery.__table__  # type: ignore[assignment]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


# The columns a document is made of, read as plain rows: loading 100,000 lines as ORM
# objects took longer than the rest of writing their events.
_LINE_COLUMNS = (
    InvoiceLine.id,
    InvoiceLine.invoice_id,
    InvoiceLine.idempotency_key,
    InvoiceLine.kind,
    InvoiceLine.description,
    InvoiceLine.quantity,
    InvoiceLine.unit_amount,
    InvoiceLine.amount_minor,
    InvoiceLine.currency,
    InvoiceLine.meter,
    InvoiceLine.price_id,
    InvoiceLine.price_version,
    InvoiceLine.dimension_group,
    InvoiceLine.service_period_start,
    InvoiceLine.service_period_end,
    InvoiceLine.breakdown,
    InvoiceLine.adjusts_line_id,
    InvoiceLine.adjusts_key,
    InvoiceLine.credit_grant_id,
)
_INVOICE_COLUMNS = (
    Invoice.id,
    Invoice.currency,
    Invoice.status,
    Invoice.period_start,
    Invoice.period_end,
    Invoice.subtotal_minor,
    Invoice.discount_minor,
    Invoice.adjustment_minor,
    Invoice.total_minor,
    Invoice.finalized_at,
    Invoice.voided_at,
    Invoice.reissue_of_id,
    Customer.external_id.label("customer"),
    Customer.name.label("customer_name"),
    Subscription.external_id.label("subscription"),
    Subscription.timezone,
)


def _line(line: Row[Any]) -> LineDoc:
    return LineDoc(
        line_id=line.id,
        key=line.idempotency_key,
        kind=line.kind,
        description=line.description,
        quantity=str(line.quantity),
        unit_amount=None if line.unit_amount is None else str(line.unit_amount),
        amount_minor=line.amount_minor,
        currency=line.currency,
        meter=line.meter,
        price_id=line.price_id,
        price_version=line.price_version,
        dimension_group=line.dimension_group,
        service_period_start=_iso(line.service_period_start) or "",
        service_period_end=_iso(line.service_period_end) or "",
        breakdown=line.breakdown,
        adjusts_line_id=line.adjusts_line_id,
        adjusts_key=line.adjusts_key,
        credit_grant_id=line.credit_grant_id,
    )


def invoice_docs(
    session: Session, invoice_ids: Collection[int], *, kinds: Collection[str] | None = None
) -> dict[int, InvoiceDoc]:
    """The documents of ``invoice_ids`` as stored now, with their lines (only lines of
    ``kinds`` when given; none when ``kinds`` is empty). Set-based: a few statements
    per 2,000 invoices."""
    docs: dict[int, InvoiceDoc] = {}
    ids = sorted(invoice_ids)
    for part in bulk.chunks(ids):
        lines: dict[int, list[LineDoc]] = defaultdict(list)
        if kinds is None or kinds:
            query = select(*_LINE_COLUMNS).where(InvoiceLine.invoice_id.in_(part))
            if kinds is not None:
                query = query.where(InvoiceLine.kind.in_(sorted(kinds)))
            for line in session.execute(query.order_by(InvoiceLine.id)):
                lines[line.invoice_id].append(_line(line))
        rows = session.execute(
            select(*_INVOICE_COLUMNS)
            .join(Customer, Customer.id == Invoice.customer_id)
            .join(Subscription, Subscription.id == Invoice.subscription_id)
            .where(Invoice.id.in_(part))
        ).all()
        for invoice in rows:
            tz = ZoneInfo(invoice.timezone)
            docs[invoice.id] = InvoiceDoc(
                invoice_id=invoice.id,
                customer=invoice.customer,
                customer_name=invoice.customer_name,
                subscription=invoice.subscription,
                currency=invoice.currency,
                status=invoice.status,
                period_start=_iso(invoice.period_start) or "",
                period_end=_iso(invoice.period_end) or "",
                period_start_local=invoice.period_start.astimezone(tz).date().isoformat(),
                period_end_local=invoice.period_end.astimezone(tz).date().isoformat(),
                timezone=invoice.timezone,
                subtotal_minor=invoice.subtotal_minor,
                discount_minor=invoice.discount_minor,
                adjustment_minor=invoice.adjustment_minor,
                total_minor=invoice.total_minor,
                finalized_at=_iso(invoice.finalized_at),
                voided_at=_iso(invoice.voided_at),
                reissue_of=invoice.reissue_of_id,
                lines=tuple(lines.get(invoice.id, ())),
            )
    return docs


def _write(session: Session, kind: str, docs: Sequence[tuple[str, InvoiceDoc]]) -> int:
    """Insert one event per (key, doc) and a pending delivery per sink."""
    if not docs:
        return 0
    now = datetime.now(UTC)
    keys = [key for key, _ in docs]
    session.execute(
        insert(EVENTS),
        [
            {
                "kind": kind,
                "invoice_id": doc.invoice_id,
                "customer": doc.customer,
                "idempotency_key": key,
                "payload": doc.to_json(),
                "created_at": now,
            }
            for key, doc in docs
        ],
    )
    for sink in invoice_sinks(session):
        sink_keys = keys
        if sink == TAX_SINK:
            if kind not in TAX_KINDS:
                continue
            # Only invoices whose tax goes through the tax sink: those finalized with it.
            taxed = taxed_invoice_ids(session, [doc.invoice_id for _, doc in docs])
            sink_keys = [key for key, doc in docs if doc.invoice_id in taxed]
        for part in bulk.chunks(sink_keys):
            session.execute(
                insert(DELIVERIES).from_select(
                    ["event_id", "sink", "status", "attempts"],
                    select(EVENTS.c.id, literal(sink), literal("pending"), literal(0)).where(
                        EVENTS.c.idempotency_key.in_(part)
                    ),
                )
            )
    return len(docs)


def record_finalized(session: Session, invoice_ids: Collection[int]) -> int:
    """Write ``invoice.finalized`` for invoices just finalized in this transaction, with
    all their lines (frozen from now on). Returns the number of events written."""
    if TAX_SINK in invoice_sinks(session):
        mark_pending(session, invoice_ids, engine=TAX_SINK)
    docs = invoice_docs(session, invoice_ids)
    return _write(
        session,
        "invoice.finalized",
        [(f"invoice.finalized:{i}", docs[i]) for i in sorted(docs)],
    )


def record_voided(session: Session, invoice_id: int) -> int:
    """Write ``invoice.voided`` for an invoice just voided in this transaction."""
    doc = invoice_docs(session, [invoice_id], kinds=())[invoice_id]
    return _write(session, "invoice.voided", [(f"invoice.voided:{invoice_id}", doc)])


def record_adjustments(session: Session, invoice_ids: Collection[int]) -> int:
    """Write ``invoice.adjustments_posted`` for drafts whose adjustment lines this
    transaction changed (posted, replaced, moved or removed): the payload holds all of
    them as they now are. Nothing is written when a draft's lines are what its latest
    such event announced; the key is ``invoice.adjustments_posted:{id}:{n}:{hash}`` (the
    n-th announcement, the hash of the lines), so a draft that goes back to an earlier
    state is announced again."""
    written = 0
    docs = invoice_docs(session, invoice_ids, kinds=("adjustment",))
    for invoice_id in sorted(docs):
        doc = docs[invoice_id]
        if doc.status != "draft":
            continue
        digest = hashlib.sha256(
            "|".join(f"{line.line_id}:{line.amount_minor}" for line in doc.lines).encode()
        ).hexdigest()[:32]
        earlier = session.scalars(
            select(EVENTS.c.idempotency_key)
            .where(
                EVENTS.c.invoice_id == invoice_id,
                EVENTS.c.kind == "invoice.adjustments_posted",
            )
            .order_by(EVENTS.c.id)
        ).all()
        if earlier and earlier[-1].endswith(f":{digest}"):
            continue
        key = f"invoice.adjustments_posted:{invoice_id}:{len(earlier) + 1}:{digest}"
        written += _write(session, "invoice.adjustments_posted", [(key, doc)])
    return written


def record_alert(
    session: Session,
    kind: str,
    *,
    customer: str,
    key: str,
    payload: dict[str, Any],
    at: datetime,
) -> int:
    """Write one ``alert.fired`` / ``alert.retracted`` event (no invoice) with a pending
    delivery per sink in ``ALERT_SINKS``; ``at`` is the evaluation's logical time.
    Returns the event's id. The key is unique: writing the same announcement twice
    fails (the caller's alert_states row says what was announced)."""
    if kind not in ("alert.fired", "alert.retracted"):
        raise ValueError(f"not an alert event kind: {kind!r}")
    event_id = session.execute(
        insert(EVENTS)
        .values(
            kind=kind,
            invoice_id=None,
            customer=customer,
            idempotency_key=key,
            payload=payload,
            created_at=at,
        )
        .returning(EVENTS.c.id)
    ).scalar_one()
    for sink in ALERT_SINKS:
        session.execute(
            insert(DELIVERIES).values(event_id=event_id, sink=sink, status="pending", attempts=0)
        )
    return int(event_id)
