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
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import bulk
from billing.charges import ChargeLine, adjustment_key, canonical_json, sha256_hex
from billing.errors import LedgerError, PostingConflict
from billing.models import InvoiceLine
from billing.money import canonical
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
) -> AdjustmentResult:
    """Post the correction of a finalized period as adjustment lines on the next draft.

    ``charges`` is the period's complete, corrected charge set (as post_charges takes
    it). Keys whose billed amount and quantity already match get no line. Posting the
    same correction again is a no-op; a different correction of the same period while
    the same draft carries the first one is a PostingConflict unless ``rerate``, which
    replaces it. Runs in the caller's transaction.
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
    session.expire_all()
    return result


def _doc(billed: _Billed) -> dict[str, Any]:
    return {
        "quantity": canonical(billed.quantity),
        "amount_minor": billed.amount_minor,
        "amount_precise": canonical(billed.amount_precise),
    }
