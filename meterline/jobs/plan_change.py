"""Plan changes by hand: what `meterline subscriptions change|changes` runs
(docs/rating.md, "Plan changes").

`change` checks the change (billing.plan_changes.check_change: inside the
subscription's span, a plan priced in its currency, no finalized period touched, after
the last recorded change), then either rates the period it falls in with the change
applied and returns that invoice (`preview`: nothing is written, the ledger session is
read-only), or records it. Errors: UnknownSubscription (exit code 3), PlanChangeRefused
(2), PlanChangeConflict (4: a change at the same instant recorded by someone else while
this one was checked; the subscription's row is locked while a change is checked and
written, so on PostgreSQL the second of two waits and is refused instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing.charges import ChargeLine
from billing.errors import UnknownSubscription
from billing.models import Customer, Subscription
from billing.periods import Period, iso_utc, subscription_period_containing
from billing.plan_changes import (
    ChangeRequest,
    PlanChange,
    PlanChangeConflict,
    changes_of,
    check_change,
    record_change,
)
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.due import Due
from meterline.jobs.rate import WarehouseQuantities, rate_periods, read_pricebook
from meterline.settings import Settings, settings

__all__ = ["ChangeRequest", "ChangeResult", "PlanChangeConflict", "change", "list_changes"]


@dataclass
class ChangeResult:
    """A change checked and recorded (or previewed): the change, the period it falls in,
    and for a preview the lines of that period's invoice rated with it (or `error`, why
    the period cannot be rated)."""

    subscription: str
    change: PlanChange
    period: Period
    recorded: bool
    lines: list[ChargeLine] = field(default_factory=list)
    error: str | None = None
    currency: str = ""

    def to_json(self) -> dict[str, Any]:
        doc = _change_doc(self.change)
        doc.update(
            subscription=self.subscription,
            period_start=iso_utc(self.period.start),
            period_end=iso_utc(self.period.end),
            recorded=self.recorded,
        )
        if not self.recorded:
            doc["invoice"] = {
                "lines": [_line_doc(line) for line in self.lines],
                "currency": self.currency,
                "total": str(sum((line.amount for line in self.lines), Decimal(0))),
                "error": self.error,
            }
        return doc


def _change_doc(change: PlanChange) -> dict[str, Any]:
    return {
        "at": iso_utc(change.at),
        "from_plan": change.from_plan,
        "to_plan": change.to_plan,
        "tiers": change.tiers,
        "direction": change.direction,
        "changed_by": change.changed_by,
        "reason": change.reason,
        "created_at": iso_utc(change.created_at) if change.created_at else None,
    }


def _line_doc(line: ChargeLine) -> dict[str, Any]:
    return {
        "price_id": line.price_id,
        "price_version": line.price_version,
        "kind": line.kind,
        "group": line.group,
        "quantity": str(line.quantity),
        "amount": str(line.amount),
        "currency": line.currency,
        "description": line.description,
    }


def _subscription(
    session: Session, external_id: str, *, lock: bool = False
) -> tuple[Subscription, str]:
    """The subscription and its customer's external id; with ``lock`` its row is locked
    for the transaction (PostgreSQL), so two changes of it are checked one after the
    other and the second sees the first."""
    query = (
        select(Subscription, Customer.external_id)
        .join(Customer)
        .where(Subscription.external_id == external_id)
        .options(selectinload(Subscription.discounts))
    )
    if lock:
        query = query.with_for_update(of=Subscription)
    row = session.execute(query).first()
    if row is None:
        raise UnknownSubscription(
            f"no subscription {external_id!r}: `meterline customers load` creates them"
        )
    return row[0], row[1]


def change(
    request: ChangeRequest, *, preview: bool = False, config: Settings | None = None
) -> ChangeResult:
    """Check the change and record it, or (`preview`) rate the period it falls in with it
    and write nothing. Raises UnknownSubscription, PlanChangeRefused, and
    PlanChangeConflict when a change at the same instant was recorded meanwhile."""
    config = config or settings()
    # The meters, before this session: reading the catalog opens the ledger itself.
    meters = meter_catalog(config) if preview else None
    with ledger_session(config, write=not preview) as session:
        sub, customer = _subscription(session, request.subscription, lock=not preview)
        checked = check_change(session, sub, request)
        period = subscription_period_containing(sub, checked.at)
        assert period is not None  # check_change refuses an instant outside the span
        if not preview:
            row = record_change(session, sub, checked, datetime.now(UTC))
            recorded = replace(checked, created_at=row.created_at)
            return ChangeResult(sub.external_id, recorded, period, recorded=True)
        assert meters is not None
        prices = read_pricebook(session, meters).with_change(sub.id, checked)
        with open_warehouse(config) as warehouse:
            due = Due(sub, customer, period)
            rating = rate_periods(prices, [due], WarehouseQuantities(warehouse, meters))[due]
        return ChangeResult(
            sub.external_id, checked, period, False, list(rating.lines), rating.error, sub.currency
        )


def list_changes(subscription: str, *, config: Settings | None = None) -> list[dict[str, Any]]:
    """The subscription's recorded plan changes, in time order. UnknownSubscription (3)."""
    with ledger_session(config) as session:
        sub, _ = _subscription(session, subscription)
        return [_change_doc(c) for c in changes_of(session, [sub.id]).get(sub.id, [])]
