"""Invoice lifecycle: draft -> finalized -> void, and re-issuing a void period.

Finalizing waits for the period's end plus a grace period (late events still count),
measured against the caller's ``as_of`` instant, never the clock, and for the period to
have been rated: a draft that so far holds only adjustment lines (corrections of an
earlier period, carried forward) stays open until close posts the period's own charges,
or its period begins after the subscription ended (a carrier of corrections only). It
freezes the
totals; from then on the invoice and its lines never change (ORM hooks in
billing.guards and database triggers refuse it). Voiding keeps the invoice for audit;
posting that period again issues a new draft linked to it (``reissue_of_id``), and the
corrections the void invoice carried or that corrected it are re-balanced so that each
is billed exactly once (``void``; docs/ledger.md, "Voiding").
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing import bulk
from billing.adjustments import restore_after_void
from billing.bulk import refresh_totals
from billing.credits import record_consumption, reverse_consumption
from billing.errors import FinalizeTooEarly, InvoiceImmutable, LedgerError, NotFound
from billing.models import CreditLedgerEntry, Invoice, InvoiceLine, Subscription
from billing.outbox.record import record_finalized, record_voided
from billing.periods import local_midnight

#: Default wait after a period ends before its invoice may be finalized.
DEFAULT_GRACE = timedelta(days=3)


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


class PeriodNotRated(LedgerError):
    """A draft whose period close has not rated yet: finalizing it would bill the period
    with its corrections only, and its own usage never."""


def unrated(session: Session, invoice_ids: Collection[int]) -> set[int]:
    """The drafts among ``invoice_ids`` whose period has not been rated: they hold no line
    of their own period (only adjustments) and the subscription was still active when
    the period began."""
    rated = (
        select(InvoiceLine.id)
        .where(InvoiceLine.invoice_id == Invoice.id, InvoiceLine.kind != "adjustment")
        .exists()
    )
    found: set[int] = set()
    for part in bulk.chunks(list(invoice_ids)):
        rows = session.execute(
            select(Invoice.id, Invoice.period_start, Subscription.end_date, Subscription.timezone)
            .join(Subscription, Subscription.id == Invoice.subscription_id)
            .where(Invoice.id.in_(part), ~rated)
        ).all()
        for invoice_id, period_start, end_date, tz in rows:
            ended = end_date is not None and local_midnight(end_date, tz) <= period_start
            if not ended:
                found.add(invoice_id)
    return found


def _locked(session: Session, invoice_id: int) -> Invoice:
    invoice = session.scalars(
        select(Invoice).where(Invoice.id == invoice_id).with_for_update()
    ).one_or_none()
    if invoice is None:
        raise NotFound(f"no invoice {invoice_id}")
    return invoice


def finalize(
    session: Session, invoice_id: int, *, as_of: datetime, grace: timedelta = DEFAULT_GRACE
) -> Invoice:
    """Finalize a draft invoice whose period ended at least ``grace`` before ``as_of``.

    The period is the draft's stored one, which a customers load keeps equal to the
    subscription's period (cut by its end: billing/customers/drafts.py), so an ended
    subscription's last draft is due at its end plus ``grace``.

    Totals are recomputed from the lines one last time, then frozen. Finalizing an
    already finalized invoice is a no-op (a re-run task); a void one is an error.
    ``finalized_at`` is ``as_of``: the logical time of the run that closed it.
    """
    _aware(as_of, "as_of")
    if grace < timedelta(0):
        raise ValueError("grace must not be negative")
    bulk.lock_ledger_writes(session)
    invoice = _locked(session, invoice_id)
    if invoice.status == "finalized":
        return invoice
    if invoice.status == "void":
        raise InvoiceImmutable(f"invoice {invoice_id} is void and cannot be finalized")
    due = invoice.period_end + grace
    if as_of < due:
        raise FinalizeTooEarly(
            f"invoice {invoice_id}: its period ends {invoice.period_end.isoformat()} and the"
            f" grace period ({grace}) runs until {due.isoformat()}; as_of is {as_of.isoformat()}"
        )
    if unrated(session, [invoice.id]):
        raise PeriodNotRated(
            f"invoice {invoice_id} holds only adjustment lines: its own period "
            f"({invoice.period_start.isoformat()}) has not been rated yet; run `meterline "
            "close` for it, which rates, posts and finalizes it"
        )
    refresh_totals(session, [invoice.id])
    session.refresh(invoice)
    invoice.status = "finalized"
    invoice.finalized_at = as_of
    session.flush()
    consume_credits(session, [invoice.id])
    record_finalized(session, [invoice.id])
    return invoice


def finalize_due(
    session: Session,
    *,
    as_of: datetime,
    grace: timedelta = DEFAULT_GRACE,
    keep_open: Collection[int] = (),
) -> list[int]:
    """Finalize every draft whose period ended at least ``grace`` before ``as_of``.

    Set-based, for a close of many periods at once: the drafts are locked in id order
    (PostgreSQL), their totals recomputed from their lines in bulk, then frozen with
    ``finalized_at = as_of``, exactly as :func:`finalize` does one by one. Drafts in
    ``keep_open`` stay drafts (a close that could not rate their period), and so do
    drafts whose period has not been rated yet (:func:`unrated`).
    """
    _aware(as_of, "as_of")
    if grace < timedelta(0):
        raise ValueError("grace must not be negative")
    bulk.lock_ledger_writes(session)
    ids = [
        invoice_id
        for invoice_id in session.scalars(
            select(Invoice.id)
            .where(Invoice.status == "draft", Invoice.period_end <= as_of - grace)
            .order_by(Invoice.id)
        ).all()
        if invoice_id not in keep_open
    ]
    waiting = unrated(session, ids)
    ids = [invoice_id for invoice_id in ids if invoice_id not in waiting]
    if not ids:
        return []
    for part in bulk.chunks(ids):
        if bulk.dialect(session) == "postgresql":
            session.execute(
                select(Invoice.id)
                .where(Invoice.id.in_(part))
                .order_by(Invoice.id)
                .with_for_update()
            )
    bulk.refresh_totals(session, ids)
    for part in bulk.chunks(ids):
        session.execute(
            update(Invoice)
            .where(Invoice.id.in_(part), Invoice.status == "draft")
            .values(status="finalized", finalized_at=as_of)
            .execution_options(synchronize_session=False)
        )
    consume_credits(session, ids)
    record_finalized(session, ids)
    session.expire_all()
    return ids


def consume_credits(session: Session, invoice_ids: Collection[int]) -> int:
    """Record, in the caller's transaction (the one finalizing the invoices), one credit
    ledger entry per line of ``invoice_ids`` that names a grant (docs/credits.md): a
    ``consume`` per credit line, linked to it (key ``consume|<invoice id>|<line key>``:
    a re-issued period's lines have the same keys); for an adjustment of a credit line,
    a ``consume`` of the units it adds, or a ``reverse`` of the corrected line's
    consumption by the units it gives back. Consumption waits for finalize because a
    draft's lines are replaced when it is re-rated, and entries are never deleted.
    The returns are recorded before the consumptions.
    A return is at most what the corrected consumption still holds (a correction the
    re-issue of a voided invoice carries again was returned by its first carrier).
    Raises BalanceError (nothing is finalized: the caller's transaction fails) when a
    grant holds less than its lines took. The number of lines read."""
    rows: list[Any] = []
    for part in bulk.chunks(sorted(invoice_ids)):
        rows += session.execute(
            select(
                InvoiceLine.id,
                InvoiceLine.invoice_id,
                InvoiceLine.idempotency_key,
                InvoiceLine.kind,
                InvoiceLine.credit_grant_id,
                InvoiceLine.amount_minor,
                InvoiceLine.quantity,
                InvoiceLine.service_period_end,
                InvoiceLine.adjusts_line_id,
            )
            .where(InvoiceLine.invoice_id.in_(part), InvoiceLine.credit_grant_id.is_not(None))
            .order_by(InvoiceLine.id)
        ).all()
    # A credit line's quantity is the units it took from its grant; an adjustment's, the
    # difference of units its correction makes. Returns first: a correction that moves a
    # grant's value from one line to another (late usage of a line drawn earlier) gives
    # back before it takes, and the grant may hold nothing in between.
    rows.sort(key=lambda row: (row.kind == "credit" or row.quantity >= 0, row.id))
    for line_id, invoice_id, key, kind, grant_id, minor, units, end, adjusts in rows:
        entry_key = f"consume|{invoice_id}|{key}"
        if kind == "credit" or units > 0:
            record_consumption(
                session,
                grant_id,
                amount=units,
                value_minor=-minor,
                invoice_line_id=line_id,
                effective_at=end,
                key=entry_key,
            )
        elif units < 0:
            consumed = session.scalars(
                select(CreditLedgerEntry).where(
                    CreditLedgerEntry.invoice_line_id == adjusts,
                    CreditLedgerEntry.kind == "consume",
                )
            ).one()
            # What the consumption still holds: a correction carried again by the re-issue
            # of a voided invoice returns what its first carrier returned already (a void
            # does not consume it again), and a return never takes more than was consumed.
            held = consumed.amount - _returned(session, consumed.id)
            back = min(-units, held)
            if back <= 0:
                continue
            reverse_consumption(
                session,
                consumed.id,
                amount=back,
                effective_at=end,
                key=f"reverse|{invoice_id}|{key}",
                note=f"corrected down by invoice line {line_id}",
                invoice_line_id=line_id,
            )
    return len(rows)


def _returned(session: Session, entry_id: int) -> Decimal:
    """What has been returned of consumption entry ``entry_id`` (its unit)."""
    returned = session.scalars(
        select(CreditLedgerEntry.amount).where(CreditLedgerEntry.reverses_entry_id == entry_id)
    ).all()
    return sum(returned, Decimal(0))


def return_credits(session: Session, invoice_id: int, *, as_of: datetime) -> int:
    """Return (``reverse``, at ``as_of``) what every consumption of the void invoice's
    lines still holds, so the grants can pay the re-issued period again. Idempotent (key
    ``reverse|void|<entry id>``). The number of entries written."""
    entries = session.scalars(
        select(CreditLedgerEntry.id)
        .join(InvoiceLine, InvoiceLine.id == CreditLedgerEntry.invoice_line_id)
        .where(InvoiceLine.invoice_id == invoice_id, CreditLedgerEntry.kind == "consume")
        .order_by(CreditLedgerEntry.id)
    ).all()
    written = 0
    for entry_id in entries:
        returned = session.scalars(
            select(CreditLedgerEntry.amount).where(CreditLedgerEntry.reverses_entry_id == entry_id)
        ).all()
        consumed = session.get(CreditLedgerEntry, entry_id)
        assert consumed is not None
        if sum(returned, Decimal(0)) >= consumed.amount:
            continue
        reverse_consumption(
            session,
            entry_id,
            effective_at=as_of,
            key=f"reverse|void|{entry_id}",
            note=f"invoice {invoice_id} voided",
        )
        written += 1
    return written


class VoidBeforeFinalized(LedgerError):
    """``void`` was given an ``as_of`` before the invoice was finalized: an invoice cannot
    be voided before it existed as issued (the command line's exit code 2)."""


def void(session: Session, invoice_id: int, *, as_of: datetime) -> Invoice:
    """Void an invoice (draft or finalized). Voiding a void invoice is a no-op.

    A void invoice bills nothing (Stripe: voided, kept for the record, counting as zero).
    Its period is billed again in full by the next close, on a new draft linked to it
    (``reissue_of_id``). No correction is lost or billed twice
    (billing.adjustments.restore_after_void): the corrections of earlier periods it
    carried move to that draft; the corrections of its own period are removed from
    drafts, and those already billed on finalized invoices are reversed on that draft.

    ``voided_at`` is ``as_of``, the logical time of the void; an ``as_of`` before the
    invoice's ``finalized_at`` raises VoidBeforeFinalized.
    """
    _aware(as_of, "as_of")
    bulk.lock_ledger_writes(session)
    invoice = _locked(session, invoice_id)
    if invoice.status == "void":
        return invoice
    if invoice.finalized_at is not None and as_of < invoice.finalized_at:
        raise VoidBeforeFinalized(
            f"invoice {invoice_id} was finalized at {invoice.finalized_at.isoformat()}:"
            f" it cannot be void as of {as_of.isoformat()}, before that; give an as-of"
            " at or after its finalization"
        )
    invoice.status = "void"
    invoice.voided_at = as_of
    session.flush()
    return_credits(session, invoice_id, as_of=as_of)
    record_voided(session, invoice_id)
    restore_after_void(session, invoice_id)
    session.refresh(invoice)
    return invoice
