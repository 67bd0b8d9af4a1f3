"""The tax sink: each finalized invoice's tax committed in AvaTax and recorded in the
ledger; each void voided there (docs/tax.md).

``invoice.finalized``: for each transaction of the invoice (mapping.plan_documents),
look it up by code and type; create and commit it when AvaTax has none (or holds it
uncommitted: a create with the same code replaces an uncommitted transaction); when the
create answers that the code exists (TransactionAlreadyExists, DocumentCodeConflict,
or GetTaxError's "DocStatus is invalid": a retry after the first create committed, or
another deliverer), fetch it instead. A transaction found under our code must hold our
lines at our amounts, else the event is parked (someone else used the code). Then the
ledger records every transaction and the invoice's tax (billing.tax.record_tax).
An invoice void in the ledger by then gets no new transaction (its void follows).

``invoice.voided``: void every transaction recorded for the invoice (reason DocVoided);
one already Cancelled, or gone, counts as voided. Then the ledger records the void.

Exactly once in effect: a code names one transaction in AvaTax, and the sink looks
before it creates; whatever a crash or retry interrupted, delivering again finds what
exists and finishes. Errors: TransientSinkError (AvaTax unreachable, 5xx, 429: retried
by the outbox), PermanentSinkError (a refusal or a conflict a person must resolve:
parked), SinkRefusedCredentials (401/403: the run stops). An answer the ledger cannot record as
it is (mapping.AnswerInvalid: a field missing or of another type, totals that are not
the sums of the lines, an amount beyond the ledger's range), or a create that did not
commit, parks the event with what is wrong; nothing is recorded.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from billing.bulk import in_range
from billing.outbox import EventDoc, InvoiceDoc
from billing.tax import CustomerTaxProfile, RecordedDocument
from meterline.sinks import (
    PermanentSinkError,
    SinkError,
    SinkRefusedCredentials,
    TransientSinkError,
)
from meterline.sinks.tax import mapping
from meterline.sinks.tax.avatax import AvaTaxApi, AvaTaxError, AvaTaxUnavailable
from meterline.sinks.tax.mapping import Corrected, DocumentRequest, MappingError

#: AvaTax's answers to a create whose code it already holds committed (its error
#: reference: TransactionAlreadyExists 1303, DocumentCodeConflict 303).
EXISTS = frozenset({"TransactionAlreadyExists", "DocumentCodeConflict"})
#: AvaTax's statuses of a transaction that a create with the same code replaces.
REPLACEABLE = frozenset({"Temporary", "Saved", "Posted"})
COMMITTED = "Committed"
CANCELLED = "Cancelled"


class TaxDirectory(Protocol):
    """What the sink needs of the ledger; each call its own short transaction."""

    def profile(self, customer: str) -> CustomerTaxProfile | None: ...

    def tax_codes(self) -> Mapping[str, str]: ...

    def corrected(
        self, subscription: str, starts: Collection[datetime]
    ) -> dict[datetime, Corrected]: ...

    def documents(self, invoice_id: int) -> list[RecordedDocument]: ...

    def record(self, invoice_id: int, documents: Sequence[RecordedDocument]) -> bool:
        """Record the invoice's tax; True when it was pending (not recorded before)."""
        ...

    def record_void(self, invoice_id: int, voided: Sequence[tuple[str, str]]) -> None: ...

    def is_void(self, invoice_id: int) -> bool: ...


def _exists(exc: AvaTaxError) -> bool:
    if exc.code in EXISTS:
        return True
    # Before TransactionAlreadyExists, AvaTax answered a create of a committed code with
    # GetTaxError "DocStatus is invalid for this operation" (its developer blog, 2017).
    return exc.code == "GetTaxError" and "DocStatus" in str(exc)


def failure(exc: AvaTaxError | AvaTaxUnavailable) -> SinkError:
    """The sink's error for an AvaTax failure."""
    if isinstance(exc, AvaTaxUnavailable):
        return TransientSinkError(str(exc))
    said = str(exc).rstrip(".")  # AvaTax's messages end with a full stop; ours follow
    if exc.status in (401, 403):
        return SinkRefusedCredentials(
            f"{said}: check METERLINE_AVALARA_ACCOUNT_ID and METERLINE_AVALARA_LICENSE_KEY"
        )
    if exc.status == 408 or exc.status == 429 or exc.status >= 500:
        return TransientSinkError(str(exc))
    return PermanentSinkError(
        f"{said}: fix the cause, then `meterline outbox replay --from ID --sink avalara`"
    )


class TaxSink:
    """Delivers invoice events to AvaTax (the module docstring)."""

    name = "avalara"

    def __init__(self, api: AvaTaxApi, directory: TaxDirectory) -> None:
        self.api = api
        self.directory = directory
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._tax_codes: Mapping[str, str] | None = None

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def deliver(self, event: EventDoc) -> str | None:
        try:
            if event.kind == "invoice.finalized":
                return self._finalized(event.invoice)
            if event.kind == "invoice.voided":
                return self._voided(event.invoice)
        except (AvaTaxError, AvaTaxUnavailable) as exc:
            raise failure(exc) from exc
        except MappingError as exc:
            raise PermanentSinkError(str(exc)) from exc
        raise PermanentSinkError(f"the tax sink does not know events of kind {event.kind}")

    def _codes(self) -> Mapping[str, str]:
        if self._tax_codes is None:
            self._tax_codes = self.directory.tax_codes()
        return self._tax_codes

    def plan(self, doc: InvoiceDoc) -> list[DocumentRequest]:
        """The invoice's transactions (mapping.plan_documents with the ledger's facts)."""
        starts = mapping.corrected_period_starts(doc)
        corrected = self.directory.corrected(doc.subscription, starts) if starts else {}
        return mapping.plan_documents(
            doc,
            prefix=self.api.config.document_prefix,
            tax_codes=self._codes(),
            corrected=corrected,
        )

    def _finalized(self, doc: InvoiceDoc) -> str | None:
        profile = self.directory.profile(doc.customer)
        if profile is None:
            raise PermanentSinkError(f"customer {doc.customer} is not in the ledger")
        requests = self.plan(doc)
        void_now = self.directory.is_void(doc.invoice_id)
        recorded: list[RecordedDocument] = []
        for request in requests:
            found = self.api.get(request.code, request.type)
            if found is not None and found.get("status") == CANCELLED:
                if not void_now:
                    raise PermanentSinkError(
                        f"AvaTax holds {request.code} ({request.type}) voided, but invoice"
                        f" {doc.invoice_id} is finalized in the ledger: a person voided it"
                        " there; void the invoice in the ledger (`meterline invoices void`)"
                        " or give the ledger a new METERLINE_AVALARA_DOCUMENT_PREFIX"
                    )
            elif found is None or found.get("status") in REPLACEABLE:
                if void_now:
                    # Voided before its tax was computed: nothing to tax, nothing to void.
                    continue
                found = self._create(request, profile)
                if found.get("status") != COMMITTED:
                    raise PermanentSinkError(
                        f"AvaTax holds {request.code} ({request.type}) with status"
                        f" {mapping.shown(found.get('status'))} after a create that commits it:"
                        " commit it in AvaTax (or allow the company to commit), then"
                        " `meterline outbox replay` the event"
                    )
            self._check(request, found)
            recorded.append(mapping.recorded_document(found, request))
        if void_now and not recorded:
            self.directory.record_void(doc.invoice_id, [])
            return None
        with_tax = doc.total_minor + sum(d.tax_minor for d in recorded)
        if not in_range(with_tax):
            raise PermanentSinkError(
                f"invoice {doc.invoice_id}'s total with the tax AvaTax returned is"
                f" {with_tax:,} minor units, beyond the ledger's range: nothing was recorded;"
                " void the transactions in AvaTax and the invoice in the ledger"
            )
        if self.directory.record(doc.invoice_id, recorded):
            self._count("invoices_taxed")  # a replay that finds it recorded counts nothing
        return requests[0].code

    def _create(self, request: DocumentRequest, profile: CustomerTaxProfile) -> dict[str, Any]:
        model = mapping.create_model(
            request,
            company_code=self.api.config.company_code,
            origin=self.api.config.origin,
            profile=profile,
        )
        try:
            created = self.api.create(model)
        except AvaTaxError as exc:
            if not _exists(exc):
                raise
            # Committed already (our earlier try, or another deliverer): fetch it.
            found = self.api.get(request.code, request.type)
            if found is None:
                raise TransientSinkError(
                    f"AvaTax says {request.code} ({request.type}) exists, then finds none;"
                    " trying again later"
                ) from exc
            self._count("found_existing")
            return found
        self._count("transactions_created")
        return created

    def _check(self, request: DocumentRequest, found: Mapping[str, Any]) -> None:
        problems = mapping.differences(request, found)
        if problems:
            raise PermanentSinkError(
                f"AvaTax holds {request.code} ({request.type}) with other content ("
                + "; ".join(problems[:5])
                + "): it was not made from this invoice as it is. Void it in AvaTax, or give"
                " this ledger its own METERLINE_AVALARA_DOCUMENT_PREFIX, then `meterline"
                " outbox replay` the event"
            )

    def _voided(self, doc: InvoiceDoc) -> str | None:
        documents = self.directory.documents(doc.invoice_id)
        voided: list[tuple[str, str]] = []
        for recorded in documents:
            self._void(recorded.code, recorded.type)
            voided.append((recorded.code, recorded.type))
        self.directory.record_void(doc.invoice_id, voided)
        return documents[0].code if documents else None

    def _void(self, code: str, doc_type: str) -> None:
        try:
            self.api.void(code, doc_type)
        except AvaTaxError as exc:
            if exc.status == 404 or exc.code == "EntityNotFoundError":
                return  # nothing there to void
            found = self.api.get(code, doc_type)
            if found is None or found.get("status") == CANCELLED:
                return  # voided already (an earlier try whose answer was lost)
            raise
        self._count("transactions_voided")
