"""The tax of invoices, as the tax sink recorded it (docs/tax.md).

When the tax sink is enabled, finalizing an invoice marks its tax ``pending``
(``mark_pending``, in the finalizing transaction, by billing.outbox.record) and the
outbox gives the invoice's events a delivery to the tax sink. The sink commits one tax
document per group of lines in the tax engine and records what the engine returned
(``record_tax``): the documents, each line's tax, and on the invoice's tax row the tax
and the total with it. The invoice's own row and lines never change (they are frozen at
finalization); the tax lives beside them. Sinks after tax (Stripe, an export) take the
invoice only once its tax is not pending (``pending_invoice_ids``;
billing.outbox.delivery.claim for the outbox's sinks).

Amounts are integers in minor units of the invoice's currency; the engine's rounding is
kept as it returned it (never re-rounded here). Times are wall-clock instants of when
the engine answered (passed in by the caller), not billing times.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from billing import bulk
from billing.errors import NotFound
from billing.models import (
    Customer,
    Invoice,
    InvoiceTax,
    Subscription,
    TaxDocument,
    TaxLine,
)


@dataclass(frozen=True)
class RecordedLine:
    """One line of a tax document: the invoice line it taxes (``line_number`` as sent),
    its tax code, the amount sent and what the engine found taxable, exempt and the tax,
    and per jurisdiction ``details`` (docs/tax.md). Minor units."""

    invoice_line_id: int | None
    line_number: str
    tax_code: str | None
    amount_minor: int
    taxable_minor: int
    exempt_minor: int
    tax_minor: int
    details: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RecordedDocument:
    """One tax transaction of an invoice as the engine holds it: its code and type (what
    identifies it there), the document it references (an adjustment's original), the
    engine's id and status, its date, amounts (minor units) and lines."""

    code: str
    type: str
    reference_code: str | None
    transaction_id: str
    status: str
    document_date: date
    currency: str
    amount_minor: int
    tax_minor: int
    lines: tuple[RecordedLine, ...] = ()
    #: The ledger's id of the document (tax_documents.id) once recorded.
    document_id: int | None = None


@dataclass(frozen=True)
class CustomerTaxProfile:
    """What the tax engine needs of a customer: its billing address (the customers
    file's fields, billing.customers.tax_profile) and tax ids ([{type, value}])."""

    customer: str
    billing_address: dict[str, str] | None
    tax_ids: list[dict[str, str]]


#: The fields a recorded line and document share with their ledger rows (TaxLine,
#: TaxDocument), columns of the same names.
_LINE_FIELDS = (
    "invoice_line_id",
    "line_number",
    "tax_code",
    "amount_minor",
    "taxable_minor",
    "exempt_minor",
    "tax_minor",
)
_DOCUMENT_FIELDS = (
    "code",
    "type",
    "reference_code",
    "transaction_id",
    "status",
    "document_date",
    "currency",
    "amount_minor",
    "tax_minor",
)


def mark_pending(session: Session, invoice_ids: Collection[int], *, engine: str) -> int:
    """Record the tax of invoices just finalized as ``pending`` (in the finalizing
    transaction). An invoice already marked is left as it is. Returns how many were
    marked."""
    ids = sorted(invoice_ids)
    marked = 0
    for part in bulk.chunks(ids):
        have = set(
            session.scalars(select(InvoiceTax.invoice_id).where(InvoiceTax.invoice_id.in_(part)))
        )
        rows = session.execute(
            select(Invoice.id, Invoice.currency).where(
                Invoice.id.in_([i for i in part if i not in have])
            )
        ).all()
        if rows:
            session.execute(
                insert(InvoiceTax),
                [
                    {"invoice_id": i, "status": "pending", "engine": engine, "currency": cur}
                    for i, cur in rows
                ],
            )
            marked += len(rows)
    return marked


def taxed_invoice_ids(session: Session, invoice_ids: Collection[int]) -> set[int]:
    """The invoices among ``invoice_ids`` whose tax goes through the tax sink."""
    found: set[int] = set()
    for part in bulk.chunks(sorted(invoice_ids)):
        found.update(
            session.scalars(select(InvoiceTax.invoice_id).where(InvoiceTax.invoice_id.in_(part)))
        )
    return found


def pending_invoice_ids(session: Session, invoice_ids: Collection[int]) -> set[int]:
    """The invoices among ``invoice_ids`` whose tax is still pending: what a sink after
    tax (an export) must not take yet."""
    found: set[int] = set()
    for part in bulk.chunks(sorted(invoice_ids)):
        found.update(
            session.scalars(
                select(InvoiceTax.invoice_id).where(
                    InvoiceTax.invoice_id.in_(part), InvoiceTax.status == "pending"
                )
            )
        )
    return found


def record_tax(
    session: Session, invoice_id: int, documents: Sequence[RecordedDocument], *, at: datetime
) -> InvoiceTax:
    """Store the tax documents of an invoice as the engine returned them (replacing what
    an earlier delivery recorded for the same code and type: recording again is
    harmless) and set the invoice's tax ``recorded``: ``tax_minor`` the documents' tax,
    ``total_minor`` the invoice's total plus it. An invoice already ``voided`` keeps that
    status. Raises NotFound for an invoice without a tax row (not finalized with the tax
    sink enabled), ValueError for a document in another currency."""
    tax = session.get(InvoiceTax, invoice_id, with_for_update=True)
    if tax is None:
        raise NotFound(f"invoice {invoice_id} has no tax to record (not finalized for tax)")
    invoice = session.get(Invoice, invoice_id)
    assert invoice is not None
    for doc in documents:
        if doc.currency != invoice.currency:
            raise ValueError(
                f"tax document {doc.code} is in {doc.currency}; invoice {invoice_id} in"
                f" {invoice.currency}"
            )
        _store_document(session, invoice_id, doc, at)
    total_tax = sum(
        session.scalars(select(TaxDocument.tax_minor).where(TaxDocument.invoice_id == invoice_id))
    )
    tax.tax_minor = int(total_tax)
    tax.total_minor = invoice.total_minor + int(total_tax)
    tax.recorded_at = at
    if tax.status != "voided":
        tax.status = "recorded"
    session.flush()
    return tax


def _store_document(session: Session, invoice_id: int, doc: RecordedDocument, at: datetime) -> None:
    values = {
        "invoice_id": invoice_id,
        **{name: getattr(doc, name) for name in _DOCUMENT_FIELDS},
        "recorded_at": at,
    }
    existing = session.scalar(
        select(TaxDocument.id).where(TaxDocument.code == doc.code, TaxDocument.type == doc.type)
    )
    if existing is None:
        document_id = session.execute(
            insert(TaxDocument).values(values).returning(TaxDocument.id)
        ).scalar_one()
    else:
        document_id = existing
        session.execute(update(TaxDocument).where(TaxDocument.id == existing).values(values))
        session.execute(delete(TaxLine).where(TaxLine.document_id == existing))
    if doc.lines:
        session.execute(
            insert(TaxLine),
            [
                {
                    "document_id": document_id,
                    **{name: getattr(line, name) for name in _LINE_FIELDS},
                    "details": line.details,
                }
                for line in doc.lines
            ],
        )


def record_void(
    session: Session, invoice_id: int, voided: Collection[tuple[str, str]], *, at: datetime
) -> None:
    """The invoice's void reached the tax engine: its documents ``voided`` ((code,
    type) pairs) are Cancelled there, and its tax is ``voided``. Harmless to repeat."""
    for code, doc_type in voided:
        session.execute(
            update(TaxDocument)
            .where(
                TaxDocument.invoice_id == invoice_id,
                TaxDocument.code == code,
                TaxDocument.type == doc_type,
            )
            .values(status="Cancelled", voided_at=at)
        )
    session.execute(
        update(InvoiceTax)
        .where(InvoiceTax.invoice_id == invoice_id, InvoiceTax.status != "voided")
        .values(status="voided", voided_at=at)
    )


def tax_documents(session: Session, invoice_id: int) -> list[RecordedDocument]:
    """The tax documents recorded for an invoice, in the order they were recorded, with
    their lines."""
    return tax_documents_of(session, [invoice_id]).get(invoice_id, [])


def tax_documents_of(
    session: Session, invoice_ids: Collection[int]
) -> dict[int, list[RecordedDocument]]:
    """The tax documents recorded for each of ``invoice_ids`` that has any (a few
    statements per 2,000 invoices)."""
    found: dict[int, list[RecordedDocument]] = {}
    for part in bulk.chunks(sorted(invoice_ids)):
        docs = session.scalars(
            select(TaxDocument).where(TaxDocument.invoice_id.in_(part)).order_by(TaxDocument.id)
        ).all()
        if not docs:
            continue
        lines: dict[int, list[RecordedLine]] = {}
        for line in session.scalars(
            select(TaxLine)
            .where(TaxLine.document_id.in_([doc.id for doc in docs]))
            .order_by(TaxLine.id)
        ):
            lines.setdefault(line.document_id, []).append(
                RecordedLine(
                    **{name: getattr(line, name) for name in _LINE_FIELDS},
                    details=list(line.details),
                )
            )
        for doc in docs:
            found.setdefault(doc.invoice_id, []).append(
                RecordedDocument(
                    **{name: getattr(doc, name) for name in _DOCUMENT_FIELDS},
                    lines=tuple(lines.get(doc.id, ())),
                    document_id=doc.id,
                )
            )
    return found


def invoice_tax(session: Session, invoice_id: int) -> InvoiceTax | None:
    """The invoice's tax row (None when its tax does not go through the tax sink)."""
    return session.get(InvoiceTax, invoice_id)


def corrected_invoices(
    session: Session, subscription: str, period_starts: Collection[datetime]
) -> dict[datetime, int]:
    """The finalized invoice of each of a subscription's periods (by the period's start
    instant): the invoice an adjustment line of that period corrects."""
    if not period_starts:
        return {}
    rows = session.execute(
        select(Invoice.period_start, Invoice.id)
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(
            Subscription.external_id == subscription,
            Invoice.status == "finalized",
            Invoice.period_start.in_(sorted(period_starts)),
        )
    ).all()
    return {start: invoice_id for start, invoice_id in rows}


def customer_tax_profile(session: Session, customer: str) -> CustomerTaxProfile | None:
    """A customer's billing address and tax ids (None for an unknown customer)."""
    row = session.execute(
        select(Customer.billing_address, Customer.tax_ids).where(Customer.external_id == customer)
    ).one_or_none()
    if row is None:
        return None
    return CustomerTaxProfile(customer, row[0], list(row[1] or []))


def tax_view(session: Session, invoice_id: int) -> dict[str, Any] | None:
    """An invoice's tax as `invoices show --json` gives it (None when its tax does not go
    through the tax sink): status, engine, the tax and the total with it (text and minor
    units; None while pending), and each tax document with its lines."""
    from billing.money import minor_text

    tax = session.get(InvoiceTax, invoice_id)
    if tax is None:
        return None
    cur = tax.currency
    return {
        "status": tax.status,
        "engine": tax.engine,
        "tax": None if tax.tax_minor is None else minor_text(tax.tax_minor, cur),
        "tax_minor": tax.tax_minor,
        "total_with_tax": None if tax.total_minor is None else minor_text(tax.total_minor, cur),
        "total_minor": tax.total_minor,
        "documents": [
            {
                "code": doc.code,
                "type": doc.type,
                "reference_code": doc.reference_code,
                "transaction_id": doc.transaction_id,
                "status": doc.status,
                "date": doc.document_date.isoformat(),
                "tax": minor_text(doc.tax_minor, cur),
                "tax_minor": doc.tax_minor,
                "lines": [asdict(line) for line in doc.lines],
            }
            for doc in tax_documents(session, invoice_id)
        ],
    }
