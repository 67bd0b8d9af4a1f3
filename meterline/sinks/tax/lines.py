"""The recorded tax as lines of the invoice, for the sinks after tax (docs/tax.md).

An invoice taxed through the tax sink reaches Stripe with its own lines and one more
line per tax document whose tax is not zero: kind ``tax``, the document's tax as
AvaTax returned it, ``line_id`` minus the document's ledger id (never an invoice line's
id, and the same on every delivery and reconcile), described by the taxes it holds and
the AvaTax document (``Tax: NY STATE TAX, NY CITY TAX (SalesInvoice meterline-30)``).
The document's total becomes the lines plus the tax, which Stripe's subtotal must equal
before it is finalized and `meterline stripe reconcile` compares. On Stripe it is an
invoice item like the others, not a Stripe tax amount: Stripe's tax reports do not see
it (AvaTax holds the transaction and the ledger the tax).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from billing.outbox import InvoiceDoc, LineDoc
from billing.tax import RecordedDocument

#: What a tax line names as its price (a tax line prices nothing of the catalog).
TAX_PRICE = "tax"
#: Longest description of a tax line (Stripe's item descriptions are kept short).
DESCRIPTION_MAX = 200


def _names(document: RecordedDocument) -> str:
    names: list[str] = []
    for line in document.lines:
        for detail in line.details:
            name = str(detail.get("tax_name") or detail.get("jurisdiction") or "")
            if name and name not in names and int(detail.get("tax_minor") or 0):
                names.append(name)
    return ", ".join(names) or "tax"


def tax_line(doc: InvoiceDoc, document: RecordedDocument) -> LineDoc:
    """The line a tax document adds to its invoice (the module docstring)."""
    if document.document_id is None:
        raise ValueError(f"tax document {document.code} is not recorded")
    text = f"Tax: {_names(document)} ({document.type} {document.code})"
    return LineDoc(
        line_id=-document.document_id,
        key=f"tax|{document.type}|{document.code}",
        kind="tax",
        description=text[:DESCRIPTION_MAX],
        quantity="1",
        unit_amount=None,
        amount_minor=document.tax_minor,
        currency=doc.currency,
        meter=None,
        price_id=TAX_PRICE,
        price_version=document.code,
        dimension_group=None,
        service_period_start=doc.period_start,
        service_period_end=doc.period_end,
        breakdown=[],
        adjusts_line_id=None,
        adjusts_key=None,
    )


def with_tax(doc: InvoiceDoc, documents: Sequence[RecordedDocument]) -> InvoiceDoc:
    """``doc`` with a line per tax document of non-zero tax, and its total with them."""
    added = tuple(tax_line(doc, d) for d in documents if d.tax_minor)
    if not added:
        return doc
    return replace(
        doc,
        lines=(*doc.lines, *added),
        total_minor=doc.total_minor + sum(line.amount_minor for line in added),
    )
