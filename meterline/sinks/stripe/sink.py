"""The Stripe sink: brings Stripe to the state an outbox event describes, with the
effect of one delivery however often it runs (docs/stripe.md, "Exactly once").

- ``invoice.finalized``: the customer (found or created once), one Stripe invoice for the
  ledger invoice (a draft: no pending items swept in, ``auto_advance`` off while lines
  are added), one invoice item per ledger line (added in bulk, ``add_lines``), its
  subtotal checked against the ledger's total, then finalized with ``auto_advance`` on
  (collection then follows Stripe's settings).
- ``invoice.adjustments_posted``: the draft's adjustment lines as items of that invoice's
  Stripe draft (created if needed), stale ones removed.
- ``invoice.voided``: a Stripe draft is deleted, an open invoice voided, a paid one
  credited in full by a credit note (Stripe cannot void a paid invoice).

Before creating anything the sink looks the object up by our id in its metadata
(idempotency keys expire after 24 hours, and a crash can fall between Stripe's answer
and our record of it); every POST also carries an idempotency key derived from the
outbox event, so a retried request is replayed by Stripe, never doubled.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import stripe

from billing.outbox import EventDoc, InvoiceDoc, LineDoc
from meterline.sinks import (
    PermanentSinkError,
    SinkError,
    SinkRefusedCredentials,
    TransientSinkError,
)
from meterline.sinks.stripe import mapping
from meterline.sinks.stripe.client import StripeApi
from meters.crashpoints import crash_point


@dataclass(frozen=True)
class CustomerTerms:
    """A customer's Stripe id (from the customers file) and invoice terms; None: the
    settings' default (for the id: find or create the customer)."""

    stripe_customer_id: str | None = None
    collection_method: str | None = None
    days_until_due: int | None = None


@dataclass(frozen=True)
class Ref:
    """An id recorded for one of our objects (``kind``: customer, invoice, line)."""

    kind: str
    local_id: str
    external_id: str
    parent_external_id: str | None = None


class Directory(Protocol):
    """What the sink reads and records in the ledger (meterline.jobs.deliver)."""

    def terms(self, customer: str) -> CustomerTerms: ...

    def ref(self, kind: str, local_id: str) -> str | None: ...

    def record(self, refs: Sequence[Ref]) -> None: ...

    def forget(self, kind: str, local_id: str) -> None: ...

    def is_void(self, invoice_id: int) -> bool: ...

    def untouched(self, event_id: int) -> bool:
        """No event of this event's invoice was attempted before this delivery of it: the
        sink has made nothing in Stripe for that invoice yet."""
        ...


@dataclass(frozen=True)
class Delivered:
    """What one delivery did in Stripe (for logs and the demo's totals)."""

    invoice_id: str | None
    items_added: int = 0
    items_removed: int = 0
    action: str = ""


#: How many times a listing starts again when the invoice its next page starts after was
#: deleted meanwhile (invoices_created_since).
LIST_RESTARTS = 3


class Fields(dict[str, Any]):
    """A Stripe object as plain JSON, its fields also read as attributes (as the SDK's
    objects are): ``json.loads(body, object_hook=Fields)``. A field Stripe left out is
    an AttributeError, as with the SDK."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _meta(obj: Any, key: str) -> str | None:
    """A metadata value of a Stripe object (the SDK's objects are not dicts)."""
    metadata = getattr(obj, "metadata", None)
    if metadata is None:
        return None
    data = metadata if isinstance(metadata, dict) else metadata.to_dict()
    value = data.get(key)
    return None if value is None else str(value)


def _invoice_item_id(line_item: Any) -> str:
    """The invoice item behind a Stripe invoice line item (API 2025+: in ``parent``)."""
    parent = getattr(line_item, "parent", None)
    details = getattr(parent, "invoice_item_details", None) if parent else None
    item = getattr(details, "invoice_item", None) if details else None
    return str(item or line_item.id)


class StripeSink:
    """Delivers outbox events to Stripe (one Stripe account)."""

    name = "stripe"

    def __init__(self, api: StripeApi, directory: Directory) -> None:
        self.api = api
        self.client = api.client
        self.directory = directory
        #: Totals over every delivery by this sink (items added and removed, actions).
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    # -- the entry point ---------------------------------------------------------------

    def deliver(self, event: EventDoc) -> str | None:
        """Apply ``event``; return the Stripe invoice id (None when a void found nothing
        in Stripe). Raises TransientSinkError or PermanentSinkError."""
        try:
            if event.kind == "invoice.voided":
                done = self._void(event)
            elif event.kind in ("invoice.finalized", "invoice.adjustments_posted"):
                done = self._invoice(event)
            else:
                raise PermanentSinkError(
                    f"the Stripe sink does not know events of kind {event.kind}"
                )
        except mapping.AmountNotRepresentable as exc:
            raise PermanentSinkError(f"invoice {event.invoice.invoice_id}: {exc}") from None
        except stripe.StripeError as exc:
            raise stripe_failure(exc) from None
        with self._lock:
            self.counts["items_added"] += done.items_added
            self.counts["items_removed"] += done.items_removed
            self.counts[done.action] += 1
        return done.invoice_id

    def _post(self, what: str, fn: Any, *args: Any, params: Any, key: str) -> Any:
        """A POST with its idempotency key (every create or change the sink makes)."""
        return self.api.call(what, fn, *args, params=params, options={"idempotency_key": key})

    # -- customers ---------------------------------------------------------------------

    def known_customer(self, customer: str) -> str | None:
        """The customer's Stripe id as the ledger knows it: the customers file's, else the
        one recorded; None: neither."""
        terms = self.directory.terms(customer)
        return terms.stripe_customer_id or self.directory.ref("customer", customer)

    def _customer(self, doc: InvoiceDoc) -> str:
        """The customer's Stripe id: the one the ledger knows (known_customer), else the
        one Stripe holds with our id in its metadata, else a new one (once)."""
        known = self.known_customer(doc.customer)
        if known:
            return known
        query = f"metadata['{mapping.CUSTOMER_KEY}']:'{_quoted(doc.customer)}'"
        found = self.api.call(
            "customers.search", self.client.v1.customers.search, params={"query": query}
        )
        if found.data:
            customer_id = str(found.data[0].id)
        else:
            params = mapping.customer_create(doc)
            created = self._post(
                "customers.create",
                self.client.v1.customers.create,
                params=params,
                key=mapping.idempotency_key("meterline", "customer", doc.customer, params=params),
            )
            customer_id = str(created.id)
        self.directory.record([Ref("customer", doc.customer, customer_id)])
        return customer_id

    # -- invoices ----------------------------------------------------------------------

    def find_invoice(self, doc: InvoiceDoc, customer_id: str | None) -> Any | None:
        """The Stripe invoice of a ledger invoice: by the recorded id, else by our id in
        the metadata of the customer's invoices."""
        known = self.directory.ref("invoice", str(doc.invoice_id))
        if known:
            try:
                return self.api.call("invoices.retrieve", self.client.v1.invoices.retrieve, known)
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 404:
                    raise
        if customer_id is None:
            return None
        found = self.invoices_for(doc, customer_id)
        return found[0] if found else None

    def invoices_for(self, doc: InvoiceDoc, customer_id: str) -> list[Any]:
        """Every Stripe invoice of ``customer_id`` that names ledger invoice ``doc`` in its
        metadata, newest first (Stripe lists deleted drafts nowhere)."""
        listed = self.api.call(
            "invoices.list",
            self.client.v1.invoices.list,
            params={"customer": customer_id, "limit": 100},
        )
        return [
            invoice
            for invoice in self._pages(listed, "invoices.list")
            if _meta(invoice, mapping.INVOICE_KEY) == str(doc.invoice_id)
        ]

    def invoices_created_since(self, since: datetime) -> dict[str, list[Any]]:
        """Every Stripe invoice created at or after ``since`` that names a ledger invoice in
        its metadata, by that ledger invoice id, newest first: the account's invoices
        listed in pages of 100 (Stripe's `created[gte]` filter; deleted drafts are listed
        nowhere). One request per 100 invoices, where asking per ledger invoice takes one
        each (`meterline stripe reconcile`).

        Read as plain JSON (``Fields``), not as the SDK's objects: building those took
        ~10 ms per invoice with its lines, more than the request itself."""
        params: dict[str, Any] = {"created": {"gte": int(since.timestamp())}, "limit": 100}
        found: dict[str, list[Any]] = {}
        restarts = 0
        while True:
            try:
                page = self.api.call(
                    "invoices.list", self.client.raw_request, "get", "/v1/invoices", **params
                )
            except stripe.InvalidRequestError as exc:
                # The last invoice of the page before was deleted since (a draft someone
                # removed meanwhile): the cursor names nothing now. List again, from the
                # start (a few times: drafts are not deleted often).
                if exc.param != "starting_after" or restarts == LIST_RESTARTS:
                    raise
                restarts += 1
                params.pop("starting_after")
                found = {}
                continue
            listed = json.loads(page.body, object_hook=Fields)
            for invoice in listed.data:
                ours = _meta(invoice, mapping.INVOICE_KEY)
                if ours is not None:
                    found.setdefault(ours, []).append(invoice)
            if not listed.has_more or not listed.data:
                return found
            params["starting_after"] = listed.data[-1].id

    def credited(self, invoice: Any) -> int:
        """What the credit notes of a Stripe invoice (not void) credit, in Stripe's unit."""
        listed = self.api.call(
            "credit_notes.list",
            self.client.v1.credit_notes.list,
            params={"invoice": str(invoice.id), "limit": 100},
        )
        return sum(
            int(note.amount)
            for note in self._pages(listed, "credit_notes.list")
            if note.status != "void"
        )

    def _pages(self, first: Any, what: str) -> Iterable[Any]:
        page = first
        while True:
            yield from page.data
            if not page.has_more or not page.data:
                return
            page = self.api.call(what, page.next_page)

    def _invoice(self, event: EventDoc) -> Delivered:
        try:
            return self._invoice_once(event)
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing" or exc.param != "customer":
                raise
            doc = event.invoice
            if self.directory.terms(doc.customer).stripe_customer_id:
                raise PermanentSinkError(
                    f"customer {doc.customer}: the customers file's stripe_customer_id is not"
                    f" a customer of this Stripe account ({_message(exc)}); correct the file"
                    " and `meterline customers load` it, then `meterline outbox replay`"
                ) from None
            # The recorded id is a shortcut, not the truth (another account or key, or the
            # customer deleted in Stripe): forget it, and look or create again, once.
            self.directory.forget("customer", doc.customer)
            return self._invoice_once(event)

    def _invoice_once(self, event: EventDoc) -> Delivered:
        doc = event.invoice
        # What Stripe cannot take is refused before anything is created there.
        for line in doc.lines:
            mapping.add_line(line, doc.timezone)
        mapping.stripe_amount(doc.total_minor, doc.currency)
        if len(doc.lines) > mapping.MAX_ITEMS:
            raise PermanentSinkError(
                f"invoice {doc.invoice_id} has {len(doc.lines)} lines; a Stripe invoice holds"
                f" at most {mapping.MAX_ITEMS} items"
            )
        customer_id = self._customer(doc)
        # The first attempt at an invoice: Stripe holds nothing of it, so nothing to look
        # for (one request less per new invoice); else look by id, then by metadata.
        untouched = self.directory.untouched(event.event_id)
        invoice = None if untouched else self.find_invoice(doc, customer_id)
        if invoice is not None and str(invoice.customer) != customer_id:
            if invoice.status != "draft":
                raise PermanentSinkError(
                    f"Stripe invoice {invoice.id} of ledger invoice {doc.invoice_id} belongs to"
                    f" Stripe customer {invoice.customer}, but {doc.customer} is now"
                    f" {customer_id}: see `meterline stripe reconcile`"
                )
            # The customer's Stripe id changed (customers file): the draft moves there.
            self.api.call("invoices.delete", self.client.v1.invoices.delete, str(invoice.id))
            invoice = None
        # A draft this call created (not a replayed answer) has no lines yet: no need to
        # list them before adding.
        fresh = False
        if invoice is None:
            terms = self.directory.terms(doc.customer)
            params = mapping.invoice_create(
                doc,
                customer_id,
                collection_method=terms.collection_method or self.api.config.collection_method,
                days_until_due=terms.days_until_due or self.api.config.days_until_due,
            )
            invoice = self._post(
                "invoices.create",
                self.client.v1.invoices.create,
                params=params,
                key=mapping.idempotency_key("meterline", "invoice", doc.invoice_id, params=params),
            )
            fresh = not _replayed(invoice)
        self.directory.record([Ref("invoice", str(doc.invoice_id), str(invoice.id), customer_id)])
        finalizing = event.kind == "invoice.finalized"
        if invoice.status in ("void", "uncollectible"):
            if self.directory.is_void(doc.invoice_id):
                # Voided in the ledger since, and its void delivered: this is a replay.
                return Delivered(str(invoice.id), action="superseded by the void")
            raise PermanentSinkError(
                f"Stripe invoice {invoice.id} of ledger invoice {doc.invoice_id} is"
                f" {invoice.status} in Stripe, but not in the ledger: someone changed it in"
                " Stripe; see `meterline stripe reconcile`"
            )
        if invoice.status != "draft":
            if finalizing:
                # Delivered before (a replay, or the record of it was lost): prove it.
                differences = self.compare(doc, invoice)
                if differences:
                    raise PermanentSinkError(
                        f"Stripe invoice {invoice.id} is {invoice.status} and differs from"
                        f" ledger invoice {doc.invoice_id}: {'; '.join(differences[:3])};"
                        " see `meterline stripe reconcile`"
                    )
                self._record_lines(doc, invoice)
                return Delivered(str(invoice.id), action="already delivered")
            # A snapshot of a draft that has been finalized since (this event is
            # replayed): superseded. Only our finalize advances a Stripe invoice we
            # created (auto_advance off), and it made the invoice equal to the ledger's
            # final lines, checked then and by `meterline stripe reconcile`.
            return Delivered(str(invoice.id), action="superseded by finalization")
        invoice, added, removed = self._sync_lines(
            event, invoice, only_adjustments=not finalizing, empty=fresh
        )
        if finalizing:
            # The draft holds the lines; Stripe's invoice is not finalized yet.
            crash_point("stripe.after_lines")
            want = mapping.stripe_amount(doc.total_minor, doc.currency)
            if invoice.subtotal != want:
                raise PermanentSinkError(
                    f"Stripe draft {invoice.id} adds up to {invoice.subtotal} but ledger invoice"
                    f" {doc.invoice_id} totals {want} ({doc.currency}): not finalized; see"
                    " `meterline stripe reconcile`"
                )
            invoice = self._post(
                "invoices.finalize",
                self.client.v1.invoices.finalize_invoice,
                str(invoice.id),
                params={"auto_advance": True},
                key=mapping.idempotency_key(mapping.event_scope(event), "finalize"),
            )
            self._record_lines(doc, invoice)
        return Delivered(str(invoice.id), added, removed, "finalized" if finalizing else "lines")

    def lines_of(self, invoice: Any) -> list[Any]:
        """Every line item of a Stripe invoice (all pages)."""
        listed = self.api.call(
            "invoices.lines",
            self.client.v1.invoices.line_items.list,
            str(invoice.id),
            params={"limit": 100},
        )
        return list(self._pages(listed, "invoices.lines"))

    def _sync_lines(
        self, event: EventDoc, invoice: Any, *, only_adjustments: bool, empty: bool = False
    ) -> tuple[Any, int, int]:
        """Make the draft's items (ours; only adjustment ones when ``only_adjustments``)
        exactly the event's lines: add the missing, remove the stale or changed. ``empty``:
        the draft is known to have no items (not listed)."""
        doc = event.invoice
        wanted = {str(line.line_id): line for line in doc.lines}
        have: dict[str, Any] = {}
        stale: list[str] = []
        for item in [] if empty else self.lines_of(invoice):
            line_id = _meta(item, mapping.LINE_KEY)
            if line_id is None:
                continue  # not ours: the subtotal check refuses to finalize over it
            if only_adjustments and _meta(item, "meterline_kind") != "adjustment":
                continue
            line = wanted.get(line_id)
            if (
                line is None
                or line_id in have
                or item.amount != mapping.stripe_amount(line.amount_minor, line.currency)
            ):
                stale.append(str(item.id))
            else:
                have[line_id] = item
        if stale:
            invoice = self._post(
                "invoices.remove_lines",
                self.client.v1.invoices.remove_lines,
                str(invoice.id),
                params={"lines": [{"id": i, "behavior": "delete"} for i in stale]},
                key=mapping.idempotency_key(mapping.event_scope(event), "remove", params=stale),
            )
        missing = [line for key, line in wanted.items() if key not in have]
        for start in range(0, len(missing), mapping.ADD_LINES_MAX):
            chunk = missing[start : start + mapping.ADD_LINES_MAX]
            lines = [mapping.add_line(line, doc.timezone) for line in chunk]
            invoice = self._post(
                "invoices.add_lines",
                self.client.v1.invoices.add_lines,
                str(invoice.id),
                params={"lines": lines},
                key=mapping.idempotency_key(
                    mapping.event_scope(event),
                    "add",
                    chunk[0].line_id,
                    chunk[-1].line_id,
                    params=lines,
                ),
            )
        if not stale and not missing and invoice.subtotal is None:
            invoice = self.api.call(
                "invoices.retrieve", self.client.v1.invoices.retrieve, str(invoice.id)
            )
        return invoice, len(missing), len(stale)

    def all_lines(self, invoice: Any) -> list[Any]:
        """Every line item of a Stripe invoice: the invoice's own first page of lines
        when it holds them all (no request; Stripe embeds the first 10), else listed."""
        embedded = getattr(invoice, "lines", None)
        if embedded is not None and not embedded.has_more:
            return list(embedded.data)
        return self.lines_of(invoice)

    def _record_lines(self, doc: InvoiceDoc, invoice: Any) -> None:
        """Record each line's invoice item id (from all_lines)."""
        items = self.all_lines(invoice)
        refs = [
            Ref("line", line_id, _invoice_item_id(item), str(invoice.id))
            for item in items
            if (line_id := _meta(item, mapping.LINE_KEY)) is not None
        ]
        self.directory.record(refs)

    # -- comparing (also `meterline stripe reconcile`) --------------------------------

    def compare(self, doc: InvoiceDoc, invoice: Any) -> list[str]:
        """Differences between a ledger invoice and its Stripe invoice, by our line ids:
        missing, extra (ours or not), different amount, different subtotal."""
        return compare_lines(doc, invoice, self.lines_of(invoice))

    # -- voids -------------------------------------------------------------------------

    def _void(self, event: EventDoc) -> Delivered:
        doc = event.invoice
        terms = self.directory.terms(doc.customer)
        customer_id = terms.stripe_customer_id or self.directory.ref("customer", doc.customer)
        invoice = self.find_invoice(doc, customer_id)
        if invoice is None:
            return Delivered(None, action="nothing in Stripe")
        if invoice.status == "draft":
            try:
                self.api.call("invoices.delete", self.client.v1.invoices.delete, str(invoice.id))
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 404:
                    raise
            return Delivered(str(invoice.id), action="draft deleted")
        if invoice.status in ("open", "uncollectible"):
            self._post(
                "invoices.void",
                self.client.v1.invoices.void_invoice,
                str(invoice.id),
                params={},
                key=mapping.idempotency_key(mapping.event_scope(event), "void"),
            )
            return Delivered(str(invoice.id), action="voided")
        if invoice.status == "paid":
            return self._credit(event, invoice)
        return Delivered(str(invoice.id), action=f"already {invoice.status}")

    def _credit(self, event: EventDoc, invoice: Any) -> Delivered:
        """A paid invoice cannot be voided in Stripe. Its effect is undone instead, once
        (looked up by our event key first): a positive total is credited back by a credit
        note (to the customer's balance); a negative total, which Stripe put on the
        customer's balance as a credit when it was finalized, is taken back by a balance
        transaction of the opposite amount."""
        total = int(invoice.total)
        if total < 0:
            return self._reverse_balance(event, invoice, -total)
        listed = self.api.call(
            "credit_notes.list",
            self.client.v1.credit_notes.list,
            params={"invoice": str(invoice.id), "limit": 100},
        )
        credited = 0
        for note in self._pages(listed, "credit_notes.list"):
            if note.status == "void":
                continue
            if _meta(note, "meterline_event") == event.idempotency_key:
                return Delivered(str(invoice.id), action=f"credited by {note.id}")
            credited += int(note.amount)
        amount = total - credited
        if amount <= 0:
            return Delivered(str(invoice.id), action="paid, nothing left to credit")
        params = {
            "invoice": str(invoice.id),
            "amount": amount,
            "credit_amount": amount,
            "reason": "order_change",
            "memo": f"Invoice {event.invoice.invoice_id} was voided in our billing",
            "metadata": {
                "meterline_event": event.idempotency_key,
                mapping.INVOICE_KEY: str(event.invoice.invoice_id),
            },
        }
        note = self._post(
            "credit_notes.create",
            self.client.v1.credit_notes.create,
            params=params,
            key=mapping.idempotency_key(mapping.event_scope(event), "credit_note", params=params),
        )
        return Delivered(
            str(invoice.id), action=f"paid: credited {amount} by credit note {note.id}"
        )

    def balance_reversal(self, customer_id: str, event_key: str) -> Any | None:
        """Our balance transaction for a void event, if Stripe holds one."""
        listed = self.api.call(
            "balance_transactions.list",
            self.client.v1.customers.balance_transactions.list,
            customer_id,
            params={"limit": 100},
        )
        for txn in self._pages(listed, "balance_transactions.list"):
            if _meta(txn, "meterline_event") == event_key:
                return txn
        return None

    def _reverse_balance(self, event: EventDoc, invoice: Any, amount: int) -> Delivered:
        customer_id = str(invoice.customer)
        found = self.balance_reversal(customer_id, event.idempotency_key)
        if found is not None:
            return Delivered(str(invoice.id), action=f"balance credit taken back by {found.id}")
        params = {
            "amount": amount,
            "currency": str(invoice.currency),
            "description": (
                f"Invoice {event.invoice.invoice_id} ({invoice.id}) was voided in our billing:"
                " its credit is taken back"
            ),
            "metadata": {
                "meterline_event": event.idempotency_key,
                mapping.INVOICE_KEY: str(event.invoice.invoice_id),
            },
        }
        txn = self._post(
            "balance_transactions.create",
            self.client.v1.customers.balance_transactions.create,
            customer_id,
            params=params,
            key=mapping.idempotency_key(mapping.event_scope(event), "balance", params=params),
        )
        return Delivered(
            str(invoice.id), action=f"paid with a credit: {amount} taken back by {txn.id}"
        )


def compare_lines(doc: InvoiceDoc, invoice: Any, items: Sequence[Any]) -> list[str]:
    """Pure: what differs between the ledger invoice ``doc`` and Stripe's ``invoice`` with
    its line ``items`` (amounts compared in Stripe's unit)."""
    differences: list[str] = []
    by_line: dict[str, list[Any]] = {}
    for item in items:
        line_id = _meta(item, mapping.LINE_KEY)
        if line_id is None:
            differences.append(f"extra item {item.id} ({item.amount}) not from the ledger")
            continue
        by_line.setdefault(line_id, []).append(item)
    lines: dict[str, LineDoc] = {str(line.line_id): line for line in doc.lines}
    for line_id, line in lines.items():
        found = by_line.get(line_id, [])
        want = mapping.stripe_amount(line.amount_minor, line.currency)
        if not found:
            differences.append(f"line {line_id} ({want}) missing")
        elif len(found) > 1:
            differences.append(f"line {line_id} delivered {len(found)} times")
        elif found[0].amount != want:
            differences.append(f"line {line_id}: Stripe {found[0].amount}, ledger {want}")
    for line_id, found in by_line.items():
        if line_id not in lines:
            differences.append(f"extra item {found[0].id} for line {line_id} not on this invoice")
    want_total = mapping.stripe_amount(doc.total_minor, doc.currency)
    if invoice.subtotal != want_total:
        differences.append(f"subtotal: Stripe {invoice.subtotal}, ledger {want_total}")
    if str(invoice.currency).upper() != doc.currency.upper():
        differences.append(f"currency: Stripe {invoice.currency}, ledger {doc.currency}")
    return differences


def stripe_failure(exc: stripe.StripeError) -> SinkError:
    """What a Stripe error means for us: the key refused (401/403: stop, nobody's
    fault), Stripe out of reach or busy (connection, timeout, 429, 409, 5xx: try again
    later), or a refusal retrying cannot change (any other 4xx)."""
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return SinkRefusedCredentials(
            f"Stripe refused the API key: {_message(exc)}; check METERLINE_STRIPE_API_KEY"
            " (or the stripe_default Connection)"
        )
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return TransientSinkError(f"Stripe unreachable or rate limited: {_message(exc)}")
    if (exc.http_status or 0) >= 500 or exc.http_status == 409:
        return TransientSinkError(f"Stripe failed: {_message(exc)}")
    return PermanentSinkError(f"Stripe refused: {_message(exc)}")


def _replayed(obj: Any) -> bool:
    """Whether Stripe answered with a stored response (an idempotency key seen before)."""
    response = getattr(obj, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    return str(headers.get("Idempotent-Replayed", headers.get("idempotent-replayed", ""))) == "true"


def _quoted(value: str) -> str:
    """A value inside single quotes of Stripe's search query language."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _message(exc: stripe.StripeError) -> str:
    """One line: the SDK's messages may span several."""
    text = " ".join((exc.user_message or str(exc) or type(exc).__name__).split())
    status = f" (HTTP {exc.http_status})" if exc.http_status else ""
    return f"{type(exc).__name__}{status}: {text}"
