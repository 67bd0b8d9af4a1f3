"""Corrections of finalized periods: adjustment lines on the next open invoice.

A finalized invoice is never edited (invariant 5). When usage of a finalized period
changes, the corrected charge set is compared, key by key, with what was billed for
that period so far: the finalized line plus the adjustments already carried by other
live invoices. The difference (minor units, precise amount, quantity) becomes one
adjustment line per key on the earliest later draft of the subscription (created for
the first later period that is not finalized, if needed), pointing at the line it
corrects. The same correction posted again finds nothing left to adjust: a no-op.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import bulk
from billing.charges import ChargeLine, adjustment_key, canonical_json, sha256_hex
from billing.errors import LedgerError, PostingConflict
from billing.models import InvoiceLine, Subscription
from billing.money import canonical
from billing.outbox.record import record_adjustments
from billing.periods import Period, iter_periods, period_containing
from billing.posting import (
    ChargeBatch,
    PriceIndex,
    SubRow,
    ensure_invoices,
    prepare,
    subscription_terms,
    subscriptions,
)


@dataclass(slots=True)
class AdjustmentResult:
    """What a correction did: the invoice carrying it (None when there was nothing to
    correct and no carrier existed) and its adjustment lines by key."""

    invoice_id: int | None
    target_period: Period
    created: int = 0
    unchanged: int = 0
    replaced: int = 0
    removed: int = 0
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.replaced or self.removed)


class _Billed(NamedTuple):
    quantity: Decimal
    amount_minor: int
    amount_precise: Decimal

    def __add__(self, other: Any) -> _Billed:
        return _Billed(
            self.quantity + other.quantity,
            self.amount_minor + other.amount_minor,
            self.amount_precise + other.amount_precise,
        )

    def __sub__(self, other: _Billed) -> _Billed:
        return _Billed(
            self.quantity - other.quantity,
            self.amount_minor - other.amount_minor,
            self.amount_precise - other.amount_precise,
        )


ZERO = _Billed(Decimal(0), 0, Decimal(0))


def target_period(session: Session, sub: SubRow, period: Period) -> Period:
    """The period whose draft carries corrections of ``period``: the earliest later
    period that is not finalized (a draft, or not invoiced yet)."""
    finalized = set(
        session.scalars(
            select(bulk.INVOICES.c.period_start).where(
                bulk.INVOICES.c.subscription_id == sub.id,
                bulk.INVOICES.c.period_start > period.start,
                bulk.INVOICES.c.status == "finalized",
            )
        )
    )
    for candidate in iter_periods(subscription_terms(sub), after=period.end):
        if candidate.start not in finalized:
            return candidate
    # The subscription has ended: corrections go on an invoice for the anchor cycle
    # after its end, which then carries only adjustments.
    cursor = period.end
    while True:
        cycle = period_containing(sub.billing_anchor_day, sub.timezone, cursor)
        if cycle.start >= period.end and cycle.start not in finalized:
            return cycle
        cursor = cycle.end


def _row_hash(row: dict[str, Any]) -> str:
    """Content hash of an adjustment row: all of it but where it sits and which run."""
    content = {
        k: canonical(v)
        if isinstance(v, Decimal)
        else v.isoformat()
        if isinstance(v, datetime)
        else v
        for k, v in row.items()
        if k not in ("invoice_id", "rating_run_id", "content_hash")
        # Absent before credit lines existed: a line without a grant hashes as it did.
        and not (k == "credit_grant_id" and v is None)
    }
    return sha256_hex(canonical_json(content))


def post_adjustments(
    session: Session,
    subscription: str,
    period: Period,
    charges: Sequence[ChargeLine],
    *,
    rerate: bool = False,
    rating_run_id: int | None = None,
    expire: bool = True,
) -> AdjustmentResult:
    """Post the correction of a finalized period as adjustment lines on the next draft.

    ``charges`` is the period's complete, corrected charge set (as post_charges takes
    it). Keys whose billed amount and quantity already match get no line. Posting the
    same correction again is a no-op; a different correction of the same period while
    the same draft carries the first one is a PostingConflict unless ``rerate``, which
    replaces it. Runs in the caller's transaction.

    The writes are Core statements, so the session's objects are expired after them;
    ``expire=False`` leaves that to a caller posting many periods, once after the last
    (each expire_all walks the whole identity map, and every object read after it is
    loaded again: per period of a close, that grew with the square of its size).
    """
    bulk.lock_ledger_writes(session)
    sub = subscriptions(session, [subscription])[subscription]
    prices = PriceIndex(session)
    prices.load([sub.plan_id])
    keyed = prepare(ChargeBatch(subscription, period, charges), sub, prices)

    pair = (sub.id, period.start)
    source = bulk.live_invoices(session, [pair], lock=True).get(pair)
    if source is None or source.status != "finalized":
        state = "not invoiced yet" if source is None else f"still a {source.status}"
        raise LedgerError(
            f"{subscription} {period.label()} is {state}: post the corrected charges with"
            " post_charges(..., rerate=True); adjustments only correct finalized invoices"
        )
    target = target_period(session, sub, period)
    # The carrier draft is created only when there is something to post: a re-check
    # that finds nothing to correct must leave the ledger as it was.
    pair_next = (sub.id, target.start)
    existing = bulk.live_invoices(session, [pair_next], lock=True).get(pair_next)
    carrier_id = existing.id if existing is not None else None

    original = {
        line.idempotency_key: line
        for line in session.scalars(
            select(InvoiceLine).where(
                InvoiceLine.invoice_id == source.id,
                InvoiceLine.kind != "adjustment",
                InvoiceLine.service_period_start == period.start,
            )
        )
    }
    keys = sorted(set(original) | set(keyed))
    earlier: dict[str, _Billed] = defaultdict(lambda: ZERO)
    for part in bulk.chunks(keys):
        rows = session.execute(
            select(
                bulk.LINES.c.adjusts_key,
                bulk.LINES.c.quantity,
                bulk.LINES.c.amount_minor,
                bulk.LINES.c.amount_precise,
            )
            .join(bulk.INVOICES, bulk.INVOICES.c.id == bulk.LINES.c.invoice_id)
            .where(
                bulk.LINES.c.kind == "adjustment",
                bulk.LINES.c.adjusts_key.in_(part),
                bulk.INVOICES.c.status != "void",
                bulk.INVOICES.c.id != (carrier_id if carrier_id is not None else -1),
            )
        )
        for key, quantity, minor, precise in rows:
            earlier[key] = earlier[key] + _Billed(quantity, minor, precise)

    wanted: dict[str, dict[str, Any]] = {}
    for key in keys:
        line = original.get(key)
        billed = earlier[key]
        if line is not None:
            billed = billed + _Billed(line.quantity, line.amount_minor, line.amount_precise)
        entry = keyed.get(key)
        charge = entry[0] if entry is not None else None
        corrected = (
            _Billed(charge.quantity, charge.amount_minor, charge.amount_precise)
            if charge is not None
            else ZERO
        )
        delta = corrected - billed
        if delta.amount_minor == 0 and delta.quantity == 0:
            continue
        akey = adjustment_key(key, target)
        like: Any = charge if charge is not None else line
        what = charge.description if charge is not None else f"{like.price_id} no longer charged"
        since = period.local_start(sub.timezone)
        row: dict[str, Any] = {
            "invoice_id": carrier_id,
            "idempotency_key": akey,
            "kind": "adjustment",
            "price_id": like.price_id,
            "price_version": like.price_version,
            "price_version_id": entry[1] if entry is not None else like.price_version_id,
            "meter": like.meter,
            "dimension_group": charge.group if charge is not None else like.dimension_group,
            "description": f"Adjustment for the period from {since}: {what}",
            "quantity": delta.quantity,
            "unit_amount": None,
            "currency": sub.currency,
            "amount_minor": delta.amount_minor,
            "amount_precise": delta.amount_precise,
            "breakdown": {
                "adjusts": key,
                "corrected_period": period.label(),
                "adjusted_kind": like.kind,
                "billed": _doc(billed),
                "corrected": {**_doc(corrected), "breakdown": charge.breakdown if charge else None},
            },
            "service_period_start": period.start,
            "service_period_end": period.end,
            "adjusts_line_id": line.id if line is not None else None,
            "adjusts_key": key,
            "rating_run_id": rating_run_id,
            # A correction of a credit line names its grant: finalizing it consumes from,
            # or returns to, the grant the difference of units (docs/credits.md).
            "credit_grant_id": like.grant_id if charge is not None else like.credit_grant_id,
        }
        row["content_hash"] = _row_hash(row)
        wanted[akey] = row

    if carrier_id is None:
        if not wanted:
            return AdjustmentResult(invoice_id=None, target_period=target)
        invoices, _ = ensure_invoices(session, [(sub, target, None)])
        carrier_id = invoices[pair_next].id
        for row in wanted.values():
            row["invoice_id"] = carrier_id
    have = bulk.existing_lines(
        session, [carrier_id], adjustments=True, service_start=period.start
    ).get(carrier_id, {})
    changed = [k for k, row in wanted.items() if k in have and have[k][1] != row["content_hash"]]
    added = [k for k in wanted if k not in have]
    dropped = [k for k in have if k not in wanted]
    if (changed or dropped) and not rerate:
        raise PostingConflict(
            f"invoice {carrier_id} already carries a different correction of {subscription}"
            f" {period.label()}: re-post with rerate=True to replace it",
            keys=changed + dropped,
        )
    bulk.delete_lines(session, [have[k][0] for k in changed + dropped])
    bulk.insert_lines(session, [wanted[k] for k in changed + added])
    if changed or added or dropped:
        bulk.refresh_totals(session, [carrier_id])
    result = AdjustmentResult(
        invoice_id=carrier_id,
        target_period=target,
        created=len(added),
        unchanged=len(wanted) - len(changed) - len(added),
        replaced=len(changed),
        removed=len(dropped),
    )
    lines = bulk.existing_lines(session, [carrier_id], adjustments=True, service_start=period.start)
    result.lines = {key: line_id for key, (line_id, _) in lines.get(carrier_id, {}).items()}
    if result.changed:
        # The draft's adjustment lines go to the outside world as they now are
        # (DESIGN.md invariant 8), in this transaction.
        record_adjustments(session, [carrier_id])
    if expire:
        session.expire_all()
    return result


def _doc(billed: _Billed) -> dict[str, Any]:
    return {
        "quantity": canonical(billed.quantity),
        "amount_minor": billed.amount_minor,
        "amount_precise": canonical(billed.amount_precise),
    }


@dataclass(slots=True)
class VoidCarryOver:
    """What voiding an invoice did to corrections (``restore_after_void``): the draft of
    the voided invoice's period that now carries them (None when nothing had to be
    carried), the adjustment lines moved there from the void invoice, the reversal lines
    posted, and the correction lines removed from drafts."""

    invoice_id: int | None = None
    moved: int = 0
    reversals: int = 0
    removed: int = 0


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The columns of an adjustment line that moving or reversing it carries over.
_COPIED = (
    "kind",
    "price_id",
    "price_version",
    "price_version_id",
    "meter",
    "dimension_group",
    "description",
    "quantity",
    "unit_amount",
    "currency",
    "amount_minor",
    "amount_precise",
    "breakdown",
    "service_period_start",
    "service_period_end",
    "adjusts_line_id",
    "adjusts_key",
    "rating_run_id",
    "credit_grant_id",
)
_ROW = ("invoice_id", "idempotency_key", "content_hash", *_COPIED)


class _Drafts:
    """The live draft of each period of one subscription, created on first use (a new
    draft of a voided period is its re-issue: ``reissue_of_id``)."""

    def __init__(self, session: Session, sub: SubRow) -> None:
        self.session = session
        self.sub = sub
        self.ids: dict[datetime, int] = {}

    def of(self, period: Period) -> int:
        if period.start not in self.ids:
            found, _ = ensure_invoices(self.session, [(self.sub, period, None)])
            self.ids[period.start] = found[(self.sub.id, period.start)].id
        return self.ids[period.start]


def restore_after_void(session: Session, voided_id: int) -> VoidCarryOver:
    """Keep every correction billed exactly once after invoice ``voided_id`` was voided
    (its status already void and flushed; billing.lifecycle.void calls this).

    A void invoice bills nothing: it is kept for the record and counts as zero (Stripe's
    rule for a voided invoice), and the next close bills its period again in full, on a
    new draft linked to it (``reissue_of_id``), rated from the events then. So:

    - the adjustment lines it carried for EARLIER periods that are still finalized
      would be lost: they move, same amounts, to the draft of its period (created here,
      the re-issue), which close then completes with the period's own charges;
    - corrections of ITS OWN period, and of any other period it carried corrections for
      that has no finalized invoice either (voided before), would be billed twice: once
      as corrections and once inside that period's re-rated charges. Those on drafts are
      removed; those on finalized invoices (billed, immutable) are reversed by one line
      per key on that period's own draft. Each such period then totals exactly what
      close re-rates it to.

    Runs in the caller's transaction. docs/ledger.md, "Voiding"."""
    lines, invoices = bulk.LINES, bulk.INVOICES
    sub_id, start, end = session.execute(
        select(invoices.c.subscription_id, invoices.c.period_start, invoices.c.period_end).where(
            invoices.c.id == voided_id
        )
    ).one()
    external_id = session.scalars(
        select(Subscription.external_id).where(Subscription.id == sub_id)
    ).one()
    sub = subscriptions(session, [external_id])[external_id]
    period = Period(_utc(start), _utc(end))
    copied = [lines.c[c] for c in _COPIED]
    finalized = {
        _utc(s)
        for s in session.scalars(
            select(invoices.c.period_start).where(
                invoices.c.subscription_id == sub.id, invoices.c.status == "finalized"
            )
        )
    }
    drafts = _Drafts(session, sub)
    out = VoidCarryOver()
    rows: list[dict[str, Any]] = []
    # The periods whose corrections on live invoices must net to zero per key: the void
    # invoice's own, and any it carried corrections for that is not finalized.
    unbilled = {period.start: period}
    for line in session.execute(
        select(*copied).where(lines.c.invoice_id == voided_id, lines.c.kind == "adjustment")
    ):
        corrected = Period(_utc(line.service_period_start), _utc(line.service_period_end))
        if corrected.start in finalized:
            row = {c: getattr(line, c) for c in _COPIED}
            row["invoice_id"] = drafts.of(period)
            row["idempotency_key"] = adjustment_key(line.adjusts_key, period)
            rows.append(row)
            out.moved += 1
        else:
            unbilled[corrected.start] = corrected

    touched: set[int] = set()
    for corrected in sorted(unbilled.values()):
        found = session.execute(
            select(lines.c.id, lines.c.invoice_id, invoices.c.status, *copied)
            .join(invoices, invoices.c.id == lines.c.invoice_id)
            .where(
                invoices.c.subscription_id == sub.id,
                invoices.c.status != "void",
                lines.c.kind == "adjustment",
                lines.c.service_period_start == corrected.start,
            )
            .order_by(lines.c.id)
        ).all()
        on_drafts = [c for c in found if c.status == "draft"]
        bulk.delete_lines(session, [c.id for c in on_drafts])
        touched.update(c.invoice_id for c in on_drafts)
        out.removed += len(on_drafts)
        by_key: dict[str, list[Any]] = defaultdict(list)
        for c in found:
            if c.status == "finalized":
                by_key[c.adjusts_key].append(c)
        for key, billed_lines in sorted(by_key.items()):
            billed = ZERO
            for c in billed_lines:
                billed = billed + _Billed(c.quantity, c.amount_minor, c.amount_precise)
            if billed == ZERO:
                continue
            since = corrected.local_start(sub.timezone)
            carriers = ", ".join(str(i) for i in sorted({c.invoice_id for c in billed_lines}))
            row = {c: getattr(billed_lines[0], c) for c in _COPIED}
            row.update(
                invoice_id=drafts.of(corrected),
                idempotency_key=adjustment_key(key, corrected),
                quantity=-billed.quantity,
                amount_minor=-billed.amount_minor,
                amount_precise=-billed.amount_precise,
                unit_amount=None,
                rating_run_id=None,
                description=f"Reversal of the corrections of the period from {since} billed"
                f" on invoice(s) {carriers}: invoice {voided_id} was voided, and the period"
                " is billed again in full",
                breakdown={
                    "adjusts": key,
                    "corrected_period": corrected.label(),
                    "reverses": [c.id for c in billed_lines],
                    "voided_invoice": voided_id,
                    "billed": _doc(billed),
                },
            )
            rows.append(row)
            out.reversals += 1

    ordered = []
    for row in rows:
        row["service_period_start"] = _utc(row["service_period_start"])
        row["service_period_end"] = _utc(row["service_period_end"])
        row["content_hash"] = _row_hash(row)
        ordered.append({c: row[c] for c in _ROW})
        touched.add(row["invoice_id"])
    bulk.insert_lines(session, ordered)
    if touched:
        bulk.refresh_totals(session, touched)
        # The drafts whose corrections moved or went: the outside world hears their
        # adjustment lines as they now are (DESIGN.md invariant 8).
        record_adjustments(session, touched)
    out.invoice_id = drafts.ids.get(period.start)
    session.expire_all()
    return out
