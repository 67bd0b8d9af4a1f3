"""The transactional outbox (DESIGN.md invariant 8): every fact another system must hear
is an ``outbox_events`` row written in the same transaction as the fact, with its
delivery state per sink in ``outbox_deliveries``.

- record.py: the writers (invoice finalized, voided, adjustment lines posted), called by
  billing.lifecycle and billing.adjustments inside their transactions.
- payloads.py: the typed documents an event carries (amounts in minor units).
- delivery.py: claim, mark delivered / failed / parked, list and replay.

docs/stripe.md describes the flow and the delivery rules.
"""

from billing.outbox.delivery import (
    Claim,
    DeliveryRow,
    claim,
    list_deliveries,
    mark_delivered,
    mark_failed,
    release,
    replay,
    undelivered,
)
from billing.outbox.payloads import EventDoc, InvoiceDoc, LineDoc
from billing.outbox.record import (
    ALERT_SINKS,
    ALL_SINKS,
    INVOICE_SINKS,
    SINKS,
    TAX_SINK,
    invoice_sinks,
    record_alert,
)

__all__ = [
    "ALERT_SINKS",
    "ALL_SINKS",
    "INVOICE_SINKS",
    "SINKS",
    "TAX_SINK",
    "Claim",
    "DeliveryRow",
    "EventDoc",
    "InvoiceDoc",
    "LineDoc",
    "claim",
    "invoice_sinks",
    "list_deliveries",
    "mark_delivered",
    "mark_failed",
    "record_alert",
    "release",
    "replay",
    "undelivered",
]
