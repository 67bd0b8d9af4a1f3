"""Plan changes of subscriptions: the plan in effect at an instant, recording a change.

Rules (docs/rating.md, "Plan changes"):
- ``subscriptions.plan_id`` is the plan the subscription started on (the customers
  file's); the plan in effect at an instant is the ``to_plan`` of the latest change at or
  before it. Changes are recorded in time order: a change before the latest recorded one
  would rewrite the plan its later periods were rated with.
- A change falls inside the subscription's active span, moves to another plan priced in
  the subscription's currency (a change never changes the currency), and never touches
  a finalized period: the period containing the instant (and every later one) must not
  have a finalized invoice, because a finalized invoice is never edited (invariant 5).
- Whether it is an upgrade, a downgrade or lateral is what the person says, never
  inferred from the prices; who made it and why are recorded with it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.customers.rows import by_problem
from billing.errors import LedgerError
from billing.models import (
    PLAN_CHANGE_DIRECTIONS,
    PLAN_CHANGE_TIERS,
    Invoice,
    Plan,
    PriceVersion,
    Subscription,
    SubscriptionPlanChange,
)
from billing.periods import Period, iso_utc, local_midnight, subscription_period_containing

# The unique key of (subscription_id, at) as PostgreSQL and SQLite name it in a violation.
_SAME_INSTANT = re.compile(
    r"uq_subscription_plan_changes_at|subscription_plan_changes\.subscription_id,"
    r" subscription_plan_changes\.at"
)


class PlanChangeRefused(LedgerError):
    """A plan change the rules refuse; the message says what to do instead."""


class PlanChangeConflict(LedgerError):
    """Another plan change of the subscription at the same instant was recorded while
    this one was checked (two people at once): nothing of this one is written. The
    command line's exit code 4 (look at the changes, then try again)."""


@dataclass(frozen=True, slots=True)
class PlanChange:
    """One plan change as rating needs it: at `at` (aware UTC) the subscription moves
    from `from_plan` to `to_plan`; `tiers` is "continue" or "restart"."""

    at: datetime
    from_plan: str
    to_plan: str
    tiers: str
    direction: str = "lateral"
    changed_by: str = ""
    reason: str | None = None
    created_at: datetime | None = None


def _value(row: SubscriptionPlanChange) -> PlanChange:
    return PlanChange(
        row.at,
        row.from_plan,
        row.to_plan,
        row.tiers,
        row.direction,
        row.changed_by,
        row.reason,
        row.created_at,
    )


def changes_of(session: Session, subscription_ids: Iterable[int]) -> dict[int, list[PlanChange]]:
    """The recorded plan changes per subscription id, in time order (one query)."""
    ids = sorted(set(subscription_ids))
    out: dict[int, list[PlanChange]] = defaultdict(list)
    if not ids:
        return out
    rows = session.scalars(
        select(SubscriptionPlanChange)
        .where(SubscriptionPlanChange.subscription_id.in_(ids))
        .order_by(SubscriptionPlanChange.subscription_id, SubscriptionPlanChange.at)
    )
    for row in rows:
        out[row.subscription_id].append(_value(row))
    return out


def all_changes(session: Session) -> dict[int, list[PlanChange]]:
    """Every recorded plan change per subscription id, in time order (one query)."""
    out: dict[int, list[PlanChange]] = defaultdict(list)
    rows = session.scalars(
        select(SubscriptionPlanChange).order_by(
            SubscriptionPlanChange.subscription_id, SubscriptionPlanChange.at
        )
    )
    for row in rows:
        out[row.subscription_id].append(_value(row))
    return out


def plan_at(first_plan: str, changes: Sequence[PlanChange], instant: datetime) -> str:
    """The plan in effect at `instant`: the latest change's at or before it, else the
    plan the subscription started on."""
    plan = first_plan
    for change in changes:
        if change.at <= instant:
            plan = change.to_plan
    return plan


def plan_spans(
    first_plan: str, changes: Sequence[PlanChange], period: Period
) -> list[tuple[str, datetime, datetime, str]]:
    """The period split at the changes inside it: (plan, start, end, tiers) in time
    order, `tiers` being the choice of the change that starts the span ("continue" for
    the first span)."""
    inside = [c for c in changes if period.start < c.at < period.end]
    spans: list[tuple[str, datetime, datetime, str]] = []
    begin, plan, tiers = period.start, plan_at(first_plan, changes, period.start), "continue"
    for change in inside:
        spans.append((plan, begin, change.at, tiers))
        begin, plan, tiers = change.at, change.to_plan, change.tiers
    spans.append((plan, begin, period.end, tiers))
    return spans


def plans_of(session: Session, subscription_id: int) -> list[str]:
    """Every plan a subscription has changed to or from (not its first plan only)."""
    rows = session.execute(
        select(SubscriptionPlanChange.from_plan, SubscriptionPlanChange.to_plan).where(
            SubscriptionPlanChange.subscription_id == subscription_id
        )
    )
    return sorted({plan for pair in rows for plan in pair})


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """What a person asks for: move `subscription` (its external id) to `to_plan` at
    `at` (an aware instant, or a date: its midnight in the subscription's timezone, as a
    credit grant's date is), with the tiers choice, the direction they name, who and
    why."""

    subscription: str
    at: date | datetime
    to_plan: str
    tiers: str
    direction: str
    changed_by: str
    reason: str | None = None


def resolve_at(at: date | datetime, sub: Subscription) -> datetime:
    """The instant a change's `at` names: a date is midnight in the subscription's
    timezone (billing/credits/rows.py reads a grant's date the same way); an instant is
    itself, in UTC."""
    if isinstance(at, datetime):
        return at.astimezone(UTC)
    return local_midnight(at, sub.timezone)


def check_change(session: Session, sub: Subscription, request: ChangeRequest) -> PlanChange:
    """The change the request makes, or PlanChangeRefused saying what to do instead
    (module docstring). Reads the plans, prices, changes and invoices; writes nothing."""
    if request.tiers not in PLAN_CHANGE_TIERS:
        raise PlanChangeRefused(
            f"tiers {request.tiers!r} is not one of {', '.join(PLAN_CHANGE_TIERS)}: give one"
        )
    if request.direction not in PLAN_CHANGE_DIRECTIONS:
        raise PlanChangeRefused(
            f"direction {request.direction!r} is not one of"
            f" {', '.join(PLAN_CHANGE_DIRECTIONS)}: give one"
        )
    if not request.changed_by.strip():
        raise PlanChangeRefused("say who makes the change (--by NAME)")
    if problem := by_problem(request.changed_by):
        raise PlanChangeRefused(problem)
    at = resolve_at(request.at, sub)
    period = subscription_period_containing(sub, at)
    if period is None or at == local_midnight(sub.start_date, sub.timezone):
        raise PlanChangeRefused(
            f"{iso_utc(at)} is not inside subscription {sub.external_id}'s active span"
            " (after its start, before its end): pick an instant while it runs"
        )
    changes = changes_of(session, [sub.id]).get(sub.id, [])
    if changes and at <= changes[-1].at:
        raise PlanChangeRefused(
            f"subscription {sub.external_id} already changes plan at {iso_utc(changes[-1].at)};"
            " changes are recorded in time order: pick a later instant"
        )
    from_plan = plan_at(sub.plan_id, changes, at)
    if request.to_plan == from_plan:
        raise PlanChangeRefused(
            f"subscription {sub.external_id} is on plan {from_plan} then: name another plan,"
            f" or see its plans over time with `meterline subscriptions changes {sub.external_id}`"
        )
    if session.get(Plan, request.to_plan) is None:
        known = ", ".join(sorted(session.scalars(select(Plan.id)))) or "none"
        raise PlanChangeRefused(
            f"plan {request.to_plan!r} is not in the loaded catalog (its plans: {known}):"
            " name one of them, or add the plan to the catalog and `meterline catalog load` it"
        )
    priced = set(
        session.scalars(
            select(PriceVersion.currency).where(PriceVersion.plan_id == request.to_plan)
        )
    )
    if sub.currency not in priced:
        raise PlanChangeRefused(
            f"plan {request.to_plan} has no price in {sub.currency}, the currency of"
            f" subscription {sub.external_id} (it is priced in"
            f" {', '.join(sorted(priced)) or 'none'}): a plan change keeps the currency;"
            " pick a plan priced in it"
        )
    finalized = session.scalars(
        select(Invoice.period_start)
        .where(
            Invoice.subscription_id == sub.id,
            Invoice.status == "finalized",
            Invoice.period_end > period.start,
        )
        .order_by(Invoice.period_start)
        .limit(1)
    ).first()
    if finalized is not None:
        raise PlanChangeRefused(
            f"the period of subscription {sub.external_id} from {iso_utc(finalized)} is"
            " finalized and a finalized invoice is never edited: change the plan at or after"
            " the end of its last finalized period"
        )
    return PlanChange(
        at,
        from_plan,
        request.to_plan,
        request.tiers,
        request.direction,
        request.changed_by,
        request.reason,
    )


def record_change(
    session: Session, sub: Subscription, change: PlanChange, created_at: datetime
) -> SubscriptionPlanChange:
    """Write the checked change (`check_change`); the caller commits."""
    row = SubscriptionPlanChange(
        subscription_id=sub.id,
        at=change.at,
        from_plan=change.from_plan,
        to_plan=change.to_plan,
        tiers=change.tiers,
        direction=change.direction,
        changed_by=change.changed_by,
        reason=change.reason,
        created_at=created_at,
    )
    name = sub.external_id  # read now: a failed flush expires the session's objects
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        # The unique (subscription, at) key: a change at this instant committed after
        # check_change read the changes. Any other integrity error is a bug.
        if not _SAME_INSTANT.search(str(exc.orig)):
            raise
        raise PlanChangeConflict(
            f"another plan change of subscription {name} at {iso_utc(change.at)}"
            " was recorded while this one was checked; nothing written: see"
            f" `meterline subscriptions changes {name}`, then pick a later"
            " instant if the change is still wanted"
        ) from None
    return row
