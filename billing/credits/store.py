"""Credit grants in the ledger: load, void, expire or roll over, consume and return, and
read back.

Everything runs in the caller's transaction and never commits; every writer queues
behind the others first (billing.bulk.lock_ledger_writes). A grant's value only moves
through ledger entries (billing/credits/accounts.py): each write computes the grant's
balance from its last entry, refuses a movement that would take an account below zero
(BalanceError, nothing written) and stores the balance after it. Each entry has a
deterministic idempotency key, so writing the same movement twice is one movement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from billing import bulk
from billing.credits.accounts import Balance, BalanceError, Movement, Replay, move, replay
from billing.credits.rows import ROLLOVER_ID_MAX, ROLLOVER_SUFFIX, GrantRow
from billing.customers.checks import Catalog
from billing.customers.errors import FileInvalid, Problem
from billing.customers.rows import by_problem
from billing.errors import LedgerError, NotFound
from billing.models import (
    CREDIT_MOVES,
    CreditGrant,
    CreditLedgerEntry,
    Customer,
    Invoice,
    Subscription,
)
from billing.money import canonical, minor_unit
from billing.periods import local_midnight, zone

__all__ = ["BalanceError", "GrantsFileInvalid", "NoGrants", "TermsEnded"]

#: Who creates the next term's grant of a grant that rolls over (close, or a void past
#: the term's end, books it: no person's action).
ROLLOVER_BY = "meterline"


class GrantsFileInvalid(FileInvalid):
    """Credit grants that cannot be loaded (a file, or one `meterline credits grant`);
    nothing of them was. Every problem names its line and field."""

    FIELD_ORDER = tuple(GrantRow.model_fields)


class NoGrants(GrantsFileInvalid):
    """A grants file that holds no grant (empty, only a header, an empty list): nothing
    to load, said as such rather than as a problem on a line (exit code 2)."""

    def __init__(self, source: str) -> None:
        super().__init__(source, [Problem(0, "file", "holds no grants")])
        self.args = (
            f"{source}: the file holds no grants; nothing was loaded: write one grant per"
            " row (docs/credits.md)",
        )


class EntryConflict(LedgerError):
    """A ledger entry's idempotency key was already written with another movement."""


@dataclass(frozen=True, slots=True)
class GrantsLoadResult:
    """What a load did: grants read, created, and already in the ledger as given."""

    rows: int
    created: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class GrantView:
    """A grant with its accounts, as the commands and the drawdown read it. ``unit`` is
    the grant's currency for money, its meter for units; amounts are in that unit."""

    id: int
    grant_id: str
    customer: str
    subscription: str | None
    kind: str
    currency: str
    meter: str | None
    priority: int
    effective_from: datetime
    expires_at: datetime | None
    applies_to: str
    applies_to_ids: tuple[str, ...]
    price_paid: Decimal | None
    rollover: bool
    created_at: datetime
    created_by: str
    reason: str
    voided_at: datetime | None
    voided_by: str | None
    void_reason: str | None
    balance: Balance
    # The grant whose unused balance this one holds (it is that grant's next term), and
    # the grant this one's unused balance rolled over to (None: none).
    rolled_over_from: str | None = None
    rolled_over_to: str | None = None

    @property
    def unit(self) -> str:
        return self.meter or self.currency

    def to_json(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat().replace("+00:00", "Z")

        def shown(amount: Decimal) -> str:
            # Money with its currency's decimals; units as few digits as they need.
            if self.meter is None:
                return format(amount.quantize(minor_unit(self.currency)), "f")
            return canonical(amount)

        b = self.balance
        return {
            "grant_id": self.grant_id,
            "customer": self.customer,
            "subscription": self.subscription,
            "kind": self.kind,
            "currency": self.currency,
            "meter": self.meter,
            "unit": self.unit,
            "priority": self.priority,
            "effective_from": when(self.effective_from),
            "expires_at": when(self.expires_at),
            "applies_to": self.applies_to,
            "applies_to_ids": list(self.applies_to_ids),
            "price_paid": None if self.price_paid is None else str(self.price_paid),
            "rollover": self.rollover,
            "rolled_over_from": self.rolled_over_from,
            "rolled_over_to": self.rolled_over_to,
            "created_at": when(self.created_at),
            "created_by": self.created_by,
            "reason": self.reason,
            "voided_at": when(self.voided_at),
            "voided_by": self.voided_by,
            "void_reason": self.void_reason,
            "granted": shown(b.granted),
            "consumed": shown(b.consumed),
            "expired": shown(b.expired),
            "voided": shown(b.voided),
            "rolled_over": shown(b.rolled_over),
            "remaining": shown(b.remaining),
        }


# --- loading -------------------------------------------------------------------------


def load_grants(
    session: Session,
    rows: Sequence[tuple[int, GrantRow]],
    source: str,
    *,
    by: str,
    at: datetime,
    problems: Sequence[Problem] = (),
) -> GrantsLoadResult:
    """Check ``rows`` (line number, row) against the ledger, then create each grant that
    is not there yet with its grant entry, all or nothing. A grant id already in the
    ledger with the same terms is left as it is (loading a file twice changes nothing);
    with other terms it is refused: a grant never changes (void it, grant anew).

    ``problems`` are the file's own (rows that did not parse). Raises GrantsFileInvalid
    with all of them and the ledger's, nothing written. ``by`` and ``at`` record who
    loaded the grants and when (the person's wall clock)."""
    bulk.lock_ledger_writes(session)
    if not by.strip():
        raise LedgerError("give who grants the credits (--by), not an empty name")
    if problem := by_problem(by):
        raise LedgerError(f"{problem}; nothing was granted")
    if not rows and not problems:
        raise NoGrants(source)
    found, resolved = _ledger_problems(session, rows)
    if problems or found:
        raise GrantsFileInvalid(source, [*problems, *found])
    created = 0
    for values in resolved:
        if values is None:
            continue
        grant = CreditGrant(**values, created_at=at, created_by=by.strip())
        session.add(grant)
        session.flush()
        _append(
            session,
            grant,
            "grant",
            grant.amount,
            key=f"grant|{grant.grant_id}",
            effective_at=grant.effective_from,
            note=f"granted by {grant.created_by}: {grant.reason}",
        )
        created += 1
    return GrantsLoadResult(rows=len(rows), created=created, unchanged=len(rows) - created)


def _ledger_problems(
    session: Session, rows: Sequence[tuple[int, GrantRow]]
) -> tuple[list[Problem], list[dict[str, Any] | None]]:
    """Every problem of the rows against the ledger, and each row's column values (None
    for a grant the ledger already holds as given)."""
    problems: list[Problem] = []
    resolved: list[dict[str, Any] | None] = []
    customers = {
        c.external_id: c
        for c in session.scalars(
            select(Customer).where(Customer.external_id.in_({r.customer_id for _, r in rows}))
        )
    }
    subs = {
        s.external_id: s
        for s in session.scalars(
            select(Subscription).where(
                Subscription.external_id.in_(
                    {r.subscription_id for _, r in rows if r.subscription_id}
                )
            )
        )
    }
    existing = {
        g.grant_id: g
        for g in session.scalars(
            select(CreditGrant).where(CreditGrant.grant_id.in_({r.grant_id for _, r in rows}))
        )
    }
    catalog = Catalog.read(session)
    prices = set().union(*catalog.prices.values()) if catalog.prices else set()
    meters = {p.meter for found in catalog.metered.values() for p in found}
    # The meters each price counts (a price id may be in several plans; a flat fee: none).
    meters_of: dict[str, set[str]] = {}
    for found in catalog.metered.values():
        for priced in found:
            meters_of.setdefault(priced.price_id, set()).add(priced.meter)
    seen: dict[str, int] = {}
    for line, row in rows:
        before = len(problems)

        def problem(name: str, text: str, line: int = line) -> None:
            problems.append(Problem(line, name, text))

        if row.grant_id in seen:
            problem("grant_id", f"{row.grant_id} already on line {seen[row.grant_id]}")
        seen.setdefault(row.grant_id, line)
        customer = customers.get(row.customer_id)
        sub = subs.get(row.subscription_id) if row.subscription_id else None
        if customer is None:
            problem("customer_id", f"no customer {row.customer_id} in the ledger: load it first")
        elif row.currency != customer.currency:
            problem(
                "currency",
                f"customer {row.customer_id} is billed in {customer.currency}; a grant pays"
                f" for lines in its own currency, so it must be {customer.currency}",
            )
        if row.subscription_id and (
            sub is None or customer is None or sub.customer_id != customer.id
        ):
            problem(
                "subscription_id",
                f"no subscription {row.subscription_id} of customer {row.customer_id} in"
                " the ledger",
            )
        if row.meter is not None and row.meter not in meters:
            problem("meter", f"no price of the catalog counts meter {row.meter!r}")
        known = prices if row.applies_to == "prices" else meters
        unknown = [i for i in row.applies_to_ids if i not in known]
        if unknown:
            what = "price" if row.applies_to == "prices" else "meter"
            problem(
                "applies_to",
                f"unknown {what} {unknown[0]!r}; the catalog's are {', '.join(sorted(known))}",
            )
        # A grant of units pays for lines of its meter only (docs/credits.md): limited to
        # a price of another meter (or a flat fee) it could never pay anything.
        elsewhere = [
            i
            for i in row.applies_to_ids
            if row.meter is not None
            and row.applies_to == "prices"
            and row.meter not in meters_of.get(i, set())
        ]
        if elsewhere and not unknown:
            problem(
                "applies_to",
                f"price {elsewhere[0]} is not on meter {row.meter}; a grant of {row.meter}"
                f" units pays for {row.meter} lines only: name prices of {row.meter}, or"
                " leave applies_to empty",
            )
        tz = sub.timezone if sub is not None else customer.timezone if customer else "UTC"
        start = _instant(row.effective_from, tz)
        end = None if row.expires_at is None else _instant(row.expires_at, tz)
        if end is not None and end <= start:
            problem(
                "expires_at",
                f"{_iso(end)} is not after effective_from ({_iso(start)}, in {tz})",
            )
        if len(problems) > before or customer is None:
            resolved.append(None)
            continue
        values = {
            "grant_id": row.grant_id,
            "customer_id": customer.id,
            "subscription_id": sub.id if sub is not None else None,
            "kind": row.kind,
            "currency": row.currency,
            "amount": row.amount if row.amount is not None else row.units,
            "meter": row.meter,
            "priority": row.priority,
            "effective_from": start,
            "expires_at": end,
            "applies_to": row.applies_to,
            "applies_to_ids": list(row.applies_to_ids),
            "price_paid": row.price_paid,
            "rollover": row.rollover,
            "reason": row.reason,
        }
        old = existing.get(row.grant_id)
        if old is None:
            # A grant pays periods not invoiced yet: a finalized invoice never changes
            # (DESIGN.md), and re-rating it (a late correction, reconcile) must find what
            # close found. Stripe's credit grants likewise apply to invoices finalized
            # after they are created. So it takes effect at or after the end of the last
            # finalized period it could pay (of its subscription, or of the customer's).
            through = _billed_through(session, customer.id, sub.id if sub is not None else None)
            if through is not None and start < through:
                problem(
                    "effective_from",
                    f"{_iso(start)} is inside a period already invoiced (finalized through"
                    f" {_iso(through)}); a grant pays periods not invoiced yet: take effect at"
                    f" {_iso(through)} or later (a credit for an invoiced period is an"
                    " adjustment or a void and re-issue)",
                )
                resolved.append(None)
                continue
            resolved.append(values)
            continue
        # Every term is immutable once loaded, the reason too (a changed reason is not
        # "the same grant again"); units are held in the amount column.
        changed = [
            "units" if k == "amount" and row.units is not None else k
            for k, v in values.items()
            if _differs(getattr(old, k), v)
        ]
        if changed:
            problem(
                changed[0] if changed[0] in GrantRow.model_fields else "grant_id",
                f"grant {row.grant_id} is in the ledger with other terms ({', '.join(changed)});"
                " a grant never changes: void it (`meterline credits void`) and grant anew"
                " under a new id",
            )
        resolved.append(None)
    return problems, resolved


def _billed_through(session: Session, customer: int, subscription: int | None) -> datetime | None:
    """The end of the latest finalized (not voided) period of the customer, or of one of
    its subscriptions; None when nothing is finalized."""
    query = select(func.max(Invoice.period_end)).where(
        Invoice.customer_id == customer, Invoice.status == "finalized"
    )
    if subscription is not None:
        query = query.where(Invoice.subscription_id == subscription)
    return session.scalar(query)


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, Decimal) and isinstance(new, Decimal):
        return old != new
    if isinstance(old, list) or isinstance(new, list):
        return list(old or []) != list(new or [])
    return bool(old != new)


def _instant(when: date | datetime, tz: str) -> datetime:
    """A date is midnight in ``tz``; an instant is itself."""
    if isinstance(when, datetime):
        return when
    return local_midnight(when, tz)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- movements -----------------------------------------------------------------------


def _balance(session: Session, grant: CreditGrant) -> Balance:
    """The grant's accounts from its entries (replayed: a few per period)."""
    return replay(grant.amount, _movements(session, grant.id)).balance


def _movements(session: Session, grant_pk: int) -> list[Movement]:
    rows = session.execute(
        select(
            CreditLedgerEntry.id,
            CreditLedgerEntry.kind,
            CreditLedgerEntry.amount,
            CreditLedgerEntry.from_account,
            CreditLedgerEntry.to_account,
            CreditLedgerEntry.available_after,
            CreditLedgerEntry.reverses_entry_id,
        )
        .where(CreditLedgerEntry.grant_id == grant_pk)
        .order_by(CreditLedgerEntry.id)
    ).all()
    return [
        Movement(
            kind=kind,
            amount=amount,
            entry_id=eid,
            from_account=src,
            to_account=dst,
            available_after=after,
            reverses=rev,
        )
        for eid, kind, amount, src, dst, after, rev in rows
    ]


def _append(
    session: Session,
    grant: CreditGrant,
    kind: str,
    amount: Decimal,
    *,
    key: str,
    effective_at: datetime,
    note: str,
    value_minor: int | None = None,
    invoice_line_id: int | None = None,
    reverses: int | None = None,
) -> CreditLedgerEntry:
    """Append one movement (idempotent by ``key``). Raises BalanceError when an account
    would go below zero, EntryConflict when ``key`` holds another movement."""
    old = session.scalars(
        select(CreditLedgerEntry).where(CreditLedgerEntry.idempotency_key == key)
    ).one_or_none()
    if old is not None:
        if (old.grant_id, old.kind, old.amount, old.invoice_line_id) != (
            grant.id,
            kind,
            amount,
            invoice_line_id,
        ):
            raise EntryConflict(
                f"credit ledger entry {key!r} was written as {old.kind} {old.amount} of"
                f" grant id {old.grant_id}; it cannot become {kind} {amount}"
            )
        return old
    after = move(_balance(session, grant), kind, amount)
    src, dst = CREDIT_MOVES[kind]
    entry = CreditLedgerEntry(
        grant_id=grant.id,
        kind=kind,
        from_account=src,
        to_account=dst,
        amount=amount,
        available_after=after.remaining,
        value_minor=value_minor,
        invoice_line_id=invoice_line_id,
        reverses_entry_id=reverses,
        idempotency_key=key,
        effective_at=effective_at,
        note=note,
    )
    session.add(entry)
    session.flush()
    return entry


def _grant(session: Session, grant_id: str, *, lock: bool = False) -> CreditGrant:
    stmt = select(CreditGrant).where(CreditGrant.grant_id == grant_id)
    grant = session.scalars(stmt.with_for_update() if lock else stmt).one_or_none()
    if grant is None:
        raise NotFound(
            f"no credit grant {grant_id!r} in the ledger (`meterline credits list` shows them)"
        )
    return grant


def void_grant(
    session: Session, grant_id: str, *, as_of: datetime, by: str, reason: str, at: datetime
) -> GrantView:
    """Void a grant: its remaining balance goes back to the issuer (a ``void`` entry at
    ``as_of``, the logical time) and nothing draws on it any more. What it already paid
    for stays paid (a voided invoice returns its consumption first, and that return
    is voided with the rest). Voiding a void grant is refused. ``by``/``reason`` say
    who and why; ``at`` is the wall clock of the person's action. Voided at or after its
    ``expires_at``, what was left then expires first (breakage, as expire_grants books
    it), or rolls over to the next term's grant for a grant that rolls over (as
    expire_grants books it too; that grant stays, voided only by its own void), and only
    the rest is voided."""
    bulk.lock_ledger_writes(session)
    if not by.strip() or not reason.strip():
        raise LedgerError("give who voids the grant (--by) and why (--reason)")
    if problem := by_problem(by):
        raise LedgerError(f"{problem}; nothing was voided")
    grant = _grant(session, grant_id, lock=True)
    if grant.voided_at is not None:
        raise LedgerError(
            f"credit grant {grant_id} was voided on {_iso(grant.voided_at)} by"
            f" {grant.voided_by}; a grant is voided once"
        )
    # The void is a movement at ``as_of``: before the grant's last movement (its grant
    # entry at effective_from, or a consumption) the balances as of a moment between
    # would count the void but not what it voids, and go below zero.
    last = session.scalar(
        select(CreditLedgerEntry.effective_at)
        .where(CreditLedgerEntry.grant_id == grant.id)
        .order_by(CreditLedgerEntry.effective_at.desc())
        .limit(1)
    )
    if last is not None and as_of < last:
        raise LedgerError(
            f"credit grant {grant_id} cannot be voided as of {_iso(as_of)}: its last movement"
            f" is effective {_iso(last)} (it takes effect {_iso(grant.effective_from)});"
            f" void it as of {_iso(last)} or later"
        )
    # Past its expiry the grant's leftover was lost at expires_at (breakage), or moved to
    # the next term's grant (rollover), whether or not the expiry job has run yet: a void
    # after that books it as the expiry would (the same entries and keys), and voids only
    # what is left after it.
    if grant.expires_at is not None and grant.expires_at <= as_of:
        _end_term(session, grant, at=at)
    remaining = _balance(session, grant).remaining
    if remaining > 0:
        _append(
            session,
            grant,
            "void",
            remaining,
            key=f"void|{grant.grant_id}",
            effective_at=as_of,
            note=f"voided by {by.strip()}: {reason.strip()}",
        )
    grant.voided_at = at
    grant.voided_by = by.strip()
    grant.void_reason = reason.strip()
    session.flush()
    return grant_views(session, grant_id=grant_id)[0]


@dataclass(frozen=True, slots=True)
class TermsEnded:
    """What expire_grants booked: the grants whose unused balance expired (breakage),
    and the grants whose unused balance rolled over, each with the next term's grant
    (parent, child)."""

    expired: list[str] = field(default_factory=list)
    rolled_over: list[tuple[str, str]] = field(default_factory=list)


def expire_grants(session: Session, *, as_of: datetime, at: datetime | None = None) -> TermsEnded:
    """End the term of every grant (not voided) whose ``expires_at`` is at or before
    ``as_of`` with a balance left: the rest becomes breakage (an ``expire`` entry at
    ``expires_at``) or, for a grant that rolls over, moves to the next term's grant (a
    ``rollover`` entry at ``expires_at`` and the new grant: _roll_over). The caller passes
    an instant by which every period that could still draw on those grants is finalized
    (close: after it finalizes). ``at`` is recorded as the creation time of the grants a
    rollover creates (the close's logical time; ``as_of`` without it). Idempotent: a
    grant with nothing left is not touched again."""
    bulk.lock_ledger_writes(session)
    done = TermsEnded()
    for grant in session.scalars(
        select(CreditGrant)
        .where(
            CreditGrant.expires_at.is_not(None),
            CreditGrant.expires_at <= as_of,
            CreditGrant.voided_at.is_(None),
        )
        .order_by(CreditGrant.id)
    ).all():
        ended = _end_term(session, grant, at=at or as_of)
        if isinstance(ended, str):
            done.rolled_over.append((grant.grant_id, ended))
        elif ended:
            done.expired.append(grant.grant_id)
    return done


def _end_term(session: Session, grant: CreditGrant, *, at: datetime) -> bool | str:
    """Book the end of an expired grant's term: its rest rolls over (the next term's
    grant id), or expires (True); False when nothing was left."""
    if grant.rollover:
        return _roll_over(session, grant, at=at) or _expire(session, grant)
    return _expire(session, grant)


def _expire(session: Session, grant: CreditGrant) -> bool:
    """Book what is left of an expired grant as breakage (an ``expire`` entry at its
    ``expires_at``, key ``expire|G``); False when nothing was left.

    Value can come back to a grant after its term ended and was booked (a consumption
    returned: an invoice it paid voided, re-issued drawing less). Nothing can draw on it
    any more, so it is breakage too (docs/credits.md, "Value returned after a term"): a
    later ``expire`` entry keyed ``expire|G|<id of the entry before it>`` (idempotent:
    run again, nothing is left), effective when that entry is, so that the balance as of
    any instant stays at zero or above."""
    assert grant.expires_at is not None
    remaining = _balance(session, grant).remaining
    if remaining <= 0:
        return False
    key, effective_at = f"expire|{grant.grant_id}", grant.expires_at
    ended_before = session.scalar(
        select(func.count())
        .select_from(CreditLedgerEntry)
        .where(
            CreditLedgerEntry.grant_id == grant.id,
            CreditLedgerEntry.kind.in_(("expire", "rollover")),
        )
    )
    if ended_before:
        last = session.scalars(
            select(CreditLedgerEntry)
            .where(CreditLedgerEntry.grant_id == grant.id)
            .order_by(CreditLedgerEntry.id.desc())
            .limit(1)
        ).one()
        key = f"expire|{grant.grant_id}|{last.id}"
        effective_at = max(effective_at, last.effective_at)
    _append(
        session,
        grant,
        "expire",
        remaining,
        key=key,
        effective_at=effective_at,
        note=f"expired unused on {_iso(grant.expires_at)} (breakage)"
        if not ended_before
        else f"returned after its term ended on {_iso(grant.expires_at)}: breakage",
    )
    return True


def _roll_over(session: Session, grant: CreditGrant, *, at: datetime) -> str | None:
    """Move what is left of an expired grant that rolls over to the next term's grant
    (docs/credits.md, "Rollover"): a new grant ``<grant_id>:rollover`` of the same
    customer, subscription, kind, currency, meter, priority and scope holding the rest,
    for the next term (the term's length again, as a calendar difference in the
    subscription's timezone, or the customer's), and a ``rollover`` entry of the grant
    (available -> rolled_over, key ``rollover|G``, at its ``expires_at``). The new grant
    takes effect at the end of the term, or at the end of the last finalized period it
    could pay when that is later (a finalized invoice never changes); it does not roll
    over again. ``at`` is recorded as its creation time. The new grant's id; None when
    nothing was left, or when every period of the next term is finalized already (then
    the caller expires the rest: nothing could ever draw on it)."""
    assert grant.expires_at is not None
    remaining = _balance(session, grant).remaining
    if remaining <= 0:
        return None
    child_id = grant.grant_id + ROLLOVER_SUFFIX
    if len(child_id) > ROLLOVER_ID_MAX + len(ROLLOVER_SUFFIX):
        # Loaded before rollover was built (docs/credits.md, "Not yet"); load refuses it.
        raise LedgerError(
            f"credit grant {grant.grant_id} rolls over, but its next term's grant id"
            f" {child_id!r} would be longer than {ROLLOVER_ID_MAX + len(ROLLOVER_SUFFIX)}"
            " characters, the longest grant id: its rest cannot roll over"
        )
    if session.scalar(select(CreditGrant.id).where(CreditGrant.grant_id == child_id)) is not None:
        # Value came back to the grant after its rollover (a consumption returned after
        # the term ended): the next term's grant never changes, so the caller books it as
        # breakage (_expire; docs/credits.md, "Value returned after a term").
        return None
    tz = grant.subscription.timezone if grant.subscription is not None else grant.customer.timezone
    start, end = _next_term(grant.effective_from, grant.expires_at, tz)
    # A grant pays periods not invoiced yet (load_grants): after a term that ended inside
    # a period finalized since, the next term's grant takes effect when that period ends.
    through = _billed_through(session, grant.customer_id, grant.subscription_id)
    if through is not None and through > start:
        start = through
    if start >= end:
        return None
    child = CreditGrant(
        grant_id=child_id,
        customer_id=grant.customer_id,
        subscription_id=grant.subscription_id,
        kind=grant.kind,
        currency=grant.currency,
        amount=remaining,
        meter=grant.meter,
        priority=grant.priority,
        effective_from=start,
        expires_at=end,
        applies_to=grant.applies_to,
        applies_to_ids=list(grant.applies_to_ids),
        price_paid=_paid_share(grant, remaining),
        # A balance rolls over once: the next term's rest expires (docs/credits.md).
        rollover=False,
        rolled_over_from_id=grant.id,
        created_at=at,
        created_by=ROLLOVER_BY,
        reason=f"rolled over from {grant.grant_id}'s unused balance on"
        f" {grant.expires_at.astimezone(zone(tz)).date().isoformat()}",
    )
    session.add(child)
    session.flush()
    _append(
        session,
        grant,
        "rollover",
        remaining,
        key=f"rollover|{grant.grant_id}",
        effective_at=grant.expires_at,
        note=f"rolled over unused on {_iso(grant.expires_at)} to {child_id}",
    )
    _append(
        session,
        child,
        "grant",
        remaining,
        key=f"grant|{child_id}",
        effective_at=child.effective_from,
        note=f"granted by {ROLLOVER_BY}: {child.reason}",
    )
    return child_id


def _next_term(start: datetime, end: datetime, tz: str) -> tuple[datetime, datetime]:
    """The term after [start, end): from ``end``, as long again as a calendar difference
    of local wall times in ``tz`` (a year from a local midnight ends on a local midnight
    a year later, whatever the daylight saving time between)."""
    here = zone(tz)
    local_start = start.astimezone(here).replace(tzinfo=None)
    local_end = end.astimezone(here).replace(tzinfo=None)
    length = relativedelta(local_end, local_start)
    # fold=0: a wall time in a spring-forward gap takes the offset before it (as
    # billing.periods.local_midnight does).
    after = (local_end + length).replace(tzinfo=here).astimezone(UTC)
    if after <= end:
        # The wall clock went back inside the term (a term within a fall-back night's
        # repeated hour: 01:50 EDT to 01:10 EST is 20 minutes, -40 of wall time): its
        # calendar length is not positive, so the next term is as long in elapsed time.
        after = end + (end - start)
    return end, after


def _paid_share(grant: CreditGrant, rolled: Decimal) -> Decimal | None:
    """The part of a paid commitment's price the rolled balance carries: price_paid x
    rolled / granted, rounded half-up to the currency's minor unit; None for a grant
    with no price (promotional)."""
    if grant.price_paid is None:
        return None
    with localcontext(prec=100):  # units below 10^29, prices below 2^63 minor units
        share = grant.price_paid * rolled / grant.amount
        return share.quantize(minor_unit(grant.currency), rounding=ROUND_HALF_UP)


def record_consumption(
    session: Session,
    grant_id: str,
    *,
    amount: Decimal,
    value_minor: int,
    invoice_line_id: int,
    effective_at: datetime,
    key: str,
) -> int:
    """Record that a finalized invoice line (``invoice_line_id``, worth minus
    ``value_minor``) was paid by ``amount`` of the grant (its unit). Idempotent by
    ``key``. Raises BalanceError when the grant holds less. The entry's id."""
    bulk.lock_ledger_writes(session)
    grant = _grant(session, grant_id, lock=True)
    entry = _append(
        session,
        grant,
        "consume",
        amount,
        key=key,
        effective_at=effective_at,
        note=f"pays invoice line {invoice_line_id}",
        value_minor=value_minor,
        invoice_line_id=invoice_line_id,
    )
    return entry.id


def reverse_consumption(
    session: Session,
    entry_id: int,
    *,
    amount: Decimal | None = None,
    effective_at: datetime,
    key: str,
    note: str,
    invoice_line_id: int | None = None,
) -> int:
    """Return (all, or ``amount`` of) what consumption entry ``entry_id`` took: its
    invoice was voided, or a correction lowered the line it paid. Idempotent by ``key``.
    Raises BalanceError when more would return than the entry consumed. The entry's id."""
    bulk.lock_ledger_writes(session)
    consumed = session.get(CreditLedgerEntry, entry_id)
    if consumed is None or consumed.kind != "consume":
        raise NotFound(f"no consumption entry {entry_id} in the credit ledger")
    grant = session.get(CreditGrant, consumed.grant_id)
    assert grant is not None
    already = sum(
        session.scalars(
            select(CreditLedgerEntry.amount).where(CreditLedgerEntry.reverses_entry_id == entry_id)
        ),
        Decimal(0),
    )
    back = consumed.amount - already if amount is None else amount
    if back > consumed.amount - already:
        raise BalanceError(
            f"cannot return {back} of consumption entry {entry_id}: it consumed"
            f" {consumed.amount}, of which {already} was returned already"
        )
    assert consumed.value_minor is not None
    value = _share_minor(consumed.value_minor, back, consumed.amount)
    entry = _append(
        session,
        grant,
        "reverse",
        back,
        key=key,
        effective_at=effective_at,
        note=note,
        value_minor=value,
        invoice_line_id=invoice_line_id
        if invoice_line_id is not None
        else consumed.invoice_line_id,
        reverses=entry_id,
    )
    return entry.id


def _share_minor(value_minor: int, part: Decimal, whole: Decimal) -> int:
    """The minor units ``part`` of ``whole`` is worth (rounded half-up; all of it: the
    whole value)."""
    if part == whole:
        return value_minor
    return int((Decimal(value_minor) * part / whole).to_integral_value(rounding=ROUND_HALF_UP))


# --- reading -------------------------------------------------------------------------


def require_customer(session: Session, customer: str) -> None:
    """NotFound (the command line's exit code 3) for a customer external id the ledger
    does not hold."""
    if session.scalar(select(Customer.id).where(Customer.external_id == customer)) is None:
        raise NotFound(f"no customer {customer!r} in the ledger: load it first")


def grant_views(
    session: Session,
    *,
    customer: str | None = None,
    grant_id: str | None = None,
    as_of: datetime | None = None,
) -> list[GrantView]:
    """Grants (of one customer, or one grant) with their accounts, counting the entries
    effective up to ``as_of`` (all without it), in grant order. NotFound for a customer
    the ledger does not hold."""
    if customer is not None:
        require_customer(session, customer)
    stmt = _grants_query()
    if customer is not None:
        stmt = stmt.where(Customer.external_id == customer)
    if grant_id is not None:
        stmt = stmt.where(CreditGrant.grant_id == grant_id)
    out = []
    for grant, cust, sub, parent, child in session.execute(stmt).all():
        moves = [
            m
            for m, at in zip(
                _movements(session, grant.id), _effective(session, grant.id), strict=True
            )
            if as_of is None or at <= as_of
        ]
        # As of a moment before its grant entry the grant had issued nothing: granted 0,
        # so that granted = consumed + expired + voided + rolled_over + remaining holds
        # then too.
        issued = grant.amount if any(m.kind == "grant" for m in moves) else Decimal(0)
        out.append(_view(grant, cust, sub, replay(issued, moves).balance, parent, child))
    if grant_id is not None and not out:
        raise NotFound(f"no credit grant {grant_id!r} in the ledger")
    return out


# The outer joins' ids are None where there is nothing to join (SQLAlchemy types them str).
def _grants_query() -> Select[CreditGrant, str, str, str, str]:
    """Grants with their customer's and subscription's external ids, the grant whose
    unused balance each holds (it rolled over into it) and the grant it rolled over to,
    in grant order."""
    parent = aliased(CreditGrant)
    child = aliased(CreditGrant)
    return (
        select(
            CreditGrant,
            Customer.external_id,
            Subscription.external_id,
            parent.grant_id,
            child.grant_id,
        )
        .join(Customer, Customer.id == CreditGrant.customer_id)
        .outerjoin(Subscription, Subscription.id == CreditGrant.subscription_id)
        .outerjoin(parent, parent.id == CreditGrant.rolled_over_from_id)
        # A grant rolls over once, to one grant: at most one row each.
        .outerjoin(child, child.rolled_over_from_id == CreditGrant.id)
        .order_by(CreditGrant.id)
    )


def _effective(session: Session, grant_pk: int) -> list[datetime]:
    return list(
        session.scalars(
            select(CreditLedgerEntry.effective_at)
            .where(CreditLedgerEntry.grant_id == grant_pk)
            .order_by(CreditLedgerEntry.id)
        )
    )


def _view(
    grant: CreditGrant,
    customer: str,
    subscription: str | None,
    balance: Balance,
    rolled_over_from: str | None = None,
    rolled_over_to: str | None = None,
) -> GrantView:
    return GrantView(
        id=grant.id,
        grant_id=grant.grant_id,
        customer=customer,
        subscription=subscription,
        kind=grant.kind,
        currency=grant.currency,
        meter=grant.meter,
        priority=grant.priority,
        effective_from=grant.effective_from,
        expires_at=grant.expires_at,
        applies_to=grant.applies_to,
        applies_to_ids=tuple(grant.applies_to_ids),
        price_paid=grant.price_paid,
        rollover=grant.rollover,
        created_at=grant.created_at,
        created_by=grant.created_by,
        reason=grant.reason,
        voided_at=grant.voided_at,
        voided_by=grant.voided_by,
        void_reason=grant.void_reason,
        balance=balance,
        rolled_over_from=rolled_over_from,
        rolled_over_to=rolled_over_to,
    )


@dataclass(frozen=True, slots=True)
class GrantAudit:
    """One grant's ledger replayed for reconcile: the grant and its replay (balance and
    problems)."""

    grant: GrantView
    replay: Replay


def audit_grants(
    session: Session, *, customer: str | None = None, start: datetime, end: datetime
) -> list[GrantAudit]:
    """Every grant (of a customer) whose life overlaps [start, end) or that has an entry
    effective in it, replayed from its entries. For reconcile (DESIGN.md invariant 9)."""
    stmt = _grants_query().where(
        CreditGrant.effective_from < end,
        (CreditGrant.expires_at.is_(None))
        | (CreditGrant.expires_at >= start)
        | CreditGrant.id.in_(
            select(CreditLedgerEntry.grant_id).where(
                CreditLedgerEntry.effective_at >= start, CreditLedgerEntry.effective_at < end
            )
        ),
    )
    if customer is not None:
        stmt = stmt.where(Customer.external_id == customer)
    out = []
    for grant, cust, sub, parent, child in session.execute(stmt).all():
        result = replay(grant.amount, _movements(session, grant.id))
        out.append(GrantAudit(_view(grant, cust, sub, result.balance, parent, child), result))
    return out
