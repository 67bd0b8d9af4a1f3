"""Posting rated charges as invoice lines, idempotently (Stripe's idempotency model).

Every line has a deterministic key (subscription, period, price, price version, kind
[, dimension group]). Posting a key again with the same content is a no-op that returns
the existing line; with different content it is a PostingConflict, unless the invoice
is still a draft and the caller re-rates it (``rerate=True``): then the period's lines
become exactly the new set, in the caller's transaction.

Concurrency: every ledger writer first takes the ledger's advisory write lock
(PostgreSQL; bulk.lock_ledger_writes), so writers queue instead of deadlocking. Each
(subscription, period) has at most one live invoice (a unique partial index). A poster
locks the live invoices it finds (SELECT .. FOR UPDATE), creates the
missing ones with INSERT .. ON CONFLICT DO NOTHING (a concurrent creator makes it wait,
then skip), locks those it did not create, and only then reads their lines and writes
the difference. On SQLite every transaction holds the database write lock from BEGIN
IMMEDIATE. Either way two posters of one period run one after the other and the second
finds the first one's lines: exactly one set of lines.

Everything runs inside the caller's transaction and never commits: commit on success,
roll back on any error. Writes are set-based Core statements (see billing.bulk), so the
session's identity map is expired after each call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from itertools import pairwise
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import bulk
from billing.bulk import MAX_AMOUNT_MINOR, AmountOutOfRange, Live, Pair
from billing.charges import (
    CATALOG_KINDS,
    POSTABLE_KINDS,
    SUBTOTAL_KINDS,
    ChargeLine,
    line_key,
    pays_key,
    period_token,
)
from billing.errors import LedgerError, PostingConflict, UnknownPriceVersion, UnknownSubscription
from billing.models import PriceVersion, RatingRun, RatingRunStaleDay, Subscription
from billing.periods import Period, Terms, subscription_period_containing
from billing.plan_changes import plans_of

#: Periods handled per round of statements.
CHUNK = 2000
CONFLICTS_SHOWN = 10

__all__ = ["MAX_AMOUNT_MINOR", "AmountOutOfRange", "ChargeBatch", "PostResult", "check_batch"]


@dataclass(frozen=True, slots=True)
class ChargeBatch:
    """The complete set of rated charges of one subscription for one billing period."""

    subscription: str
    period: Period
    charges: Sequence[ChargeLine]


@dataclass(slots=True)
class PostResult:
    """What a posting did. ``lines`` (filled by post_charges) maps keys to line ids."""

    invoices: int = 0
    invoices_created: int = 0
    created: int = 0
    unchanged: int = 0
    replaced: int = 0
    removed: int = 0
    invoice_ids: dict[tuple[str, datetime], int] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.replaced or self.removed)

    def merge(self, other: PostResult) -> None:
        self.invoices += other.invoices
        self.invoices_created += other.invoices_created
        self.created += other.created
        self.unchanged += other.unchanged
        self.replaced += other.replaced
        self.removed += other.removed
        self.invoice_ids.update(other.invoice_ids)
        self.lines.update(other.lines)


class SubRow(NamedTuple):
    id: int
    external_id: str
    customer_id: int
    plan_id: str
    currency: str
    billing_anchor_day: int
    timezone: str
    start_date: Any
    end_date: Any


def subscriptions(session: Session, external_ids: Iterable[str]) -> dict[str, SubRow]:
    """The subscriptions with these external ids; any unknown one is an error."""
    wanted = sorted(set(external_ids))
    found = {
        row[1]: SubRow(*row) for row in bulk.subscription_rows(session, wanted, SubRow._fields)
    }
    missing = [ext for ext in wanted if ext not in found]
    if missing:
        raise UnknownSubscription(
            f"unknown subscription(s) {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}: load the customers file first"
        )
    return found


def subscription_terms(sub: SubRow | Subscription) -> Terms:
    return Terms(sub.billing_anchor_day, sub.timezone, sub.start_date, sub.end_date)


@lru_cache(maxsize=65_536)
def _expected_period(terms: Terms, instant: datetime) -> Period | None:
    return subscription_period_containing(terms, instant)


def check_period(sub: SubRow | Subscription, period: Period) -> None:
    """Refuse a period that is not one of the subscription's billing periods."""
    if not isinstance(period, Period):
        raise TypeError(f"expected a billing.Period, got {type(period).__name__}")
    expected = _expected_period(subscription_terms(sub), period.start)
    if expected != period:
        raise LedgerError(
            f"{period.label()} is not a billing period of subscription {sub.external_id}"
            f" (anchor day {sub.billing_anchor_day}, {sub.timezone}); expected"
            f" {expected.label() if expected else 'none: the subscription is not active then'}"
        )


class PriceIndex:
    """(plan, price, currency, version label) -> price_versions.id, read once per call."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._plans: set[str] = set()
        self._ids: dict[tuple[str, str, str, str], int] = {}
        self._changed: dict[int, list[str]] = {}  # subscription id -> plans changed to/from

    def load(self, plans: Iterable[str]) -> None:
        todo = set(plans) - self._plans
        if not todo:
            return
        rows = self._session.execute(
            select(
                PriceVersion.plan_id,
                PriceVersion.price_id,
                PriceVersion.currency,
                PriceVersion.version,
                PriceVersion.id,
            ).where(PriceVersion.plan_id.in_(sorted(todo)))
        )
        for plan_id, price_id, currency, version, pv_id in rows:
            self._ids[(plan_id, price_id, currency, version)] = pv_id
        self._plans |= todo

    def resolve(
        self, plan: str, charge: ChargeLine, batch: ChargeBatch, subscription_id: int | None = None
    ) -> int | None:
        """The line's price version id in `plan`, or, for a subscription that changed plan
        (billing/plan_changes.py), in a plan it changed to or from."""
        pv_id = self._ids.get((plan, charge.price_id, charge.currency, charge.price_version))
        if pv_id is None and subscription_id is not None:
            for other in self._changed_plans(subscription_id):
                self.load([other])
                pv_id = self._ids.get(
                    (other, charge.price_id, charge.currency, charge.price_version)
                )
                if pv_id is not None:
                    break
        if pv_id is None and charge.kind in CATALOG_KINDS:
            raise UnknownPriceVersion(
                f"{_where(batch)}: price {charge.price_id} version {charge.price_version}"
                f" ({charge.currency}) is not in plan {plan} of the loaded catalog:"
                " load the catalog (`meterline catalog load`) or fix the version label"
            )
        return pv_id

    def _changed_plans(self, subscription_id: int) -> list[str]:
        if subscription_id not in self._changed:
            self._changed[subscription_id] = plans_of(self._session, subscription_id)
        return self._changed[subscription_id]


Keyed = dict[str, tuple[ChargeLine, int | None]]


def _where(batch: ChargeBatch) -> str:
    """Where a problem is, for messages (built only on error: it costs two strftimes)."""
    return f"{batch.subscription} {batch.period.label()}"


def prepare(batch: ChargeBatch, sub: SubRow, prices: PriceIndex) -> Keyed:
    """Check a batch and key its charges: {idempotency key: (charge, price version id)}."""
    check_period(sub, batch.period)
    token = period_token(batch.period)
    keyed: Keyed = {}
    for charge in batch.charges:
        if not isinstance(charge, ChargeLine):
            raise TypeError(f"{_where(batch)}: expected ChargeLine, got {type(charge).__name__}")
        if charge.kind not in POSTABLE_KINDS:
            raise LedgerError(
                f"{_where(batch)}: {charge.kind} lines are not posted directly:"
                " use post_adjustments()"
            )
        if charge.currency != sub.currency:
            raise LedgerError(
                f"{_where(batch)}: charge {charge.price_id} is in {charge.currency},"
                f" the subscription bills in {sub.currency}"
            )
        key = line_key(sub.external_id, token, charge)
        if key in keyed:
            raise LedgerError(f"{_where(batch)}: two charges share the idempotency key {key}")
        if not bulk.in_range(charge.amount_minor):
            raise bulk.out_of_range(charge.amount_minor, f"line {key}")
        keyed[key] = (charge, prices.resolve(sub.plan_id, charge, batch, sub.id))
    check_batch(batch)
    return keyed


def check_batch(batch: ChargeBatch) -> None:
    """Raise AmountOutOfRange when a charge of the batch, or a total of an invoice made of
    exactly these charges, is beyond the ledger's limit (bulk.MAX_AMOUNT_MINOR minor
    units): a caller can set such a period aside before posting anything."""
    lines = []
    for charge in batch.charges:
        minor = charge.amount_minor
        if not bulk.in_range(minor):
            raise bulk.out_of_range(minor, f"{_where(batch)}: {charge.kind} {charge.price_id}")
        lines.append((charge.kind, minor))
    bulk.check_invoice_totals(bulk.invoice_totals(lines), lambda: f"{_where(batch)}: invoice")


def line_row(
    invoice_id: int,
    key: str,
    charge: ChargeLine,
    period: Period,
    price_version_id: int | None,
    rating_run_id: int | None,
) -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "idempotency_key": key,
        "content_hash": charge.content_hash(),
        "kind": charge.kind,
        "price_id": charge.price_id,
        "price_version": charge.price_version,
        "price_version_id": price_version_id,
        "meter": charge.meter,
        "dimension_group": charge.group,
        "description": charge.description,
        "quantity": charge.quantity,
        "unit_amount": charge.unit_amount,
        "currency": charge.currency,
        "amount_minor": charge.amount_minor,
        "amount_precise": charge.amount_precise,
        "breakdown": charge.breakdown,
        "_breakdown_json": charge.breakdown_json,
        "service_period_start": period.start,
        "service_period_end": period.end,
        "adjusts_line_id": None,
        "adjusts_key": None,
        "rating_run_id": rating_run_id,
        "credit_grant_id": charge.grant_id,
        "pays_key": pays_key(key) if charge.kind == "credit" else None,
    }


def _new_invoice_row(sub: SubRow, period: Period, keyed: Keyed | None) -> dict[str, Any]:
    subtotal = discount = 0
    for charge, _ in (keyed or {}).values():
        if charge.kind in SUBTOTAL_KINDS:
            subtotal += charge.amount_minor
        else:
            discount += charge.amount_minor
    return {
        "customer_id": sub.customer_id,
        "subscription_id": sub.id,
        "period_start": period.start,
        "period_end": period.end,
        "period_start_local": period.local_start(sub.timezone),
        "currency": sub.currency,
        # A new draft gets exactly this batch's lines, so its totals are known already.
        "subtotal_minor": subtotal,
        "discount_minor": discount,
        "total_minor": subtotal + discount,
        "line_count": len(keyed or {}),
    }


def ensure_invoices(
    session: Session, wanted: list[tuple[SubRow, Period, Keyed | None]]
) -> tuple[dict[Pair, Live], set[Pair]]:
    """Lock the live invoice of each (subscription, period), creating missing drafts.

    Returns the locked invoices and the pairs created here, whose totals were written
    from the batch (``Keyed``) and which have no lines yet.
    """
    pairs = [(sub.id, period.start) for sub, period, _ in wanted]
    live = bulk.live_invoices(session, pairs, lock=True)
    missing = [w for w in wanted if (w[0].id, w[1].start) not in live]
    if not missing:
        return live, set()
    created = bulk.insert_invoices(
        session, [_new_invoice_row(sub, period, keyed) for sub, period, keyed in missing]
    )
    # Everything missing is live now: created here, or by a concurrent poster (whose
    # row we lock now, after it committed).
    live.update(bulk.live_invoices(session, [(s.id, p.start) for s, p, _ in missing], lock=True))
    return live, created


def post_charges_bulk(
    session: Session,
    batches: Iterable[ChargeBatch],
    *,
    rerate: bool = False,
    rating_run_id: int | None = None,
    return_lines: bool = False,
) -> PostResult:
    """Post the rated charges of many (subscription, period) pairs in few round trips.

    Each batch is the complete charge set of its period. Lines already posted with the
    same content are left alone (no-op); new keys are added. A key posted with other
    content raises PostingConflict (roll back: nothing of the call may be committed),
    unless ``rerate`` and the invoice is a draft: then the period's lines become exactly
    the batch (changed lines replaced, lines missing from the batch removed; adjustment
    lines the draft carries for other periods are kept). A finalized invoice accepts
    only an identical re-post; corrections go through post_adjustments().
    """
    bulk.lock_ledger_writes(session)
    todo = sorted(batches, key=lambda b: (b.subscription, b.period.start))
    for before, after in pairwise(todo):
        if (before.subscription, before.period.start) == (after.subscription, after.period.start):
            raise LedgerError(
                f"{after.subscription} {after.period.label()} appears twice in one post"
            )
    result = PostResult()
    prices = PriceIndex(session)
    for i in range(0, len(todo), CHUNK):
        part = todo[i : i + CHUNK]
        result.merge(_post_chunk(session, part, prices, rerate, rating_run_id, return_lines))
    session.expire_all()
    return result


def _post_chunk(
    session: Session,
    chunk: list[ChargeBatch],
    prices: PriceIndex,
    rerate: bool,
    rating_run_id: int | None,
    return_lines: bool,
) -> PostResult:
    subs = subscriptions(session, (b.subscription for b in chunk))
    prices.load(s.plan_id for s in subs.values())
    prepared = [(b, subs[b.subscription], prepare(b, subs[b.subscription], prices)) for b in chunk]
    invoices, created = ensure_invoices(session, [(s, b.period, k) for b, s, k in prepared])
    existing = bulk.existing_lines(
        session,
        [inv.id for pair, inv in invoices.items() if pair not in created],
        adjustments=False,
    )

    result = PostResult(invoices=len(prepared), invoices_created=len(created))
    conflicts: list[str] = []
    closed: list[str] = []
    inserts: list[dict[str, Any]] = []
    deletes: list[int] = []
    confirmed: list[int] = []
    touched: set[int] = set()
    for batch, sub, keyed in prepared:
        pair = (sub.id, batch.period.start)
        invoice = invoices[pair]
        result.invoice_ids[(sub.external_id, batch.period.start)] = invoice.id
        have = existing.get(invoice.id, {})
        changed = [
            k
            for k, (charge, _) in keyed.items()
            if k in have and have[k][1] != charge.content_hash()
        ]
        added = [k for k in keyed if k not in have]
        dropped = [k for k in have if k not in keyed] if rerate else []
        result.unchanged += len(keyed) - len(changed) - len(added)
        if invoice.status != "draft":
            if changed or added or dropped:
                closed.append(
                    f"invoice {invoice.id} ({sub.external_id} {batch.period.label()}) is"
                    f" {invoice.status}: {len(changed)} changed, {len(added)} new,"
                    f" {len(dropped)} dropped line(s)"
                )
            continue
        if changed and not rerate:
            conflicts.extend(changed)
            continue
        deletes.extend(have[k][0] for k in changed + dropped)
        if rating_run_id is not None:
            # A line this run re-derived unchanged is the run's line now: what the run saw
            # (its watermark) is what the line accounts for.
            confirmed.extend(have[k][0] for k in keyed if k in have and k not in changed)
        for k in changed + added:
            charge, pv_id = keyed[k]
            inserts.append(line_row(invoice.id, k, charge, batch.period, pv_id, rating_run_id))
        if (changed or added or dropped) and pair not in created:
            touched.add(invoice.id)
        result.created += len(added)
        result.replaced += len(changed)
        result.removed += len(dropped)
    if closed:
        raise PostingConflict(
            "cannot change a finalized invoice; post the correction with post_adjustments():\n  "
            + "\n  ".join(closed[:CONFLICTS_SHOWN])
        )
    if conflicts:
        more = len(conflicts) - CONFLICTS_SHOWN
        raise PostingConflict(
            f"{len(conflicts)} line(s) were already posted with different content"
            " (a draft can be re-rated with rerate=True):\n  "
            + "\n  ".join(conflicts[:CONFLICTS_SHOWN])
            + (f"\n  ... and {more} more" if more > 0 else ""),
            keys=conflicts,
        )
    bulk.delete_lines(session, deletes)
    bulk.insert_lines(session, inserts)
    if confirmed and rating_run_id is not None:
        bulk.set_rating_run(session, confirmed, rating_run_id)
    if touched:
        bulk.refresh_totals(session, touched)
    if return_lines:
        ids = sorted(set(result.invoice_ids.values()))
        for lines in bulk.existing_lines(session, ids, adjustments=False).values():
            result.lines.update((key, line_id) for key, (line_id, _) in lines.items())
    return result


def post_charges(
    session: Session,
    subscription: str,
    period: Period,
    charges: Sequence[ChargeLine],
    *,
    rerate: bool = False,
    rating_run_id: int | None = None,
) -> PostResult:
    """Post one period's rated charges on its draft invoice (see post_charges_bulk).

    ``result.lines`` maps each key of the period to its line id, existing or new.
    """
    return post_charges_bulk(
        session,
        [ChargeBatch(subscription, period, charges)],
        rerate=rerate,
        rating_run_id=rating_run_id,
        return_lines=True,
    )


def record_rating_run(
    session: Session,
    *,
    period_start: datetime,
    period_end: datetime,
    run_at: datetime,
    code_version: str,
    inputs_hash: str,
    note: str | None = None,
    events_watermark: datetime | None = None,
    stale_days: Mapping[date, datetime] | None = None,
) -> int:
    """Record a rating run (logical times, never the clock) and return its id.

    ``events_watermark`` and ``stale_days``: what the run saw of the warehouse (every
    event ingested up to the watermark, except on the stale days, up to each day's own);
    see billing.models.RatingRun."""
    run = RatingRun(
        period_start=period_start,
        period_end=period_end,
        run_at=run_at,
        code_version=code_version,
        inputs_hash=inputs_hash,
        note=note,
        events_watermark=events_watermark,
        stale_days=[
            RatingRunStaleDay(day=day, watermark=mark)
            for day, mark in sorted((stale_days or {}).items())
        ],
    )
    session.add(run)
    session.flush()
    return run.id
