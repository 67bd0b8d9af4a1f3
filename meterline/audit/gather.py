"""Former home of the audit's I/O, kept only for callers not moved yet
(dags/billing_close.py imports reconcile_after_close from here). Each use case gathers
its own facts now: meterline.audit.explain, .reconcile, .rerate, .statement
(docs/audit.md).
"""

from meterline.audit.errors import AuditError
from meterline.audit.reconcile import reconcile_after_close

__all__ = ["AuditError", "reconcile_after_close"]
