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
number of minor units, or beyond the ledger's range, is refused (``minor_of``), never
rounded here. The rest of an answer is read as strictly (``recorded_document``): each
field of its type and within the ledger's column, each line number once, the totals the
sums of the lines; anything else is AnswerInvalid, naming the field, and nothing is
recorded.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing.bulk import MAX_AMOUNT_MINOR
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


#: AvaTax's document statuses (DocumentStatus in its SDKs' enums): a status outside
#: them did not come from AvaTax.
STATUSES = frozenset(
    {
        "Temporary",
        "Saved",
        "Posted",
        "Committed",
        "Cancelled",
        "Adjusted",
        "Queued",
        "PendingApproval",
        "Uncommitted",
    }
)
#: The ledger's widths of what it records of an answer (billing.models.TaxDocument,
#: TaxLine), and the longest text of a jurisdiction's detail it keeps.
TRANSACTION_ID_MAX = 40
CODE_MAX = 50
LINE_NUMBER_MAX = 50
TAX_CODE_MAX = 25
DETAIL_TEXT_MAX = 200
_ANSWER_DAY = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(T[0-9:.]*(Z|[+-][0-9:]+)?)?\Z")


class AnswerInvalid(MappingError):
    """An answer of AvaTax's that the ledger cannot record as it is: a field missing or
    of another type, a text longer than the ledger's column, a line number given twice,
    an amount beyond the ledger's range, or totals that are not the sums of the lines."""


def minor_of(value: Any, currency: str, what: str) -> int:
    """An amount AvaTax returned (a JSON number read as Decimal, or an int) in minor
    units. Raises MappingError for one that is not a finite number, not a whole number of
    minor units, or beyond the ledger's range (billing.bulk.MAX_AMOUNT_MINOR)."""
    try:
        return _minor(value, currency)
    except ValueError as exc:
        raise MappingError(f"AvaTax returned {what} {exc}") from None


def _minor(value: Any, currency: str) -> int:
    """minor_of's rule; ValueError saying what ``value`` is otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"{shown(value)}: not a number")
    number = Decimal(value)
    places = exponent(currency)
    if not number.is_finite():
        raise ValueError(f"{shown(value)}: not a finite number")
    beyond = ValueError(
        f"{shown(value)} {currency}: beyond the ledger's range ({MAX_AMOUNT_MINOR:,} minor"
        " units either way)"
    )
    # The exponent first: scaling 1e999999 would overflow the decimal context itself.
    if number and number.adjusted() + places > 18:
        raise beyond
    scaled = number.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"{value} {currency}: not a whole number of the currency's minor unit"
            f" (10^-{places}); check the company's rounding settings in AvaTax"
        )
    minor = int(scaled)
    if not -MAX_AMOUNT_MINOR <= minor <= MAX_AMOUNT_MINOR:
        raise beyond
    return minor


def shown(value: Any) -> str:
    """A value of an answer as a message shows it: short, a decimal as written."""
    text = repr(value) if not isinstance(value, Decimal) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Answer:
    """Reads one transaction AvaTax answered for ``request``, each problem an
    AnswerInvalid naming the field (``lines[0].details[1].tax``)."""

    def __init__(self, request: DocumentRequest) -> None:
        self.request = request

    def invalid(self, where: str, what: str) -> AnswerInvalid:
        request = self.request
        return AnswerInvalid(
            f"AvaTax's answer for {request.code} ({request.type}) cannot be recorded:"
            f" {where}: {what}; nothing was recorded. If AvaTax answers so again, check that"
            " METERLINE_AVALARA_API_BASE is AvaTax's and report the answer to Avalara, then"
            " `meterline outbox replay` the event"
        )

    def text(
        self, node: Mapping[str, Any], key: str, where: str, limit: int, *, required: bool = True
    ) -> str | None:
        value = node.get(key)
        if value is None or value == "":
            if required:
                raise self.invalid(f"{where}{key}", "missing")
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # AvaTax's ids are numbers; a line number may be one
        if not isinstance(value, str):
            raise self.invalid(f"{where}{key}", f"{shown(value)} is not a text")
        if len(value) > limit:
            raise self.invalid(
                f"{where}{key}", f"{len(value)} characters, more than the ledger keeps ({limit})"
            )
        return value

    def objects(self, node: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
        value = node.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.invalid(f"{where}{key}", "not a list of objects")
        return value

    def amount(self, node: Mapping[str, Any], key: str, where: str) -> int:
        try:
            return _minor(node.get(key, 0), self.request.currency)
        except ValueError as exc:
            raise self.invalid(f"{where}{key}", str(exc)) from None

    def rate(self, node: Mapping[str, Any], where: str) -> str | None:
        value = node.get("rate")
        if value is None:
            return None
        finite = isinstance(value, Decimal) and value.is_finite() and abs(value.adjusted()) < 20
        if not (finite or (isinstance(value, int) and not isinstance(value, bool))):
            raise self.invalid(f"{where}rate", f"{shown(value)} is not a rate")
        return _text(value)

    def day(self, node: Mapping[str, Any]) -> date:
        value = node.get("date")
        found = _ANSWER_DAY.match(value) if isinstance(value, str) else None
        try:
            if found is None:
                raise ValueError
            return date.fromisoformat(found.group(1))
        except ValueError:
            raise self.invalid("date", f"{shown(value)} is not a date YYYY-MM-DD") from None

    def line(self, node: Mapping[str, Any], where: str) -> RecordedLine:
        number = self.text(node, "lineNumber", where, LINE_NUMBER_MAX)
        assert number is not None
        sent = {line.number: line for line in self.request.lines}.get(number)
        details = []
        for j, detail in enumerate(self.objects(node, "details", where)):
            at = f"{where}details[{j}]."
            details.append(
                {
                    "jurisdiction": self.text(
                        detail, "jurisName", at, DETAIL_TEXT_MAX, required=False
                    ),
                    "type": self.text(detail, "jurisType", at, DETAIL_TEXT_MAX, required=False),
                    "tax_name": self.text(detail, "taxName", at, DETAIL_TEXT_MAX, required=False),
                    "rate": self.rate(detail, at),
                    "taxable_minor": self.amount(detail, "taxableAmount", at),
                    "tax_minor": self.amount(detail, "tax", at),
                }
            )
        tax_code = self.text(node, "taxCode", where, TAX_CODE_MAX, required=False)
        return RecordedLine(
            invoice_line_id=sent.invoice_line_id if sent else None,
            line_number=number,
            tax_code=tax_code or (sent.tax_code if sent else None),
            amount_minor=self.amount(node, "lineAmount", where),
            taxable_minor=self.amount(node, "taxableAmount", where),
            exempt_minor=self.amount(node, "exemptAmount", where),
            tax_minor=self.amount(node, "tax", where),
            details=details,
        )


def recorded_document(found: Mapping[str, Any], request: DocumentRequest) -> RecordedDocument:
    """What the ledger records of a transaction AvaTax returned (TransactionModel with
    its lines and details). Raises AnswerInvalid (a MappingError) for an answer it
    cannot record as it is (the class's docstring), MappingError for an amount it cannot
    hold exactly."""
    read = _Answer(request)
    lines: list[RecordedLine] = []
    for i, node in enumerate(read.objects(found, "lines", "")):
        lines.append(read.line(node, f"lines[{i}]."))
    numbers = [line.line_number for line in lines]
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    if twice:
        raise read.invalid("lines", f"line number {twice[0]} is given twice")
    status = read.text(found, "status", "", 16)
    if status not in STATUSES:
        raise read.invalid("status", f"{shown(status)} is not a status of AvaTax's")
    amount = read.amount(found, "totalAmount", "")
    tax = read.amount(found, "totalTax", "")
    for total, key, field in ((amount, "totalAmount", "amount"), (tax, "totalTax", "tax")):
        summed = sum(getattr(line, f"{field}_minor") for line in lines)
        if lines and total != summed:
            raise read.invalid(
                key, f"{total} minor units, but its lines' {field} add up to {summed}"
            )
    transaction_id = read.text(found, "id", "", TRANSACTION_ID_MAX)
    assert transaction_id is not None
    return RecordedDocument(
        code=request.code,
        type=request.type,
        reference_code=read.text(found, "referenceCode", "", CODE_MAX, required=False)
        or request.reference_code,
        transaction_id=transaction_id,
        status=status,
        document_date=read.day(found),
        currency=request.currency,
        amount_minor=amount,
        tax_minor=tax,
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
    (its code and type, customer, currency, lines and their amounts); empty when it is
    the same. Raises AnswerInvalid when its lines are not a list of objects."""
    out: list[str] = []
    for key, ours in (("code", request.code), ("type", request.type)):
        if found.get(key) is not None and found.get(key) != ours:
            out.append(f"{key} {shown(found.get(key))}, ours {ours!r}")
    if found.get("customerCode") != request.customer:
        out.append(f"customer {shown(found.get('customerCode'))}, ours {request.customer!r}")
    currency = found.get("currencyCode") or request.currency
    if currency != request.currency:
        out.append(f"currency {shown(currency)}, ours {request.currency}")
        return out
    listed = _Answer(request).objects(found, "lines", "")
    held: dict[str, Any] = {str(line.get("lineNumber")): line for line in listed}
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
    out.extend(f"extra line {shown(number)}" for number in sorted(held))
    return out


def lines_of(requests: Sequence[DocumentRequest]) -> int:
    """The number of transaction lines of ``requests``."""
    return sum(len(request.lines) for request in requests)
