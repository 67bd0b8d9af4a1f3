"""Spend and usage alerts (docs/alerts.md, issue 17 section 3).

- evaluate.py: pure: given the rated amounts of a period, an alert's thresholds and the
  states already recorded, the events to emit (fired, retracted). No I/O.
"""

from billing.alerts.evaluate import (
    AlertEvent,
    AlertRule,
    StateKey,
    evaluate,
    threshold_text,
)

__all__ = ["AlertEvent", "AlertRule", "StateKey", "evaluate", "threshold_text"]
