"""Spend and usage alerts: what `meterline alerts add|list|history|evaluate` and the
usage_rollup DAG's ``alerts`` task (``evaluate_after_rollup``) run (docs/alerts.md).

``evaluate_alerts(as_of)`` reads, for every customer with an alert (its own, or its
plan's), the current period's usage as of ``as_of`` (and the period before it, as of its
end, while close may still finalize it: ``settling_period``; never a period whose invoice
is finalized) with the job that answers `meterline usage` (meterline.jobs.usage.usage_of:
rated by close's own code over the rollup and the raw events not rolled up yet), compares
each alert's measure with its thresholds (billing.alerts.evaluate: pure), and writes what
must be announced in **one ledger transaction**: each ``alert.fired`` /
``alert.retracted`` outbox event (billing.outbox.record_alert, delivered by the webhook
sink) together with the ``alert_states`` row that records it. The states' unique key
(alert, subscription, threshold, period start) makes each announcement happen once: a
second evaluation, or a concurrent one, writes nothing new (the concurrent one fails on
the key and writes nothing at all).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from billing.alerts import AlertRule, StateKey, evaluate, threshold_text
from billing.bulk import MAX_AMOUNT_MINOR
from billing.catalog import current_catalog
from billing.customers.rows import decimal_places
from billing.errors import LedgerError, NotFound
from billing.models import (
    Alert,
    AlertState,
    Customer,
    Invoice,
    Plan,
    Subscription,
    SubscriptionPlanChange,
)
from billing.money import CurrencyError, exponent
from billing.outbox import record_alert
from billing.periods import Period, SubscriptionTerms, subscription_period_containing
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.output import format_minor, format_quantity
from meterline.settings import Settings, settings

if TYPE_CHECKING:
    from meterline.jobs.usage import SubscriptionUsage

# An instant just before another: datetimes are whole microseconds.
_TICK = timedelta(microseconds=1)


class AlertRefused(LedgerError):
    """An alert that cannot be created as asked (exit code 2)."""


class AlertView(BaseModel):
    """An alert as `meterline alerts list` shows it. Spend thresholds in minor units."""

    model_config = ConfigDict(frozen=True)

    alert_id: int
    customer: str | None
    plan: str | None
    metric: Literal["usage", "spend"]
    meter: str | None
    currency: str | None
    thresholds: tuple[str, ...]
    created_at: datetime


class StateView(BaseModel):
    """One announced threshold (`meterline alerts history`)."""

    model_config = ConfigDict(frozen=True)

    alert_id: int
    subscription: str
    customer: str
    threshold: str
    period_start: datetime
    period_end: datetime
    state: Literal["fired", "retracted"]
    fired_amount: str
    fired_at: datetime
    fired_event_id: int
    retracted_amount: str | None
    retracted_at: datetime | None
    retracted_event_id: int | None


@dataclass
class EvaluationReport:
    """What one evaluation did."""

    as_of: datetime
    customers: int = 0
    subscriptions: int = 0
    fired: int = 0
    retracted: int = 0
    #: Subscriptions whose current period could not be rated (not evaluated).
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "customers": self.customers,
            "subscriptions": self.subscriptions,
            "fired": self.fired,
            "retracted": self.retracted,
            "errors": list(self.errors),
        }

    def summary(self) -> str:
        text = (
            f"alerts as of {self.as_of.isoformat()}: {self.customers} customer(s),"
            f" {self.subscriptions} subscription period(s) evaluated; {self.fired} fired,"
            f" {self.retracted} retracted"
        )
        if self.errors:
            text += f"; {len(self.errors)} not evaluated (could not be rated)"
        return text


# --- add, list, history -------------------------------------------------------------------


#: A threshold as written: plain decimal notation in ASCII digits, an exponent allowed
#: (500, 500.00, 1e3); not Python's wider reading (1_000, Arabic-Indic digits, NaN).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
#: Characters of a threshold as written (a longer text is no threshold anyone means).
THRESHOLD_CHARS = 60
#: Decimal places of a usage threshold: a meter's values have at most 9
#: (sql/queries/ingest/validate.sql), and so has every quantity (Decimal(38, 9)).
USAGE_PLACES = 9
#: A usage quantity is below 10^29: the warehouse's sums are Decimal(38, 9).
USAGE_LIMIT = Decimal(10) ** 29


def _shown(text: str) -> str:
    return repr(text if len(text) <= THRESHOLD_CHARS else text[: THRESHOLD_CHARS - 3] + "...")


def parse_threshold(text: str, metric: str, currency: str | None) -> Decimal:
    """One threshold as given (usage: a quantity; spend: an amount in major units, e.g.
    500.00) -> what is stored (usage: the quantity; spend: integer minor units).

    Rules: plain decimal notation (``_NUMBER``), more than 0; a usage threshold has at
    most 9 decimal places and is below 10^29 (USAGE_PLACES, USAGE_LIMIT: what a quantity
    can be); a spend threshold has at most the currency's minor-unit decimals (ISO 4217)
    and is at most MAX_AMOUNT_MINOR minor units (the ledger's amounts). Magnitudes are
    judged from the exponent before any arithmetic (1e999999999 would overflow).
    Raises AlertRefused."""
    value_text = text.strip()
    if len(value_text) > THRESHOLD_CHARS or not _NUMBER.fullmatch(value_text):
        raise AlertRefused(
            f"threshold {_shown(text)} is not a number: write it in decimals, e.g. 500 or 1250.50"
        )
    value = Decimal(value_text)
    if value <= 0:
        raise AlertRefused(f"threshold {_shown(text)} must be more than 0")
    places = decimal_places(value)
    if metric == "usage":
        if places > USAGE_PLACES:
            raise AlertRefused(
                f"threshold {_shown(text)} has {places} decimal places: a usage quantity has"
                f" at most {USAGE_PLACES}"
            )
        if value.adjusted() >= 29 or value >= USAGE_LIMIT:
            raise AlertRefused(
                f"threshold {_shown(text)} is beyond any usage quantity (below 10^29): give a"
                " smaller one"
            )
        return value
    assert currency is not None
    digits = exponent(currency)
    if places > digits:
        raise AlertRefused(
            f"threshold {_shown(text)} has more decimals than {currency}'s minor unit ({digits})"
        )
    if value.adjusted() + digits > 19 or value.scaleb(digits) > MAX_AMOUNT_MINOR:
        raise AlertRefused(
            f"threshold {_shown(text)} is more than the ledger's largest amount"
            f" ({MAX_AMOUNT_MINOR:,} minor units of {currency}): give a smaller one"
        )
    return value.scaleb(digits)


def stored_threshold_problem(thresholds: Any) -> str | None:
    """Why an alert's stored thresholds cannot be evaluated (None when they can): each
    must be decimal text of a number more than 0. An older `alerts add` stored 1e-999999999
    as "0", which failed every evaluation; such an alert is listed as not evaluated."""
    if not isinstance(thresholds, list) or not thresholds:
        return "its thresholds are not a list of numbers; not evaluated"
    for text in thresholds:
        if not isinstance(text, str) or not _NUMBER.fullmatch(text) or Decimal(text) <= 0:
            return (
                f"its threshold {text!r} is not a number more than 0 (stored by an older"
                " `alerts add`); not evaluated"
            )
    return None


def parse_thresholds(texts: list[str], metric: str, currency: str | None) -> tuple[Decimal, ...]:
    """Thresholds as given -> what is stored, each by ``parse_threshold``'s rules, in
    canonical form (100, 100.0 and 1E+2 are one), sorted, each once. Raises
    AlertRefused."""
    if not texts:
        raise AlertRefused("an alert needs at least one threshold (--threshold)")
    out = {Decimal(threshold_text(parse_threshold(t, metric, currency))) for t in texts}
    return tuple(sorted(out))


def add_alert(
    *,
    customer: str | None,
    plan: str | None,
    meter: str | None,
    currency: str | None,
    thresholds: list[str],
    created_at: datetime,
    config: Settings | None = None,
) -> AlertView:
    """Create an alert for ``customer`` or every customer on ``plan``: on the usage of
    ``meter`` or on spend in ``currency`` (one of the two), thresholds by
    ``parse_threshold``'s rules. Raises AlertRefused (exit 2; also for a threshold another
    alert of the same customer or plan already watches on the same meter or currency),
    NotFound for an unknown customer, plan or meter (exit 3)."""
    config = config or settings()
    if (customer is None) == (plan is None):
        raise AlertRefused("name either --customer or --plan")
    if (meter is None) == (currency is None):
        raise AlertRefused("name either --meter (a usage alert) or --currency (a spend alert)")
    metric = "usage" if meter is not None else "spend"
    if currency is not None:
        currency = currency.upper()
        try:
            exponent(currency)
        except CurrencyError as exc:
            raise AlertRefused(str(exc)) from None
    values = parse_thresholds(thresholds, metric, currency)
    if meter is not None and meter not in meter_catalog(config).meters:
        raise NotFound(f"no meter {meter!r} in the catalog")
    with ledger_session(config, write=True) as session:
        customer_id = None
        if customer is not None:
            customer_id = session.scalar(
                select(Customer.id).where(Customer.external_id == customer)
            )
            if customer_id is None:
                raise NotFound(f"no customer {customer!r} in the ledger")
        if plan is not None and session.get(Plan, plan) is None:
            raise NotFound(f"no plan {plan!r} in the ledger")
        texts = [threshold_text(v) for v in values]
        _refuse_repeats(session, customer_id, plan, metric, meter, currency, texts)
        alert = Alert(
            customer_id=customer_id,
            plan_id=plan,
            metric=metric,
            meter=meter,
            currency=currency,
            thresholds=texts,
            created_at=created_at.astimezone(UTC),
        )
        session.add(alert)
        session.flush()
        return AlertView(
            alert_id=alert.id,
            customer=customer,
            plan=plan,
            metric=alert.metric,  # type: ignore[arg-type]
            meter=meter,
            currency=currency,
            thresholds=tuple(alert.thresholds),
            created_at=alert.created_at,
        )


def _refuse_repeats(
    session: Session,
    customer_id: int | None,
    plan: str | None,
    metric: str,
    meter: str | None,
    currency: str | None,
    thresholds: list[str],
) -> None:
    """AlertRefused when another alert of the same customer (or plan) already watches
    one of ``thresholds`` of the same meter (or currency): each would be announced twice
    per period, once by each alert."""
    same = select(Alert).where(
        Alert.metric == metric,
        Alert.customer_id == customer_id if customer_id is not None else Alert.plan_id == plan,
        Alert.meter == meter if meter is not None else Alert.currency == currency,
    )
    wanted = set(thresholds)
    for other in session.scalars(same.order_by(Alert.id)):
        repeated = sorted(wanted & set(other.thresholds), key=Decimal)
        if repeated:
            shown = [
                format_minor(int(Decimal(t)), currency) if currency else format_quantity(t)
                for t in repeated
            ]
            raise AlertRefused(
                f"alert {other.id} already watches {meter or 'spend'} at {', '.join(shown)}"
                f" for this {'customer' if customer_id else 'plan'}: each would be announced"
                " twice; give other thresholds (`meterline alerts list`)"
            )


def _views(session: Session, alerts: list[Alert]) -> list[AlertView]:
    names = dict(
        session.execute(
            select(Customer.id, Customer.external_id).where(
                Customer.id.in_({a.customer_id for a in alerts if a.customer_id is not None})
            )
        ).all()
    )
    return [
        AlertView(
            alert_id=a.id,
            customer=names.get(a.customer_id) if a.customer_id is not None else None,
            plan=a.plan_id,
            metric=a.metric,  # type: ignore[arg-type]
            meter=a.meter,
            currency=a.currency,
            thresholds=tuple(a.thresholds),
            created_at=a.created_at,
        )
        for a in alerts
    ]


def list_alerts(*, customer: str | None = None, config: Settings | None = None) -> list[AlertView]:
    """Every alert (only ``customer``'s and its plans' when given)."""
    with ledger_session(config or settings()) as session:
        query = select(Alert).order_by(Alert.id)
        if customer is not None:
            found = session.scalar(select(Customer.id).where(Customer.external_id == customer))
            if found is None:
                raise NotFound(f"no customer {customer!r} in the ledger")
            plans = select(Subscription.plan_id).where(Subscription.customer_id == found)
            query = query.where(or_(Alert.customer_id == found, Alert.plan_id.in_(plans)))
        return _views(session, list(session.scalars(query)))


def alert_history(
    *, alert_id: int | None = None, customer: str | None = None, config: Settings | None = None
) -> list[StateView]:
    """What was announced, oldest first (only ``alert_id``'s, ``customer``'s when given).
    Raises NotFound for an unknown alert or customer."""
    with ledger_session(config or settings()) as session:
        query = (
            select(AlertState, Subscription.external_id, Customer.external_id)
            .join(Subscription, Subscription.id == AlertState.subscription_id)
            .join(Customer, Customer.id == Subscription.customer_id)
            .order_by(AlertState.fired_event_id, AlertState.id)
        )
        if alert_id is not None:
            if session.get(Alert, alert_id) is None:
                raise NotFound(f"no alert {alert_id}: `meterline alerts list` shows them")
            query = query.where(AlertState.alert_id == alert_id)
        if customer is not None:
            if session.scalar(select(Customer.id).where(Customer.external_id == customer)) is None:
                raise NotFound(f"no customer {customer!r} in the ledger")
            query = query.where(Customer.external_id == customer)
        return [
            StateView(
                alert_id=s.alert_id,
                subscription=sub,
                customer=cust,
                threshold=s.threshold,
                period_start=s.period_start,
                period_end=s.period_end,
                state=s.state,  # type: ignore[arg-type]
                fired_amount=s.fired_amount,
                fired_at=s.fired_at,
                fired_event_id=s.fired_event_id,
                retracted_amount=s.retracted_amount,
                retracted_at=s.retracted_at,
                retracted_event_id=s.retracted_event_id,
            )
            for s, sub, cust in session.execute(query).all()
        ]


# --- evaluate -----------------------------------------------------------------------------


def measure(alert: Alert, usage: SubscriptionUsage) -> Decimal | None:
    """The amount ``alert`` compares for one subscription's period: the summed quantity of
    its meter over the period (every dimension; the whole window's, also when a plan
    change splits the period: docs/usage-preview.md), or the rated amount in minor units;
    None when the alert does not apply (a spend alert in another currency)."""
    if alert.metric == "usage":
        return sum((m.quantity for m in usage.meters if m.meter == alert.meter), Decimal(0))
    if alert.currency != usage.currency:
        return None
    return Decimal(usage.amount_minor)


def settling_period(
    sub: SubscriptionTerms, usage: SubscriptionUsage, as_of: datetime, grace: timedelta
) -> Period | None:
    """The subscription's period that ended before ``as_of`` and that close may still
    finalize: the one before its current period (or its last, once it ended) when it
    ended less than ``grace`` (METERLINE_FINALIZE_GRACE_HOURS) before ``as_of``; None
    otherwise. Its alerts are evaluated on the whole period until its invoice is
    finalized, as Orb evaluates a closed period's invoice during its grace period
    (docs/alerts.md, "Closed periods")."""
    if usage.status == "current" and usage.period_start is not None:
        ended = usage.period_start
    elif usage.status == "ended" and usage.ended_at is not None:
        ended = usage.ended_at
    else:
        return None
    if not ended < as_of < ended + grace:
        return None
    return subscription_period_containing(sub, ended - _TICK)


def _payload(
    alert: Alert,
    usage: SubscriptionUsage,
    customer: str,
    threshold: Decimal,
    amount: Decimal,
    as_of: datetime,
    computed_through: datetime | None,
    fired_key: str | None,
) -> dict[str, Any]:
    assert usage.period_start is not None and usage.period_end is not None
    doc: dict[str, Any] = {
        "alert_id": alert.id,
        "customer": customer,
        "subscription": usage.subscription,
        "plan": usage.plan,
        "metric": alert.metric,
        "period_start": usage.period_start.astimezone(UTC).isoformat(),
        "period_end": usage.period_end.astimezone(UTC).isoformat(),
        "as_of": as_of.isoformat(),
        "computed_through": None if computed_through is None else computed_through.isoformat(),
    }
    if alert.metric == "usage":
        doc |= {"meter": alert.meter, "threshold": threshold_text(threshold)}
        doc["quantity"] = threshold_text(amount) if amount else "0"
    else:
        doc |= {
            "currency": alert.currency,
            "threshold_minor": int(threshold),
            "amount_minor": int(amount),
        }
    if fired_key is not None:
        doc["retracts"] = fired_key
    return doc


def _key(kind: str, alert_id: int, subscription: str, threshold: Decimal, start: str) -> str:
    return f"{kind}:{alert_id}:{subscription}:{threshold_text(threshold)}:{start}"


@dataclass(frozen=True)
class _Read:
    """One customer's usage read for evaluation: the periods to evaluate, each with the
    instant its numbers are complete up to."""

    customer_id: int
    customer: str
    periods: list[tuple[SubscriptionUsage, datetime | None]]


def evaluate_alerts(as_of: datetime, *, config: Settings | None = None) -> EvaluationReport:
    """Evaluate every alert as of ``as_of`` (module docstring) on each watched
    subscription's current period, and on the period before it while close may still
    finalize it (settling_period; a finalized period is never evaluated again). The usage
    is read first (a read-only session and the warehouse), then everything announced is
    written in one ledger transaction. Without any alert it reads the alerts table once
    and nothing else. Raises ValueError for a naive ``as_of``."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    as_of = as_of.astimezone(UTC)
    config = config or settings()
    report = EvaluationReport(as_of=as_of)
    with ledger_session(config) as session:
        alerts = list(session.scalars(select(Alert).order_by(Alert.id)))
        if not alerts:
            return report
        read = _read_usage(session, alerts, as_of, config)
    with ledger_session(config, write=True) as session:
        alerts = []
        for alert in session.scalars(select(Alert).order_by(Alert.id)):
            problem = stored_threshold_problem(alert.thresholds)
            if problem is None:
                alerts.append(alert)
            else:  # stored by an older `alerts add`: the others are evaluated
                report.errors.append(f"alert {alert.id}: {problem}")
        by_customer: dict[int, list[Alert]] = defaultdict(list)
        by_plan: dict[str, list[Alert]] = defaultdict(list)
        for alert in alerts:
            if alert.customer_id is not None:
                by_customer[alert.customer_id].append(alert)
            elif alert.plan_id is not None:
                by_plan[alert.plan_id].append(alert)
        sub_ids = dict(
            session.execute(
                select(Subscription.external_id, Subscription.id).where(
                    Subscription.customer_id.in_([r.customer_id for r in read])
                )
            ).all()
        )
        for item in read:
            report.customers += 1
            for sub, computed_through in item.periods:
                if sub.error is not None:
                    report.errors.append(f"{sub.subscription}: {sub.error}")
                    continue
                report.subscriptions += 1
                applicable = by_customer.get(item.customer_id, []) + by_plan.get(sub.plan, [])
                _evaluate_one(
                    session,
                    report,
                    applicable,
                    sub,
                    sub_ids[sub.subscription],
                    item.customer,
                    as_of,
                    computed_through,
                )
    return report


def evaluate_after_rollup(
    reports: Sequence[Mapping[str, Any]], *, config: Settings | None = None
) -> EvaluationReport:
    """The usage_rollup DAG's ``alerts`` task: evaluate every alert as of the end of the
    last UTC day the run rolled up (``reports``: the rollup task's, each naming its
    ``day``), the instant the run's asset event gives billing_close. Raises ValueError
    for reports that name no day."""
    from meterline.jobs.rollup import day_end

    days = sorted(date.fromisoformat(str(r["day"])) for r in reports if r.get("day"))
    if not days:
        raise ValueError("the rollup reports name no day: nothing was rolled up")
    return evaluate_alerts(day_end(days[-1]), config=config)


def _read_usage(
    session: Session, alerts: list[Alert], as_of: datetime, config: Settings
) -> list[_Read]:
    """The usage of every watched customer's periods to evaluate (evaluate_alerts)."""
    from meterline.jobs.usage import usage_of  # the warehouse's code: only with alerts

    meters = current_catalog(session).meters  # this session's: SQLite allows one writer
    grace = timedelta(hours=config.finalize_grace_hours)
    customers = _watched(session, alerts)
    subs = {
        s.external_id: s
        for s in session.scalars(
            select(Subscription).where(Subscription.customer_id.in_(list(customers)))
        )
    }
    read: list[_Read] = []
    with open_warehouse(config) as warehouse:
        for customer_id, customer in customers.items():
            usage = usage_of(session, warehouse, meters, customer, as_of, config=config)
            # A finalized period is never evaluated again, also when an earlier instant
            # is asked (a backfill's run): its alerts were final when it was finalized.
            item = _Read(
                customer_id,
                customer,
                [
                    (s, usage.computed_through)
                    for s in usage.subscriptions
                    if s.period_start is not None
                    and not _finalized(session, subs[s.subscription], s.period_start)
                ],
            )
            # Periods that ended and may still be finalized: rated as of their end.
            settling: dict[datetime, set[tuple[str, datetime]]] = defaultdict(set)
            for sub in usage.subscriptions:
                period = settling_period(subs[sub.subscription], sub, as_of, grace)
                if period is not None and not _finalized(
                    session, subs[sub.subscription], period.start
                ):
                    settling[period.end].add((sub.subscription, period.start))
            for end, wanted in sorted(settling.items()):
                ended = usage_of(session, warehouse, meters, customer, end, config=config)
                item.periods.extend(
                    (s, ended.computed_through)
                    for s in ended.subscriptions
                    if s.period_start is not None
                    and (s.subscription, s.period_start.astimezone(UTC)) in wanted
                )
            read.append(item)
    return read


def _finalized(session: Session, sub: Subscription, period_start: datetime) -> bool:
    """Whether the invoice of the subscription's period starting at `period_start` is
    finalized (a finalized invoice is never edited: its alerts are final too)."""
    return (
        session.scalar(
            select(Invoice.id).where(
                Invoice.subscription_id == sub.id,
                Invoice.period_start == period_start.astimezone(UTC),
                Invoice.status == "finalized",
            )
        )
        is not None
    )


def _watched(session: Session, alerts: list[Alert]) -> dict[int, str]:
    """id -> external id of the customers with an alert of their own, or a subscription
    that is or was on an alert's plan (the plan in effect is matched per period)."""
    plans = {a.plan_id for a in alerts if a.plan_id is not None}
    ids = {a.customer_id for a in alerts if a.customer_id is not None}
    if plans:
        ids |= set(
            session.scalars(select(Subscription.customer_id).where(Subscription.plan_id.in_(plans)))
        )
        ids |= set(
            session.scalars(
                select(Subscription.customer_id)
                .join(
                    SubscriptionPlanChange,
                    SubscriptionPlanChange.subscription_id == Subscription.id,
                )
                .where(SubscriptionPlanChange.to_plan.in_(plans))
            )
        )
    return dict(
        session.execute(
            select(Customer.id, Customer.external_id)
            .where(Customer.id.in_(ids))
            .order_by(Customer.external_id)
        ).all()
    )


def _evaluate_one(
    session: Session,
    report: EvaluationReport,
    alerts: list[Alert],
    usage: SubscriptionUsage,
    subscription_id: int,
    customer: str,
    as_of: datetime,
    computed_through: datetime | None,
) -> None:
    assert usage.period_start is not None and usage.period_end is not None
    start = usage.period_start.astimezone(UTC)
    start_text = start.isoformat()
    for alert in alerts:
        amount = measure(alert, usage)
        if amount is None:
            continue
        rows = {
            Decimal(s.threshold): s
            for s in session.scalars(
                select(AlertState).where(
                    AlertState.alert_id == alert.id,
                    AlertState.subscription_id == subscription_id,
                    AlertState.period_start == start,
                )
            )
        }
        states: dict[StateKey, Any] = {(alert.id, t, start_text): s.state for t, s in rows.items()}
        rule = AlertRule(
            alert_id=alert.id,
            metric=alert.metric,  # type: ignore[arg-type]
            thresholds=tuple(Decimal(t) for t in alert.thresholds),
            subject=alert.meter or alert.currency or "",
        )
        for event in evaluate(rule, period_start=start_text, amount=amount, states=states):
            key = _key(event.kind, alert.id, usage.subscription, event.threshold, start_text)
            fired_key = (
                _key("alert.fired", alert.id, usage.subscription, event.threshold, start_text)
                if event.kind == "alert.retracted"
                else None
            )
            payload = _payload(
                alert, usage, customer, event.threshold, amount, as_of, computed_through, fired_key
            )
            event_id = record_alert(
                session, event.kind, customer=customer, key=key, payload=payload, at=as_of
            )
            if event.kind == "alert.fired":
                session.add(
                    AlertState(
                        alert_id=alert.id,
                        subscription_id=subscription_id,
                        threshold=threshold_text(event.threshold),
                        period_start=start,
                        period_end=usage.period_end.astimezone(UTC),
                        state="fired",
                        fired_amount=threshold_text(amount) if amount else "0",
                        fired_at=as_of,
                        fired_event_id=event_id,
                    )
                )
                report.fired += 1
            else:
                row = rows[event.threshold]
                row.state = "retracted"
                row.retracted_amount = threshold_text(amount) if amount else "0"
                row.retracted_at = as_of
                row.retracted_event_id = event_id
                report.retracted += 1
        session.flush()
