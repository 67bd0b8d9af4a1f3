"""`meterline stripe reconcile`: the ledger's finalized invoices against Stripe's.

For every finalized invoice of a month (local period start), Stripe's invoice is found
(recorded id, else our id in its metadata) and compared by our line ids in its items'
metadata: missing, extra, delivered twice, different amount, different subtotal,
currency, and a status that is not issued (draft, void). A void ledger invoice must be
void, deleted or credited in Stripe, never open. Any difference fails the check
(exit 1; the billing_close DAG's task fails). Amounts compare in Stripe's unit.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from billing.outbox.payloads import InvoiceDoc
from billing.outbox.record import invoice_docs
from billing.outbox.scope import delivery_states, invoice_months, invoices_of_month
from meterline.connections import stripe_config
from meterline.jobs.deliver import ledger_sessions, make_stripe_sink
from meterline.settings import Settings, settings
from meterline.sinks.stripe import StripeConfig
from meterline.sinks.stripe.mapping import ledger_minor
from meterline.sinks.stripe.sink import StripeSink, compare_lines


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
        head = (
            f"{self.period}: {self.invoices:,} invoice(s), {self.lines:,} line(s) in the"
            f" ledger; {self.items:,} item(s) in Stripe"
        )
        if self.ok:
            return head + "; Stripe totals = ledger totals"
        return head + f"; {len(self.differences):,} difference(s)"


def _check(
    sink: StripeSink, doc: InvoiceDoc, state: tuple[int, str] | None
) -> tuple[list[str], str | None, int, int]:
    """(differences, Stripe invoice id, item count, Stripe subtotal) of one invoice."""
    customer_id = sink.directory.terms(doc.customer).stripe_customer_id or sink.directory.ref(
        "customer", doc.customer
    )
    invoice = sink.find_invoice(doc, customer_id)
    if doc.status == "void":
        if invoice is None or invoice.status in ("void", "paid", "uncollectible"):
            return [], None if invoice is None else str(invoice.id), 0, 0
        return [f"void in the ledger but {invoice.status} in Stripe"], str(invoice.id), 0, 0
    if invoice is None:
        why = "not in Stripe"
        if state is not None and state[1] != "delivered":
            why += f" (outbox event {state[0]} is {state[1]}: `meterline outbox deliver`)"
        return [why], None, 0, 0
    items = sink.lines_of(invoice)
    differences = compare_lines(doc, invoice, items)
    if invoice.status not in ("open", "paid"):
        differences.append(f"Stripe invoice is {invoice.status}, not issued")
    return differences, str(invoice.id), len(items), int(invoice.subtotal or 0)


def months_invoiced(config: Settings | None = None) -> list[str]:
    """The months (YYYY-MM, local period start) holding finalized or void invoices."""
    with ledger_sessions(config or settings()) as make, make() as session:
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
    cfg = config or settings()
    report = StripeReconcileReport(period=period, customer=customer)
    with ledger_sessions(cfg) as make:
        sink, api = make_stripe_sink(make, stripe or stripe_config(cfg))
        with make() as session:
            found = invoices_of_month(session, period, customer=customer)
            docs = invoice_docs(session, [i for i, _ in found])
            states = delivery_states(session, "stripe", [i for i, _ in found])
        ordered = [docs[i] for i, _ in found]
        with ThreadPoolExecutor(max_workers=api.config.concurrency) as pool:
            results = list(
                pool.map(
                    lambda d: _check(sink, d, states.get((d.invoice_id, "invoice.finalized"))),
                    ordered,
                )
            )
    for doc, (differences, stripe_id, items, subtotal) in zip(ordered, results, strict=True):
        if doc.status != "finalized":
            continue
        report.invoices += 1
        report.lines += len(doc.lines)
        report.items += items
        both = report.totals.setdefault(doc.currency, [0, 0])
        both[0] += doc.total_minor
        both[1] += ledger_minor(subtotal, doc.currency)
        report.differences.extend(
            StripeDifference(doc.invoice_id, doc.customer, stripe_id, what) for what in differences
        )
    for doc, (differences, stripe_id, _, _) in zip(ordered, results, strict=True):
        if doc.status == "void":
            report.differences.extend(
                StripeDifference(doc.invoice_id, doc.customer, stripe_id, what)
                for what in differences
            )
    return report
