"""The tax sink's mapping, pure: a finalized invoice to AvaTax transactions, and an
AvaTax answer to what the ledger records (docs/tax.md).

One invoice makes one ``SalesInvoice`` of its own lines, coded ``PREFIX + invoice id``,
and one transaction per earlier invoice its adjustment lines correct (late usage,
re-rates), coded ``PREFIX + invoice id + "-adj-" + corrected invoice id`` with
``referenceCode`` the corrected invoice's code: a ``SalesInvoice`` when the corrections
add up to an amount above or at zero, else a ``ReturnInvoice`` whose ``taxOverride``
(type ``TaxDate``) taxes it at the corrected invoice's date, as AvaTax's documentation
says a return should be. A code is derived from the invoice alone, so a retry or a
replay names the same transaction and AvaTax cannot hold two (it identifies a
transaction by company, code and type). Codes use letters, digits and ``-`` only: the
SDK puts them in URL paths unescaped.

Each invoice line is one transaction line: ``number`` the line's id, ``amount`` its
amount in major units (from the ledger's minor units, exactly), ``taxCode`` its price's
tax code from the catalog (none: AvaTax's company default), ``itemCode`` the price id,
``description`` the line's, ``ref1`` the service period as local dates
(``START/END``, end exclusive, ISO 8601's interval), ``ref2`` the line's kind. The
document's ``date`` is the invoice's finalization day in the subscription's timezone
(a logical time, never the clock); addresses are ``shipFrom`` (the company's origin,
a setting) and ``shipTo`` (the customer's billing address).

Amounts AvaTax returns (lineAmount, tax, taxable, ...) are read as exact decimals and
stored in minor units of the invoice's currency as returned: one that is not a whole
number of minor units is refused (``minor_of``), never rounded here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing.money import exponent
from billing.outbox import InvoiceDoc, LineDoc
from billing.tax import CustomerTaxProfile, RecordedDocument, RecordedLine

SALES_INVOICE = "SalesInvoice"
RETURN_INVOICE = "ReturnInvoice"
#: AvaTax's limits on the text fields we send (its API reference).
DESCRIPTION_MAX = 255
ITEM_CODE_MAX = 50
#: The customers file's address fields, by AvaTax's names (AddressLocationInfo).
ADDRESS_FIELDS = {
    "line1": "line1",
    "line2": "line2",
    "line3": "line3",
    "city": "city",
    "region": "region",
    "postal_code": "postalCode",
    "country": "country",
}


@dataclass(frozen=True)
class TaxLineRequest:
    """One line of a transaction: the invoice line it is (``number`` its id)."""

    number: str
    invoice_line_id: int
    amount_minor: int
    tax_code: str | None
    item_code: str | None
    description: str
    service_period: str
    kind: str


@dataclass(frozen=True)
class DocumentRequest:
    """One AvaTax transaction to create and commit for an invoice."""

    invoice_id: int
    code: str
    type: str
    reference_code: str | None
    document_date: date
    #: A ReturnInvoice's tax date (the corrected invoice's date), else None.
    tax_date: date | None
    customer: str
    currency: str
    description: str
    lines: tuple[TaxLineRequest, ...]

    @property
    def amount_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)


@dataclass(frozen=True)
class Corrected:
    """An earlier invoice that adjustment lines correct: its id and finalization day."""

    invoice_id: int
    document_date: date


class MappingError(ValueError):
    """An invoice or answer the mapping cannot turn into the other side's terms; the
    message says what and what to do."""


def document_code(prefix: str, invoice_id: int) -> str:
    """The code of an invoice's own transaction."""
    return f"{prefix}{invoice_id}"


def adjustment_code(prefix: str, invoice_id: int, corrected_id: int) -> str:
    """The code of the transaction of an invoice's corrections of an earlier invoice."""
    return f"{prefix}{invoice_id}-adj-{corrected_id}"


def local_day(instant: str, timezone: str) -> date:
    """The local date of an ISO 8601 instant in ``timezone``."""
    return datetime.fromisoformat(instant).astimezone(ZoneInfo(timezone)).date()


def service_period(line: LineDoc, timezone: str) -> str:
    """``START/END``: the line's service period as local dates, the end exclusive."""
    start = local_day(line.service_period_start, timezone)
    end = local_day(line.service_period_end, timezone)
    return f"{start.isoformat()}/{end.isoformat()}"


def _line(line: LineDoc, timezone: str, tax_codes: Mapping[str, str]) -> TaxLineRequest:
    item = line.price_id if len(line.price_id) <= ITEM_CODE_MAX else None
    return TaxLineRequest(
        number=str(line.line_id),
        invoice_line_id=line.line_id,
        amount_minor=line.amount_minor,
        tax_code=tax_codes.get(line.price_id),
        item_code=item,
        description=line.description[:DESCRIPTION_MAX],
        service_period=service_period(line, timezone),
        kind=line.kind,
    )


def corrected_period_starts(doc: InvoiceDoc) -> list[datetime]:
    """The period starts of the earlier invoices the invoice's adjustment lines correct
    (an adjustment of its own period, after a void and re-issue, is one of its lines)."""
    own = datetime.fromisoformat(doc.period_start)
    starts = {
        datetime.fromisoformat(line.service_period_start)
        for line in doc.lines
        if line.kind == "adjustment"
    }
    return sorted(start for start in starts if start != own)


def plan_documents(
    doc: InvoiceDoc,
    *,
    prefix: str,
    tax_codes: Mapping[str, str],
    corrected: Mapping[datetime, Corrected],
) -> list[DocumentRequest]:
    """The transactions of a finalized invoice (the module docstring): its own first,
    then one per corrected invoice in period order. ``corrected`` maps a corrected
    period's start to its finalized invoice; an adjustment of a period without one (its
    invoice void) stays on the invoice's own transaction. Raises MappingError for an
    invoice without lines of its own or a finalization time."""
    if doc.finalized_at is None:
        raise MappingError(f"invoice {doc.invoice_id} is not finalized: it has no tax yet")
    day = local_day(doc.finalized_at, doc.timezone)
    own_lines: list[TaxLineRequest] = []
    groups: dict[Corrected, list[TaxLineRequest]] = defaultdict(list)
    own_start = datetime.fromisoformat(doc.period_start)
    for line in doc.lines:
        request = _line(line, doc.timezone, tax_codes)
        start = datetime.fromisoformat(line.service_period_start)
        target = corrected.get(start) if line.kind == "adjustment" else None
        if target is None or start == own_start or target.invoice_id == doc.invoice_id:
            own_lines.append(request)
        else:
            groups[target].append(request)
    period = f"{doc.period_start_local} to {doc.period_end_local}"
    documents: list[DocumentRequest] = []
    if own_lines or not groups:
        documents.append(
            DocumentRequest(
                invoice_id=doc.invoice_id,
                code=document_code(prefix, doc.invoice_id),
                type=SALES_INVOICE,
                reference_code=None,
                document_date=day,
                tax_date=None,
                customer=doc.customer,
                currency=doc.currency,
                description=f"Invoice {doc.invoice_id}: {doc.subscription}, {period}",
                lines=tuple(own_lines),
            )
        )
    for target in sorted(groups, key=lambda c: c.invoice_id):
        lines = tuple(groups[target])
        total = sum(line.amount_minor for line in lines)
        returned = total < 0
        documents.append(
            DocumentRequest(
                invoice_id=doc.invoice_id,
                code=adjustment_code(prefix, doc.invoice_id, target.invoice_id),
                type=RETURN_INVOICE if returned else SALES_INVOICE,
                reference_code=document_code(prefix, target.invoice_id),
                document_date=day,
                tax_date=target.document_date if returned else None,
                customer=doc.customer,
                currency=doc.currency,
                description=(
                    f"Invoice {doc.invoice_id}: corrections of invoice {target.invoice_id}"
                    f" ({doc.subscription})"
                ),
                lines=lines,
            )
        )
    return documents


def address(fields: Mapping[str, str]) -> dict[str, str]:
    """A customers-file address (billing.customers.tax_profile) in AvaTax's names."""
    return {ADDRESS_FIELDS[name]: value for name, value in fields.items() if name in ADDRESS_FIELDS}


def wire_amount(minor: int, currency: str) -> int | float:
    """An amount in minor units as the JSON number AvaTax reads, in major units. The SDK
    serializes with the standard library's json, which has no decimals: a whole amount
    goes as an integer, any other as the float whose shortest text is exactly the
    decimal (checked: at most 15 significant digits always are)."""
    value = Decimal(minor).scaleb(-exponent(currency))
    if value == value.to_integral_value():
        return int(value)
    number = float(value)
    if Decimal(repr(number)) != value:  # pragma: no cover - beyond 15 digits
        raise MappingError(f"{value} {currency} cannot be sent exactly as a JSON number")
    return number


def create_model(
    request: DocumentRequest,
    *,
    company_code: str,
    origin: Mapping[str, str],
    profile: CustomerTaxProfile,
) -> dict[str, Any]:
    """The CreateTransactionModel of a transaction, committed in the same request."""
    if profile.billing_address is None:
        raise MappingError(
            f"customer {profile.customer} has no billing_address: AvaTax needs where it is"
            " billed; add billing_address to its rows of the customers file and load it"
        )
    model: dict[str, Any] = {
        "type": request.type,
        "code": request.code,
        "companyCode": company_code,
        "date": request.document_date.isoformat(),
        "customerCode": request.customer,
        "currencyCode": request.currency,
        "description": request.description[:DESCRIPTION_MAX],
        "commit": True,
        "addresses": {
            "shipFrom": address(origin),
            "shipTo": address(profile.billing_address),
        },
        "lines": [_wire_line(line, request.currency) for line in request.lines],
    }
    if request.reference_code is not None:
        model["referenceCode"] = request.reference_code
    if request.tax_date is not None:
        model["taxOverride"] = {
            "type": "TaxDate",
            "taxDate": request.tax_date.isoformat(),
            "reason": f"Correction of {request.reference_code}",
        }
    if profile.tax_ids:
        model["businessIdentificationNo"] = profile.tax_ids[0]["value"]
    return model


def _wire_line(line: TaxLineRequest, currency: str) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "number": line.number,
        "quantity": 1,
        "amount": wire_amount(line.amount_minor, currency),
        "description": line.description,
        "ref1": line.service_period,
        "ref2": line.kind,
    }
    if line.tax_code is not None:
        wire["taxCode"] = line.tax_code
    if line.item_code is not None:
        wire["itemCode"] = line.item_code
    return wire


def minor_of(value: Any, currency: str, what: str) -> int:
    """An amount AvaTax returned (a JSON number read as Decimal, or an int) in minor
    units. Raises MappingError for one that is not a whole number of them."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise MappingError(f"AvaTax returned {what} {value!r}: not a number")
    scaled = Decimal(value).scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise MappingError(
            f"AvaTax returned {what} {value} {currency}: not a whole number of the"
            f" currency's minor unit (10^-{exponent(currency)}); check the company's"
            " rounding settings in AvaTax"
        )
    return int(scaled)


def recorded_document(found: Mapping[str, Any], request: DocumentRequest) -> RecordedDocument:
    """What the ledger records of a transaction AvaTax returned (TransactionModel with
    its lines and details). Raises MappingError for an amount it cannot hold exactly."""
    currency = request.currency
    ids = {line.number: line for line in request.lines}
    lines = []
    for line in found.get("lines") or []:
        number = str(line.get("lineNumber"))
        sent = ids.get(number)
        details = [
            {
                "jurisdiction": detail.get("jurisName"),
                "type": detail.get("jurisType"),
                "tax_name": detail.get("taxName"),
                "rate": _text(detail.get("rate")),
                "taxable_minor": minor_of(detail.get("taxableAmount", 0), currency, "a taxable"),
                "tax_minor": minor_of(detail.get("tax", 0), currency, "a tax"),
            }
            for detail in line.get("details") or []
        ]
        lines.append(
            RecordedLine(
                invoice_line_id=sent.invoice_line_id if sent else None,
                line_number=number,
                tax_code=line.get("taxCode") or (sent.tax_code if sent else None),
                amount_minor=minor_of(
                    line.get("lineAmount", 0), currency, f"line {number}'s amount"
                ),
                taxable_minor=minor_of(line.get("taxableAmount", 0), currency, "a taxable"),
                exempt_minor=minor_of(line.get("exemptAmount", 0), currency, "an exempt amount"),
                tax_minor=minor_of(line.get("tax", 0), currency, f"line {number}'s tax"),
                details=details,
            )
        )
    return RecordedDocument(
        code=str(found.get("code")),
        type=str(found.get("type") or request.type),
        reference_code=found.get("referenceCode") or request.reference_code,
        transaction_id=str(found.get("id")),
        status=str(found.get("status")),
        document_date=date.fromisoformat(str(found.get("date"))[:10]),
        currency=str(found.get("currencyCode") or currency),
        amount_minor=minor_of(found.get("totalAmount", 0), currency, "the total amount"),
        tax_minor=minor_of(found.get("totalTax", 0), currency, "the total tax"),
        lines=tuple(lines),
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def differences(request: DocumentRequest, found: Mapping[str, Any]) -> list[str]:
    """How a transaction AvaTax holds under the request's code differs from the request
    (customer, currency, lines and their amounts); empty when it is the same."""
    out: list[str] = []
    if found.get("customerCode") != request.customer:
        out.append(f"customer {found.get('customerCode')!r}, ours {request.customer!r}")
    currency = found.get("currencyCode") or request.currency
    if currency != request.currency:
        out.append(f"currency {currency}, ours {request.currency}")
        return out
    held: dict[str, Any] = {str(line.get("lineNumber")): line for line in found.get("lines") or []}
    for line in request.lines:
        there = held.pop(line.number, None)
        if there is None:
            out.append(f"line {line.number} missing")
            continue
        try:
            amount = minor_of(there.get("lineAmount", 0), request.currency, "a line amount")
        except MappingError as exc:
            out.append(str(exc))
            continue
        if amount != line.amount_minor:
            out.append(
                f"line {line.number}: AvaTax {amount}, ours {line.amount_minor} (minor units)"
            )
    out.extend(f"extra line {number}" for number in sorted(held))
    return out


def lines_of(requests: Sequence[DocumentRequest]) -> int:
    """The number of transaction lines of ``requests``."""
    return sum(len(request.lines) for request in requests)
