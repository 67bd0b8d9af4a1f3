"""The AvaTax stand-in's state and rules: transactions by company, code and type, tax
from a rate table, and AvaTax's answers (docs/tax.md, "The AvaTax stand-in").

Rules modelled (AvaTax's API reference and error pages):

- A transaction is identified by company, code and document type. ``*Order`` types are
  estimates: computed and answered, never stored. An ``*Invoice`` type is stored
  ``Saved``, or ``Committed`` with ``commit: true``.
- CreateTransaction with the code of a stored transaction: one still Saved (or Posted)
  is replaced by the new one (a new id, ``version`` + 1); one Committed or Cancelled is
  refused with ``TransactionAlreadyExists`` (1303), the committed code being reserved.
  No code: a new GUID is the code.
- CommitTransaction (``commit: true``): Saved/Posted -> Committed; Committed stays;
  Cancelled is refused (``InvalidDocumentStatus``).
- VoidTransaction (``code: DocVoided``): Saved/Posted/Committed -> Cancelled; Cancelled
  is refused (``InvalidDocumentStatus``: the stand-in's choice, AvaTax's answer there is
  not documented). Other void reasons are refused as not modelled.
- Tax: per line, per jurisdiction of the destination (``shipTo``, else
  ``singleLocation``; a line's own addresses first) found in the rate table by country
  and region (then country alone): ``taxable * rate`` rounded half-up to the currency's
  minor unit; a tax code listed as exempt makes the line exempt; a place with no rates is
  taxed nothing (no nexus). A ``TaxDate`` override sets ``taxDate``; rates do not change
  with dates here.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from rating.money import minor_unit_exponent

from .validate import enum_names

ESTIMATES = frozenset(
    {
        "SalesOrder",
        "PurchaseOrder",
        "ReturnOrder",
        "InventoryTransferOrder",
        "ReverseChargeOrder",
        "CustomsOrder",
        "InventoryTransferOutboundOrder",
    }
)
REPLACEABLE = frozenset({"Saved", "Posted"})
VOIDABLE = frozenset({"Saved", "Posted", "Committed"})
_JURISDICTION_TYPE = {
    "STA": "State",
    "CTY": "County",
    "CIT": "City",
    "STJ": "Special",
    "CNT": "Country",
}


class AvaTaxFault(Exception):
    """An AvaTax error answer: HTTP ``status``, ErrorCodeId ``code``, ``message``;
    ``details`` are (code, message, refersTo) of each detail (default: the error)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str = "Unknown",
        details: list[tuple[str, str, str | None]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details or [(code, message, None)]

    def body(self) -> dict[str, Any]:
        numbers = enum_names("ErrorCodeId")
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "target": self.target,
                "details": [
                    {
                        "code": code,
                        "number": numbers.get(code, 0),
                        "message": message,
                        "description": message,
                        "faultCode": "Client" if self.status < 500 else "Server",
                        "helpLink": f"https://developer.avalara.com/avatax/errors/{code}",
                        **({"refersTo": refers} if refers else {}),
                        "severity": "Error" if self.status < 500 else "Exception",
                    }
                    for code, message, refers in self.details
                ],
            }
        }


@dataclass(frozen=True)
class Jurisdiction:
    """One jurisdiction's rate: ``type`` is AvaTax's JurisTypeId (STA, CTY, CIT, STJ,
    CNT); ``rate`` a fraction (0.04 for 4%)."""

    name: str
    type: str
    rate: Decimal
    tax_name: str = ""
    tax_type: str = "Sales"


@dataclass(frozen=True)
class RateTable:
    """The rates of each place, by (country, region) or (country, None) for a whole
    country; tax codes whose lines are exempt (AvaTax's NT: not taxable)."""

    places: Mapping[tuple[str, str | None], tuple[Jurisdiction, ...]] = field(default_factory=dict)
    exempt_tax_codes: frozenset[str] = frozenset({"NT"})

    def jurisdictions(self, address: Mapping[str, Any]) -> tuple[Jurisdiction, ...]:
        country = str(address.get("country") or "").upper()
        region = address.get("region")
        found = self.places.get((country, str(region).upper() if region else None))
        if found is None:
            found = self.places.get((country, None), ())
        return found


@dataclass
class Transaction:
    id: int
    company: str
    company_id: int
    code: str
    type: str
    status: str
    version: int
    model: dict[str, Any]
    lines: list[dict[str, Any]]
    modified: datetime


def _round(value: Decimal, currency: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-minor_unit_exponent(currency)), ROUND_HALF_UP)


class Store:
    """The stand-in's transactions; every operation runs under ``lock``."""

    def __init__(
        self,
        *,
        accounts: Mapping[str, str],
        companies: Mapping[str, int],
        rates: RateTable,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.accounts = dict(accounts)
        self.companies = dict(companies)
        self.rates = rates
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lock = threading.RLock()
        self.transactions: dict[tuple[str, str, str], Transaction] = {}
        #: Every version a stored transaction had (replaced, then the current).
        self.history: list[Transaction] = []
        #: Operations done: create (stored), estimate, commit, void.
        self.done: Counter[str] = Counter()
        self._next_id = 1_000_000

    # --- queries for tests -----------------------------------------------------------

    def live(self) -> list[tuple[str, str, str]]:
        """(code, type, status) of every stored transaction."""
        with self.lock:
            return sorted((t.code, t.type, t.status) for t in self.transactions.values())

    def committed_count(self, code: str, doc_type: str = "SalesInvoice") -> int:
        """How many times a transaction with this code and type was stored committed."""
        with self.lock:
            return sum(
                1
                for t in self.history
                if (t.code, t.type) == (code, doc_type) and t.model.get("commit")
            )

    # --- operations ------------------------------------------------------------------

    def _company(self, code: Any) -> tuple[str, int]:
        if code is None:
            if len(self.companies) == 1:
                only = next(iter(self.companies))
                return only, self.companies[only]
            raise AvaTaxFault(400, "ValueRequiredError", "Field 'companyCode' is required.")
        if code not in self.companies:
            raise AvaTaxFault(
                404, "EntityNotFoundError", "Company not found.", target="HttpRequest"
            )
        return str(code), self.companies[code]

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def create(self, model: dict[str, Any]) -> Transaction:
        """CreateTransaction (the module docstring's rules)."""
        company, company_id = self._company(model.get("companyCode"))
        doc_type = str(model.get("type") or "SalesOrder")
        code = str(model.get("code") or uuid.uuid4())
        currency = str(model.get("currencyCode") or "USD")
        try:
            minor_unit_exponent(currency)
        except ValueError:
            raise AvaTaxFault(
                400, "InvalidParameterValue", f"currencyCode {currency!r} is not a currency"
            ) from None
        if model.get("taxOverride") and model["taxOverride"].get("type") not in (None, "TaxDate"):
            raise AvaTaxFault(
                400,
                "InvalidParameter",
                f"taxOverride type {model['taxOverride'].get('type')}: the stand-in models"
                " TaxDate only",
            )
        lines = [self._tax_line(model, line, i, currency) for i, line in enumerate(model["lines"])]
        if not lines:
            raise AvaTaxFault(400, "MissingLine", "A transaction must have at least one line.")
        key = (company, code, doc_type)
        old = self.transactions.get(key)
        if old is not None and old.status not in REPLACEABLE:
            raise AvaTaxFault(
                400,
                "TransactionAlreadyExists",
                "A transaction with this code and type already exists.",
            )
        status = "Committed" if model.get("commit") else "Saved"
        txn = Transaction(
            id=self._id(),
            company=company,
            company_id=company_id,
            code=code,
            type=doc_type,
            status=status,
            version=(old.version + 1) if old else 1,
            model=dict(model, code=code, type=doc_type, currencyCode=currency),
            lines=lines,
            modified=self.clock(),
        )
        if doc_type in ESTIMATES:
            txn.status = "Temporary"
            self.done["estimate"] += 1
            return txn
        self.transactions[key] = txn
        self.history.append(txn)
        self.done["create"] += 1
        return txn

    def _destination(self, model: Mapping[str, Any], line: Mapping[str, Any]) -> Mapping[str, Any]:
        for addresses in (line.get("addresses") or {}, model.get("addresses") or {}):
            for role in ("shipTo", "singleLocation"):
                if addresses.get(role):
                    return dict(addresses[role])
        raise AvaTaxFault(
            400,
            "MissingAddress",
            f"Line {line.get('number', '?')}: an address is required for calculation (shipTo"
            " or singleLocation, on the line or the document).",
        )

    def _tax_line(
        self, model: Mapping[str, Any], line: Mapping[str, Any], index: int, currency: str
    ) -> dict[str, Any]:
        destination = self._destination(model, line)
        if not destination.get("country"):
            raise AvaTaxFault(
                400,
                "InvalidAddress",
                f"Line {line.get('number', index + 1)}: the address has no country.",
            )
        amount = Decimal(line["amount"])
        tax_code = line.get("taxCode")
        exempt = tax_code in self.rates.exempt_tax_codes
        taxable = Decimal(0) if exempt else amount
        details = []
        total = Decimal(0)
        for juris in () if exempt else self.rates.jurisdictions(destination):
            tax = _round(taxable * juris.rate, currency)
            total += tax
            details.append(
                {
                    "country": str(destination.get("country")),
                    "region": str(destination.get("region") or ""),
                    "jurisName": juris.name,
                    "jurisType": juris.type,
                    "jurisdictionType": _JURISDICTION_TYPE[juris.type],
                    "taxType": juris.tax_type,
                    "taxName": juris.tax_name or f"{juris.name} TAX",
                    "rate": juris.rate,
                    "taxableAmount": taxable,
                    "tax": tax,
                    "taxCalculated": tax,
                    "nonTaxableAmount": Decimal(0),
                    "exemptAmount": amount - taxable,
                }
            )
        return {
            "lineNumber": str(line.get("number") or index + 1),
            "description": line.get("description"),
            "itemCode": line.get("itemCode"),
            "taxCode": tax_code or "P0000000",
            "quantity": line.get("quantity", 1),
            "lineAmount": amount,
            "taxableAmount": taxable,
            "exemptAmount": amount - taxable,
            "tax": total,
            "taxCalculated": total,
            "isItemTaxable": not exempt,
            "taxIncluded": False,
            "ref1": line.get("ref1"),
            "ref2": line.get("ref2"),
            "details": details,
        }

    def find(self, company: str, code: str, doc_type: str | None) -> Transaction:
        """The transaction by company, code and type (SalesInvoice when no type is given
        and there is one, as AvaTax chooses)."""
        company, _ = self._company(company)
        if doc_type is not None:
            found = self.transactions.get((company, code, doc_type))
        else:
            same = [t for (c, k, _), t in self.transactions.items() if (c, k) == (company, code)]
            sales = [t for t in same if t.type == "SalesInvoice"]
            found = sales[0] if sales else (same[0] if len(same) == 1 else None)
            if found is None and len(same) > 1:
                raise AvaTaxFault(
                    400,
                    "DocumentCodeConflict",
                    "Please specify DocumentType parameter",
                )
        if found is None:
            raise AvaTaxFault(
                404,
                "EntityNotFoundError",
                f"Document with code '{code}' not found.",
                target="HttpRequest",
            )
        return found

    def commit(
        self, company: str, code: str, doc_type: str | None, body: Mapping[str, Any]
    ) -> Transaction:
        txn = self.find(company, code, doc_type)
        if txn.status == "Cancelled":
            raise AvaTaxFault(
                400,
                "InvalidDocumentStatus",
                f"Document '{code}' is Cancelled: it cannot be committed.",
            )
        if body.get("commit"):
            if txn.status != "Committed":
                txn.status = "Committed"
                txn.model["commit"] = True
                txn.modified = self.clock()
                self.done["commit"] += 1
        elif txn.status == "Committed":
            raise AvaTaxFault(
                400,
                "TransactionIsCommitted",
                "Committed transactions cannot be modified by this API.",
            )
        return txn

    def void(
        self, company: str, code: str, doc_type: str | None, body: Mapping[str, Any]
    ) -> Transaction:
        txn = self.find(company, code, doc_type)
        if body.get("code") != "DocVoided":
            raise AvaTaxFault(
                400,
                "InvalidParameter",
                f"void reason {body.get('code')}: the stand-in models DocVoided only",
            )
        if txn.status not in VOIDABLE:
            raise AvaTaxFault(
                400,
                "InvalidDocumentStatus",
                f"Document '{code}' is {txn.status}: it cannot be voided.",
            )
        txn.status = "Cancelled"
        txn.modified = self.clock()
        self.done["void"] += 1
        return txn

    # --- answers ---------------------------------------------------------------------

    def render(self, txn: Transaction, include: set[str] | None) -> dict[str, Any]:
        """The TransactionModel of ``txn``; ``include`` the $include words (lower case),
        None for AvaTax's default (Summary and Addresses, Summary implying details)."""
        words = {"summary", "addresses"} if include is None else include
        with_details = bool(words & {"details", "summary"})
        listed = bool(words & {"lines", "details", "summary", "linesonly"})
        with_lines = listed and "summaryonly" not in words
        model = txn.model
        currency = str(model["currencyCode"])
        total_amount = sum((line["lineAmount"] for line in txn.lines), Decimal(0))
        total_tax = sum((line["tax"] for line in txn.lines), Decimal(0))
        total_taxable = sum((line["taxableAmount"] for line in txn.lines), Decimal(0))
        total_exempt = sum((line["exemptAmount"] for line in txn.lines), Decimal(0))
        override = model.get("taxOverride") or {}
        day = str(model.get("date"))[:10]
        doc: dict[str, Any] = {
            "id": txn.id,
            "code": txn.code,
            "companyId": txn.company_id,
            "date": day,
            "status": txn.status,
            "type": txn.type,
            "currencyCode": currency,
            "customerVendorCode": model.get("customerCode"),
            "customerCode": model.get("customerCode"),
            "reconciled": False,
            "referenceCode": model.get("referenceCode"),
            "totalAmount": total_amount,
            "totalExempt": total_exempt,
            "totalDiscount": Decimal(0),
            "totalTax": total_tax,
            "totalTaxable": total_taxable,
            "totalTaxCalculated": total_tax,
            "adjustmentReason": "NotAdjusted",
            "locked": False,
            "version": txn.version,
            "description": model.get("description"),
            "businessIdentificationNo": model.get("businessIdentificationNo"),
            "modifiedDate": txn.modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "taxDate": str(override.get("taxDate") or day)[:10],
            "exchangeRate": Decimal(1),
            "exchangeRateCurrencyCode": currency,
        }
        if override.get("type"):
            doc["taxOverrideType"] = override["type"]
            doc["taxOverrideReason"] = override.get("reason")
        if with_lines:
            doc["lines"] = [
                {
                    "id": txn.id * 1000 + i,
                    "transactionId": txn.id,
                    **{k: v for k, v in line.items() if k != "details"},
                    "taxDate": doc["taxDate"],
                    "reportingDate": day,
                    **({"details": line["details"]} if with_details else {}),
                }
                for i, line in enumerate(txn.lines, start=1)
            ]
        if "summary" in words or "summaryonly" in words:
            doc["summary"] = self._summary(txn)
        if "addresses" in words:
            doc["addresses"] = [
                {
                    "id": txn.id * 10 + i,
                    "transactionId": txn.id,
                    "boundaryLevel": "Zip5",
                    **{k: v for k, v in address.items() if k in _ADDRESS_KEYS},
                }
                for i, address in enumerate((model.get("addresses") or {}).values(), start=1)
                if isinstance(address, dict)
            ]
        return {k: v for k, v in doc.items() if v is not None}

    def _summary(self, txn: Transaction) -> list[dict[str, Any]]:
        by: dict[tuple[str, str], dict[str, Any]] = {}
        for line in txn.lines:
            for d in line["details"]:
                row = by.setdefault(
                    (d["jurisName"], d["taxName"]),
                    {
                        "country": d["country"],
                        "region": d["region"],
                        "jurisType": d["jurisdictionType"],
                        "jurisName": d["jurisName"],
                        "taxType": d["taxType"],
                        "taxName": d["taxName"],
                        "rate": d["rate"],
                        "taxable": Decimal(0),
                        "tax": Decimal(0),
                        "taxCalculated": Decimal(0),
                        "nonTaxable": Decimal(0),
                        "exemption": Decimal(0),
                    },
                )
                row["taxable"] += d["taxableAmount"]
                row["tax"] += d["tax"]
                row["taxCalculated"] += d["taxCalculated"]
                row["exemption"] += d["exemptAmount"]
        return list(by.values())

    def ping(self, account: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = {"version": "stand-in", "authenticated": account is not None}
        if account is not None:
            doc["authenticationType"] = "AccountIdLicenseKey"
            doc["authenticatedAccountId"] = int(account) if account.isdigit() else 0
        return doc


_ADDRESS_KEYS = ("line1", "line2", "line3", "city", "region", "postalCode", "country")
