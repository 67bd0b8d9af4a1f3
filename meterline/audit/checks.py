"""Former home of the audit's pure checks, kept only for callers not moved yet
(dags/billing_close.py imports failure_message from here). The checks live by use case
now: meterline.audit.compare, .explain, .reconcile, .rerate, .findings (docs/audit.md).
"""

from meterline.audit.reconcile.report import failure_message

__all__ = ["failure_message"]
