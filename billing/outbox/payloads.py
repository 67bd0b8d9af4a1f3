"""The documents outbox events carry: an invoice and its lines, as the ledger holds them.

Amounts are integers in the currency's minor unit (ISO 4217 exponent) with the
currency's code; quantities and unit prices are exact decimal strings; instants are
ISO 8601 UTC strings; local dates ``YYYY-MM-DD`` in the subscription's timezone. A
payload is the whole state of its subject when the event was written, so applying it
again reaches the same state (what makes redelivery harmless).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class LineDoc:
    """One invoice line (billing.models.InvoiceLine)."""

    line_id: int
    key: str
    kind: str
    description: str
    quantity: str
    unit_amount: str | None
    amount_minor: int
    currency: str
    meter: str | None
    price_id: str
    price_version: str
    dimension_group: str | None
    service_period_start: str
    service_period_end: str
    breakdown: Any
    adjusts_line_id: int | None
    adjusts_key: str | None
    credit_grant_id: str | None = None  # a credit line's grant (or its correction's)

    @property
    def quantity_decimal(self) -> Decimal:
        return Decimal(self.quantity)


@dataclass(frozen=True)
class InvoiceDoc:
    """One invoice (billing.models.Invoice) with the lines the event is about: all of a
    finalized invoice's lines; a draft's adjustment lines for ``adjustments_posted``;
    none for ``voided``."""

    invoice_id: int
    customer: str
    customer_name: str
    subscription: str
    currency: str
    status: str
    period_start: str
    period_end: str
    period_start_local: str
    period_end_local: str
    timezone: str
    subtotal_minor: int
    discount_minor: int
    adjustment_minor: int
    total_minor: int
    finalized_at: str | None
    voided_at: str | None
    reissue_of: int | None
    lines: tuple[LineDoc, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The document as the outbox stores it: its fields, ``lines`` a list of each
        line's fields. Shallow: a line's ``breakdown`` (JSON already, as the ledger
        holds it) is the same object, not a copy (dataclasses.asdict deep-copied every
        value: 60% of a 25,000-invoice finalize)."""
        doc = {name: getattr(self, name) for name in _INVOICE_FIELDS}
        doc["lines"] = [{name: getattr(line, name) for name in _LINE_FIELDS} for line in self.lines]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> InvoiceDoc:
        fields = dict(doc)
        lines = tuple(LineDoc(**line) for line in fields.pop("lines", ()))
        return cls(**fields, lines=lines)


_LINE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LineDoc))
_INVOICE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(InvoiceDoc) if f.name != "lines")


@dataclass(frozen=True)
class EventDoc:
    """An outbox event as a sink receives it: ``kind`` is one of
    billing.models.OUTBOX_KINDS; ``idempotency_key`` is stable across retries and
    replays."""

    event_id: int
    kind: str
    customer: str
    idempotency_key: str
    created_at: datetime
    #: The payload as stored (an invoice document, or an alert's: docs/alerts.md).
    data: dict[str, Any]

    @cached_property
    def invoice(self) -> InvoiceDoc:
        """The invoice document of an ``invoice.*`` event (ValueError for another kind)."""
        if not self.kind.startswith("invoice."):
            raise ValueError(f"outbox event {self.event_id} ({self.kind}) holds no invoice")
        return InvoiceDoc.from_json(self.data)
