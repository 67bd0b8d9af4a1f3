"""`meterline audit reconcile`: does a month balance, from the events to the invoices?

- ``checks``: the pure checks over one month's facts (``meterline.audit.facts``),
  with ``intake`` for the ingest accounting;
- ``report``: the typed report, its judged findings and the DAG's failure text;
- ``gather``: reads the facts (ledger and warehouse) and judges the findings against
  the acknowledgements the ledger holds.
"""

from meterline.audit.reconcile.gather import (
    find_finding,
    months_to_reconcile,
    reconcile_after_close,
    reconcile_period,
)
from meterline.audit.reconcile.report import ReconcileReport, failure_message

__all__ = [
    "ReconcileReport",
    "failure_message",
    "find_finding",
    "months_to_reconcile",
    "reconcile_after_close",
    "reconcile_period",
]
