"""Alert evaluation, pure: amounts + thresholds + previous states -> events.

An alert watches one measure of a customer's billing period: the usage quantity of a
meter (``metric="usage"``, thresholds are exact decimal quantities) or the rated spend
in a currency (``metric="spend"``, thresholds are integer minor units of that
currency). The amount compared is the rated one: the number the invoice will show.

Each (alert, threshold, period) has at most two events, in this order, each once:

- ``alert.fired`` when the amount reaches the threshold (``amount >= threshold``) and
  nothing was recorded for it yet;
- ``alert.retracted`` when a fired threshold's amount is back under it (late data or a
  re-rate lowered it).

A retracted threshold stays retracted for that period: it does not fire again (the
recipient was told twice already; the next period starts afresh). Thresholds are
evaluated independently: an amount that jumps over three thresholds fires three events,
lowest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from typing import Literal

Metric = Literal["usage", "spend"]
State = Literal["fired", "retracted"]


@dataclass(frozen=True)
class AlertRule:
    """An alert as evaluation needs it. ``thresholds``: quantities (usage) or minor
    units (spend), as Decimal either way (minor units are whole numbers)."""

    alert_id: int
    metric: Metric
    thresholds: tuple[Decimal, ...]
    #: The meter (usage) or the currency (spend).
    subject: str


#: (alert id, threshold, period start ISO 8601): the identity of one firing.
StateKey = tuple[int, Decimal, str]


@dataclass(frozen=True)
class AlertEvent:
    """One event to write to the outbox."""

    kind: Literal["alert.fired", "alert.retracted"]
    alert_id: int
    threshold: Decimal
    period_start: str
    amount: Decimal

    @property
    def key(self) -> StateKey:
        return (self.alert_id, self.threshold, self.period_start)

    @property
    def state(self) -> State:
        return "fired" if self.kind == "alert.fired" else "retracted"


def threshold_text(value: Decimal) -> str:
    """A threshold (or an amount) as a canonical string (no exponent, no trailing
    zeros): the form it takes in keys and payloads, so 100, 100.0 and 1E+2 are one
    threshold. Exact whatever its digits: normalized in a context as wide as the number
    (the default context's 28 digits rounded a 38-digit quantity)."""
    wide = Context(prec=max(len(value.as_tuple().digits), 1), Emax=MAX_EMAX, Emin=MIN_EMIN)
    return format(value.normalize(wide), "f")


def evaluate(
    rule: AlertRule,
    *,
    period_start: str,
    amount: Decimal,
    states: Mapping[StateKey, State],
) -> list[AlertEvent]:
    """The events ``rule`` must emit for ``amount`` in the period starting at
    ``period_start``, given the ``states`` already recorded (any keys; only this rule's
    and period's are read). Lowest threshold first; deterministic."""
    if isinstance(amount, float) or not isinstance(amount, Decimal):
        raise TypeError("an alert amount must be a Decimal")
    events: list[AlertEvent] = []
    for threshold in sorted(set(_canonical(rule.thresholds))):
        key: StateKey = (rule.alert_id, threshold, period_start)
        previous = states.get(key)
        if previous is None and amount >= threshold:
            events.append(AlertEvent("alert.fired", rule.alert_id, threshold, period_start, amount))
        elif previous == "fired" and amount < threshold:
            events.append(
                AlertEvent("alert.retracted", rule.alert_id, threshold, period_start, amount)
            )
    return events


def _canonical(values: Sequence[Decimal]) -> list[Decimal]:
    out = []
    for value in values:
        if isinstance(value, float) or not isinstance(value, Decimal):
            raise TypeError("an alert threshold must be a Decimal")
        if not value.is_finite() or value <= 0:
            raise ValueError(f"an alert threshold must be a positive number, not {value}")
        out.append(Decimal(threshold_text(value)))
    return out
