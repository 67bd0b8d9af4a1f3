"""billing.alerts.evaluate: each (alert, threshold, period) fires once, and a fired one
is retracted once when the amount goes back under."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.alerts import AlertRule, evaluate, threshold_text

P = "2026-10-01T00:00:00+00:00"
RULE = AlertRule(
    alert_id=7, metric="spend", thresholds=(Decimal(1000), Decimal(500)), subject="USD"
)


def kinds(events):
    return [(e.kind, e.threshold) for e in events]


def test_under_every_threshold_emits_nothing():
    assert evaluate(RULE, period_start=P, amount=Decimal(499), states={}) == []


def test_reaching_a_threshold_fires_it_and_jumping_fires_each_lowest_first():
    assert kinds(evaluate(RULE, period_start=P, amount=Decimal(500), states={})) == [
        ("alert.fired", Decimal(500))
    ]
    assert kinds(evaluate(RULE, period_start=P, amount=Decimal(5000), states={})) == [
        ("alert.fired", Decimal(500)),
        ("alert.fired", Decimal(1000)),
    ]


def test_a_fired_threshold_does_not_fire_again():
    states = {(7, Decimal(500), P): "fired"}
    assert kinds(evaluate(RULE, period_start=P, amount=Decimal(900), states=states)) == []


def test_back_under_a_fired_threshold_retracts_once_and_never_refires():
    states = {(7, Decimal(500), P): "fired", (7, Decimal(1000), P): "fired"}
    events = evaluate(RULE, period_start=P, amount=Decimal(700), states=states)
    assert kinds(events) == [("alert.retracted", Decimal(1000))]
    assert events[0].state == "retracted" and events[0].amount == Decimal(700)
    states[events[0].key] = events[0].state
    assert evaluate(RULE, period_start=P, amount=Decimal(600), states=states) == []
    # Over again in the same period: already told twice, stays retracted.
    assert evaluate(RULE, period_start=P, amount=Decimal(2000), states=states) == []


def test_periods_are_independent():
    states = {(7, Decimal(500), P): "retracted"}
    nxt = "2026-11-01T00:00:00+00:00"
    assert kinds(evaluate(RULE, period_start=nxt, amount=Decimal(600), states=states)) == [
        ("alert.fired", Decimal(500))
    ]


def test_equal_thresholds_written_differently_are_one():
    rule = AlertRule(1, "usage", (Decimal("100"), Decimal("100.0"), Decimal("1E+2")), "api_calls")
    events = evaluate(rule, period_start=P, amount=Decimal("100.5"), states={})
    assert len(events) == 1 and threshold_text(events[0].threshold) == "100"
    states = {(1, Decimal("100"), P): "fired"}
    assert evaluate(rule, period_start=P, amount=Decimal(101), states=states) == []


def test_decimal_usage_threshold():
    rule = AlertRule(2, "usage", (Decimal("0.5"),), "gb_hours")
    assert kinds(evaluate(rule, period_start=P, amount=Decimal("0.49"), states={})) == []
    assert kinds(evaluate(rule, period_start=P, amount=Decimal("0.50"), states={})) == [
        ("alert.fired", Decimal("0.5"))
    ]


@pytest.mark.parametrize("bad", [0.5, 1, "3"])
def test_amount_must_be_decimal(bad):
    with pytest.raises(TypeError):
        evaluate(RULE, period_start=P, amount=bad, states={})


@pytest.mark.parametrize("bad", [Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity")])
def test_threshold_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError):
        evaluate(AlertRule(1, "usage", (bad,), "m"), period_start=P, amount=Decimal(1), states={})
