"""State and behaviour of the Stripe stand-in: customers, invoices, invoice items, line
items and credit notes, with the state rules of Stripe's API reference.

Pure Python, no I/O. One lock guards everything; the HTTP layer holds it for a whole
request (see `Store.lock`), so a request is atomic and requests are serialized.

Objects are rendered with the keys of the `stripe` SDK's resource classes only
(`stripe.Invoice`, `stripe.InvoiceLineItem`, ...); amounts are integers in the currency's
minor unit.
"""

from __future__ import annotations

import operator
import random
import re
import string
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Stripe's limit on the invoice items of one invoice ("there is a maximum of 250 items
# per invoice": the SDK's InvoiceItemCreateParams.invoice; changelog 2016-02-22).
MAX_ITEMS_PER_INVOICE = 250

# Stripe's three-decimal currencies: amounts must be divisible by 10 (the last digit 0)
# for compatibility with Stripe's payment partners (docs.stripe.com/currencies).
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

LIST_LIMIT_DEFAULT = 10
LIST_LIMIT_MAX = 100
# Stripe's invoice object carries the first page of its lines.
INVOICE_LINES_FIRST_PAGE = 10

_ID_ALPHABET = string.ascii_letters + string.digits


class StripeError(Exception):
    """An answer in Stripe's error shape: {"error": {"type", "message", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        if self.code is not None:
            error["code"] = self.code
        return {"error": error}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, message, param=param, code=code)


def no_such(kind: str, object_id: str, param: str, status: int = 400) -> StripeError:
    return StripeError(
        status, f"No such {kind}: '{object_id}'", param=param, code="resource_missing"
    )


def not_editable(message: str) -> StripeError:
    return invalid(message, code="invoice_not_editable")


@dataclass
class Customer:
    id: str
    created: int
    name: str | None
    email: str | None
    description: str | None
    phone: str | None
    metadata: dict[str, str]
    invoice_prefix: str
    balance: int = 0
    currency: str | None = None
    next_invoice_sequence: int = 1


@dataclass
class BalanceTransaction:
    """A change of a customer's balance (Stripe: positive = the customer owes more)."""

    id: str
    customer: str
    amount: int
    currency: str
    description: str | None
    metadata: dict[str, str]
    created: int
    ending_balance: int


@dataclass
class InvoiceItem:
    id: str
    customer: str
    currency: str
    amount: int
    description: str | None
    metadata: dict[str, str]
    period_start: int
    period_end: int
    date: int
    discountable: bool
    invoice: str | None = None
    line_id: str | None = None


@dataclass
class Invoice:
    id: str
    customer: str
    currency: str
    created: int
    auto_advance: bool
    collection_method: str
    description: str | None
    metadata: dict[str, str]
    due_date: int | None
    days_until_due: int | None
    customer_email: str | None
    customer_name: str | None
    status: str = "draft"
    item_ids: list[str] = field(default_factory=list)
    number: str | None = None
    starting_balance: int = 0
    ending_balance: int | None = None
    # Frozen at finalization; a draft's amount due follows its lines.
    amount_due_final: int | None = None
    amount_paid: int = 0
    amount_paid_off_stripe: int = 0
    pre_payment_credit_notes_amount: int = 0
    post_payment_credit_notes_amount: int = 0
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    marked_uncollectible_at: int | None = None


@dataclass
class CreditNoteLine:
    id: str
    type: str
    amount: int
    description: str | None
    invoice_line_item: str | None
    quantity: int | None
    unit_amount: int | None
    metadata: dict[str, str]


@dataclass
class CreditNote:
    id: str
    invoice: str
    customer: str
    currency: str
    created: int
    number: str
    amount: int
    pre_payment_amount: int
    post_payment_amount: int
    credit_amount: int
    out_of_band_amount: int
    reason: str | None
    memo: str | None
    metadata: dict[str, str]
    lines: list[CreditNoteLine]


@dataclass
class IdempotentResult:
    method: str
    path: str
    params: dict[str, Any]
    status: int
    body: dict[str, Any]
    request_id: str


def _merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe's metadata update: "" unsets all keys, a key set to "" is unset."""
    if update is None:
        return current
    if update == "":
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _currency(value: str, param: str) -> str:
    lowered = value.lower()
    if len(lowered) != 3 or not lowered.isascii() or not lowered.isalpha():
        raise invalid(f"Invalid currency: {value}.", param)
    return lowered


def check_amount(amount: int, currency: str, param: str) -> None:
    if currency in THREE_DECIMAL_CURRENCIES and amount % 10 != 0:
        raise invalid(
            f"Invalid {param}: {amount}. Amounts in {currency.upper()}, a three-decimal "
            "currency, must be divisible by 10 (the last digit must be 0).",
            param,
        )


class Store:
    """Everything the stand-in holds. Call the operations with `lock` held."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        seed: int | None = None,
        search_visibility_delay: float = 0.0,
    ):
        self.lock = threading.RLock()
        self._clock = clock or time.time
        self._random = random.Random(seed)
        self.search_visibility_delay = search_visibility_delay
        self.customers: dict[str, Customer] = {}
        self.invoices: dict[str, Invoice] = {}
        self.invoice_items: dict[str, InvoiceItem] = {}
        self.credit_notes: dict[str, CreditNote] = {}
        self.balance_transactions: dict[str, BalanceTransaction] = {}
        # (api key, idempotency key) -> the first request's answer.
        self.idempotency: dict[tuple[str, str], IdempotentResult] = {}
        self.request_counts: Counter[tuple[str, str]] = Counter()
        self._customer_created_at: dict[str, float] = {}
        # Lookups the sink makes once per invoice, which scanned everything delivered so
        # far: customers by a metadata (key, value) (a customer's metadata is set when it
        # is created and never changed), and each customer's invoice ids in creation
        # order (a deleted draft's id stays here; it is skipped).
        self._customers_by_metadata: dict[tuple[str, str], list[str]] = defaultdict(list)
        self._invoices_by_customer: dict[str, list[str]] = defaultdict(list)

    # -- helpers ---------------------------------------------------------------------------

    def now(self) -> int:
        return int(self._clock())

    def new_id(self, prefix: str) -> str:
        return prefix + "_" + "".join(self._random.choices(_ID_ALPHABET, k=24))

    def _customer(self, customer_id: str, param: str, status: int = 400) -> Customer:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise no_such("customer", customer_id, param, status)
        return customer

    def _invoice(self, invoice_id: str, param: str = "id", status: int = 404) -> Invoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise no_such("invoice", invoice_id, param, status)
        return invoice

    def _lines_of(self, invoice: Invoice) -> list[InvoiceItem]:
        return [self.invoice_items[i] for i in invoice.item_ids]

    def _total(self, invoice: Invoice) -> int:
        return sum(item.amount for item in self._lines_of(invoice))

    def _amount_due(self, invoice: Invoice) -> int:
        if invoice.amount_due_final is not None:
            return invoice.amount_due_final
        return max(0, self._total(invoice))

    def _amount_remaining(self, invoice: Invoice) -> int:
        return 0 if invoice.status == "paid" else self._unpaid(invoice)

    def _unpaid(self, invoice: Invoice) -> int:
        return max(0, self._amount_due(invoice) - invoice.amount_paid)

    def _attach(self, invoice: Invoice, item: InvoiceItem) -> None:
        item.invoice = invoice.id
        item.line_id = self.new_id("il")
        invoice.item_ids.append(item.id)

    def _check_room(self, invoice: Invoice, adding: int) -> None:
        if len(invoice.item_ids) + adding > MAX_ITEMS_PER_INVOICE:
            raise invalid(
                f"You can't add more than {MAX_ITEMS_PER_INVOICE} invoice items to an "
                f"invoice; {invoice.id} has {len(invoice.item_ids)}.",
            )

    @staticmethod
    def _check_period(period: dict[str, int] | None, param: str) -> None:
        if period is not None and period["end"] < period["start"]:
            raise invalid(
                f"Invalid {param}: the end of the period must be greater than or equal "
                "to the start.",
                f"{param}[end]",
            )

    # -- customers -------------------------------------------------------------------------

    def create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = Customer(
            id=self.new_id("cus"),
            created=self.now(),
            name=params.get("name"),
            email=params.get("email"),
            description=params.get("description"),
            phone=params.get("phone"),
            metadata=_merge_metadata({}, params.get("metadata")),
            invoice_prefix="".join(self._random.choices(string.ascii_uppercase, k=8)),
        )
        self.customers[customer.id] = customer
        self._customer_created_at[customer.id] = self._clock()
        for pair in customer.metadata.items():
            self._customers_by_metadata[pair].append(customer.id)
        return self.render_customer(customer)

    def retrieve_customer(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.render_customer(self._customer(customer_id, "id", 404))

    def create_balance_transaction(
        self, customer_id: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Adjust a customer's balance (Stripe's API reference, "Create a customer balance
        transaction"): a positive amount debits it (the customer owes more), a negative
        one credits it; in the customer's currency once it has one."""
        customer = self._customer(customer_id, "id", 404)
        currency = str(params["currency"]).lower()
        if customer.currency is not None and customer.currency != currency:
            raise invalid(
                f"The currency {currency} does not match the customer's currency"
                f" {customer.currency}.",
                "currency",
            )
        amount = int(params["amount"])
        if amount == 0:
            raise invalid("The amount must not be 0.", "amount")
        check_amount(amount, currency, "amount")
        customer.currency = currency
        customer.balance += amount
        txn = BalanceTransaction(
            id=self.new_id("cbtxn"),
            customer=customer.id,
            amount=amount,
            currency=currency,
            description=params.get("description"),
            metadata=_merge_metadata({}, params.get("metadata")),
            created=self.now(),
            ending_balance=customer.balance,
        )
        self.balance_transactions[txn.id] = txn
        return self.render_balance_transaction(txn)

    def list_balance_transactions(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        self._customer(customer_id, "id", 404)
        newest_first = list(reversed(self.balance_transactions.values()))
        page, has_more = paginate(
            newest_first, lambda t: t.customer == customer_id, params, "balance transaction"
        )
        return list_object(
            [self.render_balance_transaction(t) for t in page],
            has_more,
            f"/v1/customers/{customer_id}/balance_transactions",
        )

    def render_balance_transaction(self, txn: BalanceTransaction) -> dict[str, Any]:
        return {
            "id": txn.id,
            "object": "customer_balance_transaction",
            "amount": txn.amount,
            "created": txn.created,
            "credit_note": None,
            "currency": txn.currency,
            "customer": txn.customer,
            "description": txn.description,
            "ending_balance": txn.ending_balance,
            "invoice": None,
            "livemode": False,
            "metadata": dict(txn.metadata),
            "type": "adjustment",
        }

    def search_customers(self, params: dict[str, Any]) -> dict[str, Any]:
        clauses = parse_metadata_query(params["query"])
        limit = _limit(params)
        visible_before = self._clock() - self.search_visibility_delay
        candidates: Iterable[Customer] = (
            (self.customers[i] for i in reversed(self._customers_by_metadata.get(clauses[0], [])))
            if clauses
            else reversed(self.customers.values())
        )
        found = [
            c
            for c in candidates
            if all(c.metadata.get(k) == v for k, v in clauses)
            and (
                self.search_visibility_delay <= 0
                or self._customer_created_at[c.id] <= visible_before
            )
        ]
        offset = 0
        page = params.get("page")
        if page is not None:
            if not page.startswith("page_") or not page[5:].isdigit():
                raise invalid(f"Invalid page: {page}", "page")
            offset = int(page[5:])
        chunk = found[offset : offset + limit]
        has_more = offset + limit < len(found)
        return {
            "object": "search_result",
            "data": [self.render_customer(c) for c in chunk],
            "has_more": has_more,
            "next_page": f"page_{offset + limit}" if has_more else None,
            "url": "/v1/customers/search",
        }

    # -- invoices --------------------------------------------------------------------------

    def create_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        if "customer" not in params:
            raise invalid("Missing required param: customer.", "customer", "parameter_missing")
        customer = self._customer(params["customer"], "customer")
        collection_method = params.get("collection_method", "charge_automatically")
        days_until_due = params.get("days_until_due")
        due_date = params.get("due_date")
        if collection_method == "charge_automatically":
            for name in ("days_until_due", "due_date"):
                if name in params:
                    raise invalid(
                        f"Invalid {name}: it is valid only for invoices where "
                        "collection_method=send_invoice.",
                        name,
                    )
        elif days_until_due is None and due_date is None:
            raise invalid(
                "Invoices with collection_method=send_invoice need days_until_due or "
                "due_date (the stand-in does not model account payment terms).",
                "days_until_due",
            )
        if days_until_due is not None and due_date is not None:
            raise invalid(
                "You may only specify one of these parameters: days_until_due, due_date.",
                "due_date",
            )
        if days_until_due is not None and days_until_due < 0:
            raise invalid("Invalid days_until_due: must be at least 0.", "days_until_due")
        now = self.now()
        if days_until_due is not None:
            due_date = now + days_until_due * 86400
        if "currency" in params:
            currency = _currency(params["currency"], "currency")
        else:
            currency = customer.currency or "usd"
        invoice = Invoice(
            id=self.new_id("in"),
            customer=customer.id,
            currency=currency,
            created=now,
            auto_advance=params.get("auto_advance", False),
            collection_method=collection_method,
            description=params.get("description"),
            metadata=_merge_metadata({}, params.get("metadata")),
            due_date=due_date,
            days_until_due=days_until_due,
            customer_email=customer.email,
            customer_name=customer.name,
        )
        if params.get("pending_invoice_items_behavior", "exclude") == "include":
            pending = [
                item
                for item in self.invoice_items.values()
                if item.customer == customer.id
                and item.invoice is None
                and item.currency == currency
            ]
            self._check_room(invoice, len(pending))
            for item in pending:
                self._attach(invoice, item)
        self.invoices[invoice.id] = invoice
        self._invoices_by_customer[invoice.customer].append(invoice.id)
        return self.render_invoice(invoice)

    def retrieve_invoice(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.render_invoice(self._invoice(invoice_id))

    def list_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = params.get("customer")
        if customer is not None and not {"starting_after", "ending_before"} & params.keys():
            # The customer's own invoices: the same first page as filtering them all.
            ids = self._invoices_by_customer.get(customer, [])
            newest_first = [self.invoices[i] for i in reversed(ids) if i in self.invoices]
        else:
            newest_first = list(reversed(self.invoices.values()))

        created = params.get("created")

        def keep(invoice: Invoice) -> bool:
            return all(
                (
                    params.get("customer") in (None, invoice.customer),
                    params.get("status") in (None, invoice.status),
                    params.get("collection_method") in (None, invoice.collection_method),
                    created is None or in_range(invoice.created, created),
                )
            )

        page, has_more = paginate(newest_first, keep, params, "invoice")
        return list_object([self.render_invoice(i) for i in page], has_more, "/v1/invoices")

    def delete_invoice(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        if invoice.status != "draft":
            raise invalid(
                f"You can only delete draft invoices; {invoice.id} is {invoice.status}. "
                "Void a finalized invoice instead.",
            )
        # A deleted draft takes its invoice items with it.
        for item_id in invoice.item_ids:
            del self.invoice_items[item_id]
        del self.invoices[invoice.id]
        return {"id": invoice.id, "object": "invoice", "deleted": True}

    def add_lines(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        if invoice.status != "draft":
            raise not_editable(
                f"You can only add lines to a draft invoice; {invoice.id} is {invoice.status}."
            )
        lines: list[dict[str, Any]] = params["lines"]
        self._check_room(invoice, len(lines))
        now = self.now()
        # The lines in the request's order: existing pending items and new ones.
        entries: list[InvoiceItem] = []
        for index, line in enumerate(lines):
            param = f"lines[{index}]"
            if "invoice_item" in line:
                extra = sorted(set(line) - {"invoice_item"})
                if extra:
                    raise invalid(
                        f"You cannot pass {param}[{extra[0]}] with {param}[invoice_item].",
                        f"{param}[{extra[0]}]",
                    )
                item = self.invoice_items.get(line["invoice_item"])
                if item is None:
                    raise no_such("invoice item", line["invoice_item"], f"{param}[invoice_item]")
                if item.invoice is not None or item.customer != invoice.customer:
                    raise invalid(
                        f"The invoice item {item.id} is not an unassigned invoice item of "
                        f"the customer {invoice.customer}.",
                        f"{param}[invoice_item]",
                    )
                if item.currency != invoice.currency:
                    raise invalid(
                        f"The currency of the invoice item {item.id} ({item.currency}) "
                        f"must match the invoice's ({invoice.currency}).",
                        f"{param}[invoice_item]",
                    )
                entries.append(item)
                continue
            if "amount" not in line:
                raise invalid(
                    f"Missing required param: {param}[amount] (the stand-in models lines "
                    "with an amount or an invoice_item).",
                    f"{param}[amount]",
                    "parameter_missing",
                )
            check_amount(line["amount"], invoice.currency, f"{param}[amount]")
            period = line.get("period")
            self._check_period(period, f"{param}[period]")
            entries.append(
                InvoiceItem(
                    id=self.new_id("ii"),
                    customer=invoice.customer,
                    currency=invoice.currency,
                    amount=line["amount"],
                    description=line.get("description"),
                    metadata=_merge_metadata({}, line.get("metadata")),
                    period_start=period["start"] if period else now,
                    period_end=period["end"] if period else now,
                    date=now,
                    discountable=line["amount"] >= 0,
                )
            )
        if len({item.id for item in entries}) != len(entries):
            raise invalid("The same invoice item is listed twice.", "lines")
        for item in entries:
            self.invoice_items[item.id] = item
            self._attach(invoice, item)
        invoice.metadata = _merge_metadata(invoice.metadata, params.get("invoice_metadata"))
        return self.render_invoice(invoice)

    def remove_lines(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        if invoice.status != "draft":
            raise not_editable(
                f"You can only remove lines from a draft invoice; {invoice.id} is {invoice.status}."
            )
        by_line = {self.invoice_items[i].line_id: i for i in invoice.item_ids}
        removals: list[tuple[str, str]] = []
        for index, line in enumerate(params["lines"]):
            item_id = by_line.get(line["id"])
            if item_id is None:
                raise no_such("line item", line["id"], f"lines[{index}][id]")
            removals.append((item_id, line["behavior"]))
        if len({item_id for item_id, _ in removals}) != len(removals):
            raise invalid("The same line item is listed twice.", "lines")
        for item_id, behavior in removals:
            invoice.item_ids.remove(item_id)
            item = self.invoice_items[item_id]
            if behavior == "delete":
                del self.invoice_items[item_id]
            else:
                item.invoice = None
                item.line_id = None
        invoice.metadata = _merge_metadata(invoice.metadata, params.get("invoice_metadata"))
        return self.render_invoice(invoice)

    def list_lines(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        items = self._lines_of(invoice)

        def line_key(item: InvoiceItem) -> str:
            return item.line_id or ""

        page, has_more = paginate(items, None, params, "line item", key=line_key)
        return list_object(
            [self.render_line(i) for i in page], has_more, f"/v1/invoices/{invoice.id}/lines"
        )

    def finalize_invoice(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        if invoice.status != "draft":
            raise invalid(
                f"This invoice is already finalized, you can't re-finalize a non-draft "
                f"invoice ({invoice.id} is {invoice.status}).",
            )
        customer = self.customers[invoice.customer]
        now = self.now()
        total = self._total(invoice)
        # The customer's balance is applied at finalization; a negative total credits it.
        invoice.starting_balance = customer.balance
        owed = total + customer.balance
        invoice.amount_due_final = max(0, owed)
        invoice.ending_balance = min(0, owed)
        customer.balance = invoice.ending_balance
        if customer.currency is None:
            customer.currency = invoice.currency
        invoice.number = f"{customer.invoice_prefix}-{customer.next_invoice_sequence:04d}"
        customer.next_invoice_sequence += 1
        invoice.finalized_at = now
        if "auto_advance" in params:
            invoice.auto_advance = params["auto_advance"]
        if invoice.days_until_due is not None:
            invoice.due_date = now + invoice.days_until_due * 86400
        if invoice.amount_due_final == 0:
            invoice.status = "paid"
            invoice.paid_at = now
        else:
            invoice.status = "open"
        return self.render_invoice(invoice)

    def void_invoice(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        if invoice.status not in ("open", "uncollectible"):
            raise invalid(
                f"You can only void an open or uncollectible invoice; {invoice.id} is "
                f"{invoice.status}.",
            )
        invoice.status = "void"
        invoice.voided_at = self.now()
        return self.render_invoice(invoice)

    def pay_invoice(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        if invoice.status == "paid":
            raise invalid(f"Invoice {invoice.id} is already paid.")
        if invoice.status != "open":
            raise invalid(
                f"You can only pay an open invoice; {invoice.id} is {invoice.status}.",
            )
        if not params.get("paid_out_of_band"):
            raise invalid(
                "This customer has no attached payment source or default payment method "
                "(the stand-in has no payment methods: pass paid_out_of_band=true).",
            )
        remaining = self._unpaid(invoice)
        invoice.amount_paid += remaining
        invoice.amount_paid_off_stripe += remaining
        invoice.status = "paid"
        invoice.paid_at = self.now()
        return self.render_invoice(invoice)

    # -- invoice items ---------------------------------------------------------------------

    def create_invoice_item(self, params: dict[str, Any]) -> dict[str, Any]:
        if "customer" not in params:
            raise invalid("Missing required param: customer.", "customer", "parameter_missing")
        customer = self._customer(params["customer"], "customer")
        if "amount" not in params:
            raise invalid(
                "Missing required param: amount (the stand-in models invoice items with an "
                "amount).",
                "amount",
                "parameter_missing",
            )
        invoice: Invoice | None = None
        if "invoice" in params:
            invoice = self._invoice(params["invoice"], "invoice", 400)
            if invoice.customer != customer.id:
                raise invalid(
                    f"The invoice {invoice.id} belongs to the customer {invoice.customer}, "
                    f"not {customer.id}.",
                    "invoice",
                )
            if invoice.status != "draft":
                raise not_editable(
                    f"You can only add invoice items to draft invoices; {invoice.id} is "
                    f"{invoice.status}."
                )
        if "currency" in params:
            currency = _currency(params["currency"], "currency")
        elif invoice is not None:
            currency = invoice.currency
        elif customer.currency is not None:
            currency = customer.currency
        else:
            raise invalid("Missing required param: currency.", "currency", "parameter_missing")
        if invoice is not None and currency != invoice.currency:
            raise invalid(
                f"The currency of the invoice item ({currency}) must match the currency of "
                f"the invoice {invoice.id} ({invoice.currency}).",
                "currency",
            )
        check_amount(params["amount"], currency, "amount")
        period = params.get("period")
        self._check_period(period, "period")
        if invoice is not None:
            self._check_room(invoice, 1)
        now = self.now()
        item = InvoiceItem(
            id=self.new_id("ii"),
            customer=customer.id,
            currency=currency,
            amount=params["amount"],
            description=params.get("description"),
            metadata=_merge_metadata({}, params.get("metadata")),
            period_start=period["start"] if period else now,
            period_end=period["end"] if period else now,
            date=now,
            discountable=params.get("discountable", params["amount"] >= 0),
        )
        self.invoice_items[item.id] = item
        if invoice is not None:
            self._attach(invoice, item)
        return self.render_invoice_item(item)

    def delete_invoice_item(self, item_id: str, params: dict[str, Any]) -> dict[str, Any]:
        item = self.invoice_items.get(item_id)
        if item is None:
            raise no_such("invoiceitem", item_id, "id", 404)
        if item.invoice is not None:
            invoice = self.invoices[item.invoice]
            if invoice.status != "draft":
                raise not_editable(
                    f"The invoice item {item.id} is on the invoice {invoice.id}, which is "
                    f"{invoice.status}: only a draft invoice's items can be deleted."
                )
            invoice.item_ids.remove(item.id)
        del self.invoice_items[item.id]
        return {"id": item.id, "object": "invoiceitem", "deleted": True}

    # -- credit notes ----------------------------------------------------------------------

    def create_credit_note(self, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(params["invoice"], "invoice", 400)
        if invoice.status not in ("open", "paid"):
            raise invalid(
                f"You can only create a credit note for an open or paid invoice; "
                f"{invoice.id} is {invoice.status}.",
                "invoice",
            )
        if "refund_amount" in params or "refunds" in params:
            raise invalid(
                f"The invoice {invoice.id} has no payment to refund (the stand-in records "
                "payments out of band only).",
                "refund_amount",
            )
        currency = invoice.currency
        lines = self._credit_note_lines(invoice, params.get("lines", []))
        amount: int
        if lines:
            amount = sum(line.amount for line in lines)
            if "amount" in params and params["amount"] != amount:
                raise invalid(
                    f"The amount ({params['amount']}) must equal the sum of the lines ({amount}).",
                    "amount",
                )
        elif "amount" in params:
            amount = params["amount"]
        else:
            amount = params.get("credit_amount", 0) + params.get("out_of_band_amount", 0)
        for name in ("amount", "credit_amount", "out_of_band_amount"):
            if name in params:
                if params[name] < 0:
                    raise invalid(f"Invalid {name}: must be at least 0.", name)
                check_amount(params[name], currency, name)
        if amount <= 0:
            raise invalid("A credit note needs a positive amount: pass amount or lines.", "amount")
        credited = sum(cn.amount for cn in self.credit_notes.values() if cn.invoice == invoice.id)
        total = self._total(invoice)
        if amount > total - credited:
            raise invalid(
                f"The credit note's amount ({amount}) exceeds the invoice's total less its "
                f"earlier credit notes ({total} - {credited} = {total - credited}).",
                "amount",
            )
        # A credit note first reduces what is still owed; the rest is post-payment and must
        # be placed exactly: credited to the customer's balance or recorded out of band.
        remaining = self._unpaid(invoice) if invoice.status == "open" else 0
        pre = min(amount, remaining)
        post = amount - pre
        credit_amount = params.get("credit_amount", 0)
        out_of_band = params.get("out_of_band_amount", 0)
        if credit_amount + out_of_band != post:
            raise invalid(
                f"The sum of credit_amount, refund_amount and out_of_band_amount "
                f"({credit_amount + out_of_band}) must equal the credit note's "
                f"post-payment amount ({post}).",
                "credit_amount" if credit_amount else "out_of_band_amount",
            )
        customer = self.customers[invoice.customer]
        sequence = 1 + sum(1 for cn in self.credit_notes.values() if cn.invoice == invoice.id)
        note = CreditNote(
            id=self.new_id("cn"),
            invoice=invoice.id,
            customer=invoice.customer,
            currency=currency,
            created=self.now(),
            number=f"{invoice.number}-CN-{sequence:02d}",
            amount=amount,
            pre_payment_amount=pre,
            post_payment_amount=post,
            credit_amount=credit_amount,
            out_of_band_amount=out_of_band,
            reason=params.get("reason"),
            memo=params.get("memo"),
            metadata=_merge_metadata({}, params.get("metadata")),
            lines=lines,
        )
        self.credit_notes[note.id] = note
        invoice.pre_payment_credit_notes_amount += pre
        invoice.post_payment_credit_notes_amount += post
        if invoice.amount_due_final is not None:
            invoice.amount_due_final -= pre
        customer.balance -= credit_amount
        if invoice.status == "open" and self._unpaid(invoice) == 0:
            invoice.status = "paid"
            invoice.paid_at = note.created
        return self.render_credit_note(note)

    def _credit_note_lines(
        self, invoice: Invoice, lines: Sequence[dict[str, Any]]
    ) -> list[CreditNoteLine]:
        by_line = {self.invoice_items[i].line_id: self.invoice_items[i] for i in invoice.item_ids}
        already: Counter[str] = Counter()
        for note in self.credit_notes.values():
            for noted in note.lines:
                if note.invoice == invoice.id and noted.invoice_line_item:
                    already[noted.invoice_line_item] += noted.amount
        result: list[CreditNoteLine] = []
        for index, line in enumerate(lines):
            param = f"lines[{index}]"
            kind = line["type"]
            if kind == "invoice_line_item":
                line_id = line.get("invoice_line_item")
                if line_id is None:
                    raise invalid(
                        f"Missing required param: {param}[invoice_line_item].",
                        f"{param}[invoice_line_item]",
                        "parameter_missing",
                    )
                item = by_line.get(line_id)
                if item is None:
                    raise no_such("invoice line item", line_id, f"{param}[invoice_line_item]")
                if "amount" not in line:
                    raise invalid(
                        f"Missing required param: {param}[amount] (the stand-in credits "
                        "line items by amount).",
                        f"{param}[amount]",
                        "parameter_missing",
                    )
                amount = line["amount"]
                available = item.amount - already[line_id]
                if amount <= 0 or amount > available:
                    raise invalid(
                        f"Invalid {param}[amount]: {amount}; the line item {line_id} has "
                        f"{available} left to credit.",
                        f"{param}[amount]",
                    )
                already[line_id] += amount
                check_amount(amount, invoice.currency, f"{param}[amount]")
                result.append(
                    CreditNoteLine(
                        id=self.new_id("cnli"),
                        type=kind,
                        amount=amount,
                        description=line.get("description", item.description),
                        invoice_line_item=line_id,
                        quantity=None,
                        unit_amount=None,
                        metadata=_merge_metadata({}, line.get("metadata")),
                    )
                )
            else:
                for name in ("unit_amount", "quantity", "description"):
                    if name not in line:
                        raise invalid(
                            f"Missing required param: {param}[{name}].",
                            f"{param}[{name}]",
                            "parameter_missing",
                        )
                if "amount" in line or "invoice_line_item" in line:
                    raise invalid(
                        f"A custom_line_item takes unit_amount and quantity ({param}).",
                        f"{param}[type]",
                    )
                if line["unit_amount"] <= 0 or line["quantity"] <= 0:
                    raise invalid(
                        f"Invalid {param}: unit_amount and quantity must be positive.", param
                    )
                check_amount(line["unit_amount"], invoice.currency, f"{param}[unit_amount]")
                result.append(
                    CreditNoteLine(
                        id=self.new_id("cnli"),
                        type=kind,
                        amount=line["unit_amount"] * line["quantity"],
                        description=line["description"],
                        invoice_line_item=None,
                        quantity=line["quantity"],
                        unit_amount=line["unit_amount"],
                        metadata=_merge_metadata({}, line.get("metadata")),
                    )
                )
        return result

    def list_credit_notes(self, params: dict[str, Any]) -> dict[str, Any]:
        newest_first = list(reversed(self.credit_notes.values()))

        def keep(note: CreditNote) -> bool:
            return params.get("invoice") in (None, note.invoice) and params.get("customer") in (
                None,
                note.customer,
            )

        page, has_more = paginate(newest_first, keep, params, "credit note")
        return list_object([self.render_credit_note(n) for n in page], has_more, "/v1/credit_notes")

    # -- rendering (keys of the SDK's resource classes only) -------------------------------

    def render_customer(self, customer: Customer) -> dict[str, Any]:
        return {
            "id": customer.id,
            "object": "customer",
            "balance": customer.balance,
            "created": customer.created,
            "currency": customer.currency,
            "default_source": None,
            "delinquent": False,
            "description": customer.description,
            "email": customer.email,
            "invoice_prefix": customer.invoice_prefix,
            "livemode": False,
            "metadata": dict(customer.metadata),
            "name": customer.name,
            "next_invoice_sequence": customer.next_invoice_sequence,
            "phone": customer.phone,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }

    def render_line(self, item: InvoiceItem) -> dict[str, Any]:
        return {
            "id": item.line_id,
            "object": "line_item",
            "amount": item.amount,
            "currency": item.currency,
            "description": item.description,
            "discount_amounts": [],
            "discountable": item.discountable,
            "discounts": [],
            "invoice": item.invoice,
            "livemode": False,
            "metadata": dict(item.metadata),
            "parent": {
                "type": "invoice_item_details",
                "invoice_item_details": {
                    "invoice_item": item.id,
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": None,
                },
                "subscription_item_details": None,
            },
            "period": {"end": item.period_end, "start": item.period_start},
            "pretax_credit_amounts": [],
            "pricing": None,
            "quantity": 1,
            "subtotal": item.amount,
            "taxes": [],
        }

    def render_invoice(self, invoice: Invoice) -> dict[str, Any]:
        items = self._lines_of(invoice)
        total = sum(item.amount for item in items)
        first = items[:INVOICE_LINES_FIRST_PAGE]
        return {
            "id": invoice.id,
            "object": "invoice",
            "amount_due": self._amount_due(invoice),
            "amount_overpaid": 0,
            "amount_paid": invoice.amount_paid,
            "amount_paid_off_stripe": invoice.amount_paid_off_stripe,
            "amount_remaining": self._amount_remaining(invoice),
            "amount_shipping": 0,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": invoice.auto_advance,
            "billing_reason": "manual",
            "collection_method": invoice.collection_method,
            "created": invoice.created,
            "currency": invoice.currency,
            "customer": invoice.customer,
            "customer_email": invoice.customer_email,
            "customer_name": invoice.customer_name,
            "default_payment_method": None,
            "description": invoice.description,
            "discounts": [],
            "due_date": invoice.due_date,
            "effective_at": invoice.finalized_at,
            "ending_balance": invoice.ending_balance,
            "footer": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "last_finalization_error": None,
            "lines": list_object(
                [self.render_line(i) for i in first],
                len(items) > len(first),
                f"/v1/invoices/{invoice.id}/lines",
            ),
            "livemode": False,
            "metadata": dict(invoice.metadata),
            "next_payment_attempt": None,
            "number": invoice.number,
            "parent": None,
            # A one-off invoice's period is its creation instant (the lines carry theirs).
            "period_end": invoice.created,
            "period_start": invoice.created,
            "post_payment_credit_notes_amount": invoice.post_payment_credit_notes_amount,
            "pre_payment_credit_notes_amount": invoice.pre_payment_credit_notes_amount,
            "receipt_number": None,
            "starting_balance": invoice.starting_balance,
            "statement_descriptor": None,
            "status": invoice.status,
            "status_transitions": {
                "finalized_at": invoice.finalized_at,
                "marked_uncollectible_at": invoice.marked_uncollectible_at,
                "paid_at": invoice.paid_at,
                "voided_at": invoice.voided_at,
            },
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "test_clock": None,
            "total": total,
            "total_discount_amounts": [],
            "total_excluding_tax": total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": None,
        }

    def render_invoice_item(self, item: InvoiceItem) -> dict[str, Any]:
        return {
            "id": item.id,
            "object": "invoiceitem",
            "amount": item.amount,
            "currency": item.currency,
            "customer": item.customer,
            "date": item.date,
            "description": item.description,
            "discountable": item.discountable,
            "discounts": [],
            "invoice": item.invoice,
            "livemode": False,
            "metadata": dict(item.metadata),
            "parent": None,
            "period": {"end": item.period_end, "start": item.period_start},
            "pricing": None,
            "proration": False,
            "quantity": 1,
            "tax_rates": [],
            "test_clock": None,
        }

    def render_credit_note(self, note: CreditNote) -> dict[str, Any]:
        if note.pre_payment_amount and note.post_payment_amount:
            kind = "mixed"
        elif note.post_payment_amount:
            kind = "post_payment"
        else:
            kind = "pre_payment"
        return {
            "id": note.id,
            "object": "credit_note",
            "amount": note.amount,
            "amount_shipping": 0,
            "created": note.created,
            "currency": note.currency,
            "customer": note.customer,
            "customer_balance_transaction": None,
            "discount_amount": 0,
            "discount_amounts": [],
            "effective_at": note.created,
            "invoice": note.invoice,
            "lines": list_object(
                [self.render_credit_note_line(line) for line in note.lines],
                False,
                f"/v1/credit_notes/{note.id}/lines",
            ),
            "livemode": False,
            "memo": note.memo,
            "metadata": dict(note.metadata),
            "number": note.number,
            "out_of_band_amount": note.out_of_band_amount or None,
            "post_payment_amount": note.post_payment_amount,
            "pre_payment_amount": note.pre_payment_amount,
            "pretax_credit_amounts": [],
            "reason": note.reason,
            "refunds": [],
            "shipping_cost": None,
            "status": "issued",
            "subtotal": note.amount,
            "subtotal_excluding_tax": note.amount,
            "total": note.amount,
            "total_excluding_tax": note.amount,
            "total_taxes": [],
            "type": kind,
            "voided_at": None,
        }

    @staticmethod
    def render_credit_note_line(line: CreditNoteLine) -> dict[str, Any]:
        return {
            "id": line.id,
            "object": "credit_note_line_item",
            "amount": line.amount,
            "description": line.description,
            "discount_amount": 0,
            "discount_amounts": [],
            "invoice_line_item": line.invoice_line_item,
            "livemode": False,
            "metadata": dict(line.metadata),
            "pretax_credit_amounts": [],
            "quantity": line.quantity,
            "tax_rates": [],
            "taxes": [],
            "type": line.type,
            "unit_amount": line.unit_amount,
        }


_RANGE = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def in_range(value: int, wanted: int | dict[str, int]) -> bool:
    """Stripe's range filter of a list (`created`): an exact value, or a hash of gt, gte,
    lt and lte bounds, all of which must hold."""
    if not isinstance(wanted, dict):
        return value == wanted
    return all(_RANGE[bound](value, limit) for bound, limit in wanted.items())


def list_object(data: list[dict[str, Any]], has_more: bool, url: str) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def _limit(params: dict[str, Any]) -> int:
    limit = params.get("limit", LIST_LIMIT_DEFAULT)
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise invalid(
            f"Invalid limit: must be between 1 and {LIST_LIMIT_MAX} (got {limit}).", "limit"
        )
    return int(limit)


def paginate(
    ordered: Sequence[Any],
    keep: Callable[[Any], bool] | None,
    params: dict[str, Any],
    kind: str,
    key: Callable[[Any], str] = lambda o: str(o.id),
) -> tuple[list[Any], bool]:
    """Stripe's cursor pagination over `ordered` (the list's own order)."""
    limit = _limit(params)
    after, before = params.get("starting_after"), params.get("ending_before")
    if after is not None and before is not None:
        raise invalid(
            "You may only specify one of these parameters: ending_before, starting_after.",
            "ending_before",
        )
    cursor = after if after is not None else before
    at = 0
    if cursor is not None:
        at = next((i for i, o in enumerate(ordered) if key(o) == cursor), -1)
        if at < 0:
            raise no_such(kind, cursor, "starting_after" if after is not None else "ending_before")
    if before is not None:
        candidates = [o for o in ordered[:at] if keep is None or keep(o)]
        return candidates[-limit:], len(candidates) > limit
    start = at + 1 if after is not None else 0
    # Only as many as the page and whether there are more (a list of every invoice of
    # the account is read in pages: each page must not filter all the rest).
    page: list[Any] = []
    for o in ordered[start:]:
        if keep is None or keep(o):
            if len(page) == limit:
                return page, True
            page.append(o)
    return page, False


def parse_metadata_query(query: str) -> list[tuple[str, str]]:
    """Stripe's search query, the one form the stand-in supports: metadata['K']:'V'
    clauses, joined with AND."""
    result: list[tuple[str, str]] = []
    for part in _split_and(query):
        match = _CLAUSE.match(part.strip())
        if match is None:
            raise invalid(
                f"The Stripe stand-in supports only search queries of the form "
                f"metadata['KEY']:'VALUE' (joined with AND); got: {query}",
                "query",
            )
        # A quote or backslash inside a quoted value is escaped with a backslash
        # (Stripe's search query language).
        result.append((_unescape(match.group(2)), _unescape(match.group(4))))
    return result


_CLAUSE = re.compile(r"""^metadata\[(['"])((?:\\.|(?!\1).)+)\1\]:(['"])((?:\\.|(?!\3).)*)\3$""")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _split_and(query: str) -> Iterable[str]:
    """The clauses of ``query`` joined by `` AND `` outside quoted values."""
    parts, start, quote, i = [], 0, "", 0
    while i < len(query):
        char = query[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif query.startswith(" AND ", i):
            parts.append(query[start:i])
            start = i + len(" AND ")
            i = start
            continue
        i += 1
    parts.append(query[start:])
    return parts
