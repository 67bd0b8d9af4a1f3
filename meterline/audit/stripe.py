"""`meterline stripe reconcile`: the ledger's finalized invoices against Stripe's.

For every finalized invoice of a month (local period start), Stripe's invoice is found
(recorded id, else our id in its metadata) and compared by our line ids in its items'
metadata: missing, extra, delivered twice, different amount, different subtotal,
currency, and a status that is not issued (draft, void). A void ledger invoice must be
void, deleted or credited in Stripe, never open. Any difference fails the check
(exit 1; the billing_close DAG's task fails). Amounts compare in Stripe's unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import stripe as stripe_sdk

from billing.db import reading
from billing.errors import NotFound
from billing.outbox.payloads import InvoiceDoc
from billing.outbox.record import invoice_docs
from billing.outbox.scope import (
    delivery_states,
    first_attempts,
    has_customer,
    invoice_months,
    invoices_of_month,
)
from billing.tax import tax_documents_of
from meterline.connections import stripe_config
from meterline.jobs.deliver import LedgerDirectory, ledger_sessions, make_stripe_sink
from meterline.settings import Settings, settings
from meterline.sinks.stripe import StripeConfig
from meterline.sinks.stripe.mapping import ledger_minor
from meterline.sinks.stripe.sink import StripeSink, compare_lines, stripe_failure
from meterline.sinks.tax.lines import with_tax


@dataclass(frozen=True)
class StripeDifference:
    invoice_id: int
    customer: str
    stripe_invoice: str | None
    what: str


@dataclass
class StripeReconcileReport:
    period: str
    customer: str | None = None
    invoices: int = 0
    lines: int = 0
    #: Of ``lines``, those of the tax recorded through the tax sink (one per tax document
    #: of non-zero tax, meterline.sinks.tax.lines): not ledger lines, Stripe items.
    tax_lines: int = 0
    items: int = 0
    #: Per currency: [ledger total, Stripe subtotal], both in ISO 4217 minor units.
    totals: dict[str, list[int]] = field(default_factory=dict)
    differences: list[StripeDifference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def summary(self) -> str:
        lines = f"{self.lines - self.tax_lines:,} line(s)"
        if self.tax_lines:
            lines += f" and {self.tax_lines:,} of tax"
        head = (
            f"{self.period}: {self.invoices:,} invoice(s), {lines} in the ledger;"
            f" {self.items:,} item(s) in Stripe"
        )
        if self.ok:
            return (
                head
                + "; Stripe totals = ledger totals"
                + (" (tax included)" if self.tax_lines else "")
            )
        return head + f"; {len(self.differences):,} difference(s)"


#: Stripe's clock against ours: a Stripe invoice is listed from a day before the first
#: attempt of its events (the ledger's wall clock) to be safe from any skew.
CLOCK_MARGIN = timedelta(days=1)


def _check(
    sink: StripeSink,
    doc: InvoiceDoc,
    state: tuple[int, str] | None,
    void_event: str | None,
    listed: dict[str, list[Any]] | None = None,
) -> tuple[list[str], str | None, int, int]:
    """(differences, Stripe invoice id, item count, Stripe subtotal) of one invoice.
    ``listed``: the Stripe invoices that can carry it, by ledger invoice id
    (StripeSink.invoices_created_since), or None to ask Stripe for this one."""
    customer_id = sink.known_customer(doc.customer)
    if not customer_id:
        found = []
    elif listed is None:
        found = sink.invoices_for(doc, customer_id)
    else:
        # The same as invoices_for: the customer's invoices naming this ledger invoice.
        carrying = listed.get(str(doc.invoice_id), [])
        found = [i for i in carrying if str(i.customer) == customer_id]
    recorded_id = sink.directory.ref("invoice", str(doc.invoice_id))
    if recorded_id and all(str(i.id) != recorded_id for i in found):
        recorded = sink.find_invoice(doc, None)  # by the recorded id only
        if recorded is not None:
            found.append(recorded)  # under another customer
    live = [i for i in found if i.status != "void"]
    if doc.status == "void":
        return _check_void(sink, doc, live, void_event), None, 0, 0
    if not found:
        why = "not in Stripe"
        if state is not None and state[1] != "delivered":
            why += f" (outbox event {state[0]} is {state[1]}: `meterline outbox deliver`)"
        return [why], None, 0, 0
    differences: list[str] = []
    if len(live) > 1:
        ids = ", ".join(str(i.id) for i in live)
        differences.append(f"{len(live)} Stripe invoices carry it ({ids}): billed more than once")
    invoice = live[0] if live else found[0]
    if customer_id and str(invoice.customer) != customer_id:
        differences.append(f"customer: Stripe {invoice.customer}, ledger {customer_id}")
    items = sink.all_lines(invoice)
    differences += compare_lines(doc, invoice, items)
    if invoice.status not in ("open", "paid"):
        differences.append(f"Stripe invoice is {invoice.status}, not issued")
    return differences, str(invoice.id), len(items), int(invoice.subtotal or 0)


def _check_void(
    sink: StripeSink, doc: InvoiceDoc, live: list[Any], void_event: str | None
) -> list[str]:
    """A void ledger invoice bills nothing in Stripe: its Stripe invoice is void or gone,
    or paid and then credited in full (a positive total) or its balance credit taken
    back (a negative one)."""
    differences = []
    for invoice in live:
        total = int(invoice.total or 0)
        if invoice.status == "paid" and total > 0:
            credited = sink.credited(invoice)
            if credited < total:
                differences.append(
                    f"void in the ledger, paid in Stripe ({invoice.id}) and credited"
                    f" {credited} of {total}"
                )
        elif invoice.status == "paid" and total < 0:
            taken = void_event and sink.balance_reversal(str(invoice.customer), void_event)
            if not taken:
                differences.append(
                    f"void in the ledger, paid in Stripe ({invoice.id}) with a credit of"
                    f" {-total} to the customer's balance that was not taken back"
                )
        elif invoice.status != "paid":
            differences.append(f"void in the ledger but {invoice.status} in Stripe ({invoice.id})")
    return differences


def months_invoiced(config: Settings | None = None) -> list[str]:
    """The months (YYYY-MM, local period start) holding finalized or void invoices."""
    with ledger_sessions(config or settings()) as make, reading(make) as session:
        return invoice_months(session)


def reconcile_stripe(
    period: str,
    *,
    customer: str | None = None,
    config: Settings | None = None,
    stripe: StripeConfig | None = None,
) -> StripeReconcileReport:
    """Compare the month's finalized (and void) invoices with Stripe. Raises
    SinkNotConfigured without Stripe credentials."""
    (report,) = reconcile_stripe_months([period], customer=customer, config=config, stripe=stripe)
    return report


def reconcile_stripe_months(
    periods: Sequence[str],
    *,
    customer: str | None = None,
    config: Settings | None = None,
    stripe: StripeConfig | None = None,
) -> list[StripeReconcileReport]:
    """reconcile_stripe for each month of ``periods`` (YYYY-MM), in that order, with one
    listing of Stripe's invoices for them all (billing_close's stripe_reconcile task: the
    months a close touched). Raises SinkNotConfigured without Stripe credentials."""
    cfg = config or settings()
    with ledger_sessions(cfg) as make:
        sink, api = make_stripe_sink(make, stripe or stripe_config(cfg))
        with reading(make) as session:
            if customer is not None and not has_customer(session, customer):
                raise NotFound(f"no customer {customer!r} in the ledger")
            months = {p: invoices_of_month(session, p, customer=customer) for p in periods}
            ids = [i for found in months.values() for i, _ in found]
            docs = invoice_docs(session, ids)
            # An invoice taxed through the tax sink went to Stripe with its tax (docs/tax.md).
            for invoice_id, documents in tax_documents_of(session, list(docs)).items():
                docs[invoice_id] = with_tax(docs[invoice_id], documents)
            states = delivery_states(session, "stripe", ids)
            attempts = first_attempts(session, "stripe", ids)
        if isinstance(sink.directory, LedgerDirectory):
            sink.directory.read_ahead({d.customer for d in docs.values()}, docs)
        # Every Stripe invoice our sink made for these invoices it made after the first
        # attempt of their events: one listing of those finds them all, in pages of 100
        # (25,000 invoices: 250 requests, not 25,000). Attempted before such attempts were
        # recorded: asked per invoice. Never attempted: Stripe has none of them.
        listed: dict[str, list[Any]] | None = None
        if attempts.known:
            listed = {}
            if attempts.earliest is not None:
                try:
                    listed = sink.invoices_created_since(attempts.earliest - CLOCK_MARGIN)
                except stripe_sdk.StripeError as exc:
                    raise stripe_failure(exc) from None

        def check(doc: InvoiceDoc) -> tuple[list[str], str | None, int, int]:
            voided = states.get((doc.invoice_id, "invoice.voided"))
            return _check(
                sink,
                doc,
                states.get((doc.invoice_id, "invoice.finalized")),
                f"invoice.voided:{doc.invoice_id}" if voided else None,
                listed,
            )

        with ThreadPoolExecutor(max_workers=api.config.concurrency) as pool:
            try:
                results = dict(zip(ids, pool.map(check, [docs[i] for i in ids]), strict=True))
            except stripe_sdk.StripeError as exc:
                raise stripe_failure(exc) from None
    return [_report(p, customer, [(docs[i], results[i]) for i, _ in months[p]]) for p in periods]


def _report(
    period: str,
    customer: str | None,
    checked: list[tuple[InvoiceDoc, tuple[list[str], str | None, int, int]]],
) -> StripeReconcileReport:
    """The month's report from each invoice's check: the finalized ones counted and
    their differences, then the void ones' differences."""
    report = StripeReconcileReport(period=period, customer=customer)
    for doc, (differences, stripe_id, items, subtotal) in checked:
        if doc.status != "finalized":
            continue
        report.invoices += 1
        report.lines += len(doc.lines)
        report.tax_lines += sum(1 for line in doc.lines if line.kind == "tax")
        report.items += items
        both = report.totals.setdefault(doc.currency, [0, 0])
        both[0] += doc.total_minor
        both[1] += ledger_minor(subtotal, doc.currency)
        report.differences.extend(
            StripeDifference(doc.invoice_id, doc.customer, stripe_id, what) for what in differences
        )
    for doc, (differences, stripe_id, _, _) in checked:
        if doc.status == "void":
            report.differences.extend(
                StripeDifference(doc.invoice_id, doc.customer, stripe_id, what)
                for what in differences
            )
    return report
