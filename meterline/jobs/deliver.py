"""Deliver the outbox: what `meterline outbox deliver` and the billing_close DAG's
``deliver`` task run (docs/stripe.md).

Rounds until nothing is deliverable: claim (at most one event per customer, the
earliest undelivered: billing.outbox.delivery), deliver the claims in parallel (the
configured concurrency; a customer's events stay in order because a customer has at
most one claim at a time), record each outcome in its own short transaction. Delivering
twice changes nothing: the sink looks before it creates.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing.db import reading, session_factory
from billing.errors import NotFound
from billing.migrate import require_head
from billing.outbox import (
    ALL_SINKS,
    TAX_SINK,
    Claim,
    DeliveryRow,
    EventDoc,
    claim,
    list_deliveries,
    mark_delivered,
    mark_failed,
    release,
    replay,
    undelivered,
)
from billing.outbox.refs import (
    customer_terms,
    external_ids,
    forget_external_id,
    invoice_status,
    record_external_ids,
)
from billing.tax import (
    CustomerTaxProfile,
    RecordedDocument,
    corrected_invoices,
    customer_tax_profile,
    record_tax,
    record_void,
    tax_documents,
    tax_documents_of,
)
from meterline.connections import (
    avalara_config,
    invoice_sinks,
    ledger_engine,
    require_ledger_store,
    stripe_config,
)
from meterline.settings import Settings, settings
from meterline.sinks import PermanentSinkError, Sink, SinkError, SinkRefusedCredentials
from meterline.sinks.stripe import StripeApi, StripeConfig, StripeSink
from meterline.sinks.stripe.sink import CustomerTerms, Ref
from meterline.sinks.tax import AvalaraConfig, AvaTaxApi, TaxSink
from meterline.sinks.tax.lines import with_tax
from meterline.sinks.tax.mapping import Corrected, local_day
from meterline.sinks.webhook import WebhookSink
from meters.crashpoints import crash_point

log = logging.getLogger(__name__)

#: Events claimed per round.
ROUND = 500


class SinkNotConfigured(SinkError):
    """The sink has no credentials (exit code 4: unavailable)."""


@dataclass
class DeliveryReport:
    """What one deliver run did."""

    sink: str
    delivered: int = 0
    failed: int = 0
    parked: int = 0
    invoices_finalized: int = 0
    items_added: int = 0
    items_removed: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: The tax sink's: invoices whose tax it recorded, AvaTax transactions it created
    #: and voided (a replay that finds them so counts nothing).
    invoices_taxed: int = 0
    transactions_created: int = 0
    transactions_voided: int = 0
    #: Deliveries left pending or parked after the run (waiting for a backoff, a lease,
    #: or an earlier parked event of their customer), and of those the parked ones
    #: (parked by this run or before: a person must look).
    left: int = 0
    parked_total: int = 0
    #: Of ``left``, those a sink after tax holds back until their invoice's tax is recorded.
    waiting_for_tax: int = 0

    @property
    def ok(self) -> bool:
        own = not self.failed and not self.parked and not self.parked_total
        return own and (self.tax is None or self.tax.ok)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    #: The tax delivery run before this one (deliver_or_skip), when tax is enabled.
    tax: DeliveryReport | None = None

    def summary(self) -> str:
        requests = sum(self.requests.values())
        if self.sink == TAX_SINK:
            done = (
                f"{self.invoices_taxed} invoice(s) taxed, {self.transactions_created}"
                f" transaction(s) created, {self.transactions_voided} voided"
            )
        elif self.sink == "stripe":
            done = (
                f"{self.invoices_finalized} invoice(s) finalized, {self.items_added} item(s)"
                f" added, {self.items_removed} removed"
            )
        else:  # the alerts' webhook: its events are the alerts', no invoice or item
            done = ""
        text = f"{self.sink}: delivered {self.delivered} event(s)"
        text += f" ({done}) in {requests} request(s)" if done else f" in {requests} request(s)"
        if self.failed or self.parked:
            text += f"; {self.failed} failed (will retry), {self.parked} parked"
        if self.left:
            text += f"; {self.left} left undelivered"
        if self.waiting_for_tax:
            text += (
                f" ({self.waiting_for_tax} waiting for their invoice's tax: `meterline outbox"
                " deliver --sink avalara`, and `meterline outbox list --sink avalara` if it"
                " is parked)"
            )
        if self.parked_total:
            text += (
                f", {self.parked_total} parked: see `meterline outbox list --failed`, fix the"
                f" cause, then `meterline outbox replay --from ID --sink {self.sink}`"
            )
        if self.tax is not None:
            text = f"{self.tax.summary()}; {text}"
        return text


class LedgerDirectory:
    """The sink's view of the ledger: customers' terms and external ids, each read or
    written in its own short transaction (a delivery holds no transaction open while
    it talks to Stripe)."""

    def __init__(self, make: sessionmaker[Session], sink: str) -> None:
        self.make = make
        self.sink = sink
        self._lock = threading.Lock()
        self._terms: dict[str, CustomerTerms] = {}
        # The ids read ahead (read_ahead) by (kind, our id); None: none recorded.
        self._refs: dict[tuple[str, str], str | None] = {}
        #: The events of this round's claims that are the first attempt at their invoice
        #: (billing.outbox.Claim.first_of_invoice); replaced every round.
        self.untouched_events: frozenset[int] = frozenset()

    def start_round(self, claims: Sequence[Claim]) -> None:
        """Before a round's deliveries: note which claims are their invoice's first
        attempt, and read ahead the round's customers (read_ahead)."""
        with self._lock:
            self.untouched_events = frozenset(
                c.event.event_id for c in claims if c.first_of_invoice
            )
        self.read_ahead({c.event.customer for c in claims})

    def read_ahead(self, customers: Collection[str], invoices: Collection[int] = ()) -> None:
        """Read at once (one short transaction, not two per delivery or check) the terms
        and recorded ids of ``customers`` and the recorded ids of ``invoices`` (ledger
        invoice ids), for the terms and ref calls that follow: a round of deliveries, a
        reconcile of months. The ids replace those read ahead before; record and forget
        keep them current."""
        wanted = {"customer": set(customers), "invoice": {str(i) for i in invoices}}
        with reading(self.make) as session:
            terms = customer_terms(session, wanted["customer"] - self._terms.keys())
            refs: dict[tuple[str, str], str | None] = {
                (kind, local): None for kind, ids in wanted.items() for local in ids
            }
            for kind, ids in wanted.items():
                for local, (ref, _) in external_ids(session, self.sink, kind, ids).items():
                    refs[(kind, local)] = ref
        with self._lock:
            for customer, found in terms.items():
                self._terms[customer] = CustomerTerms(*found)
            self._refs = refs

    def terms(self, customer: str) -> CustomerTerms:
        with self._lock:
            if customer in self._terms:
                return self._terms[customer]
        with reading(self.make) as session:
            found = customer_terms(session, [customer]).get(customer)
        terms = CustomerTerms(*found) if found else CustomerTerms()
        with self._lock:
            self._terms[customer] = terms
        return terms

    def ref(self, kind: str, local_id: str) -> str | None:
        with self._lock:
            if (kind, local_id) in self._refs:
                return self._refs[(kind, local_id)]
        with reading(self.make) as session:
            found = external_ids(session, self.sink, kind, [local_id]).get(local_id)
        return found[0] if found else None

    def forget(self, kind: str, local_id: str) -> None:
        with self.make.begin() as session:
            forget_external_id(session, self.sink, kind, local_id)
        with self._lock:
            self._refs.pop((kind, local_id), None)

    def is_void(self, invoice_id: int) -> bool:
        with reading(self.make) as session:
            return invoice_status(session, invoice_id) == "void"

    def untouched(self, event_id: int) -> bool:
        return event_id in self.untouched_events

    def record(self, refs: Sequence[Ref]) -> None:
        if not refs:
            return
        with self.make.begin() as session:
            record_external_ids(
                session,
                self.sink,
                [(r.kind, r.local_id, r.external_id, r.parent_external_id) for r in refs],
            )
        with self._lock:
            for r in refs:
                self._refs[(r.kind, r.local_id)] = r.external_id


class TaxLedgerDirectory:
    """The tax sink's view of the ledger (meterline.sinks.tax.TaxDirectory): customers'
    tax profiles, the catalog's tax codes, corrected invoices, and the tax recorded;
    each call its own short transaction."""

    def __init__(self, make: sessionmaker[Session]) -> None:
        self.make = make

    def profile(self, customer: str) -> CustomerTaxProfile | None:
        with reading(self.make) as session:
            return customer_tax_profile(session, customer)

    def tax_codes(self) -> dict[str, str]:
        from billing.catalog import current_catalog

        with reading(self.make) as session:
            return dict(current_catalog(session).tax_codes)

    def corrected(
        self, subscription: str, starts: Collection[datetime]
    ) -> dict[datetime, Corrected]:
        from billing.models import Invoice, Subscription

        with reading(self.make) as session:
            found = corrected_invoices(session, subscription, starts)
            zone = session.scalar(
                select(Subscription.timezone).where(Subscription.external_id == subscription)
            )
            out: dict[datetime, Corrected] = {}
            for start, invoice_id in found.items():
                finalized = session.scalar(
                    select(Invoice.finalized_at).where(Invoice.id == invoice_id)
                )
                day = local_day((finalized or start).isoformat(), zone or "UTC")
                out[start] = Corrected(invoice_id, day)
            return out

    def documents(self, invoice_id: int) -> list[RecordedDocument]:
        with reading(self.make) as session:
            return tax_documents(session, invoice_id)

    def record(self, invoice_id: int, documents: Sequence[RecordedDocument]) -> bool:
        from billing.models import InvoiceTax

        with self.make.begin() as session:
            before = session.scalar(
                select(InvoiceTax.status).where(InvoiceTax.invoice_id == invoice_id)
            )
            record_tax(session, invoice_id, documents, at=_now())
            return before == "pending"

    def record_void(self, invoice_id: int, voided: Sequence[tuple[str, str]]) -> None:
        with self.make.begin() as session:
            record_void(session, invoice_id, voided, at=_now())

    def is_void(self, invoice_id: int) -> bool:
        with reading(self.make) as session:
            return invoice_status(session, invoice_id) == "void"


@contextmanager
def ledger_sessions(config: Settings) -> Iterator[sessionmaker[Session]]:
    require_ledger_store(config)
    with ledger_engine(config) as engine:
        require_head(engine)
        yield session_factory(engine, invoice_sinks=invoice_sinks(config))


def _now() -> datetime:
    # Wall clock: when we talked to another system (delivery state), not a billing time.
    return datetime.now(UTC)


def make_stripe_sink(
    make: sessionmaker[Session], config: StripeConfig | None
) -> tuple[StripeSink, StripeApi]:
    if config is None:
        raise SinkNotConfigured(
            "Stripe is not configured: set METERLINE_STRIPE_API_KEY (and"
            " METERLINE_STRIPE_API_BASE for a test server), or the Airflow Connection"
            " stripe_default; the events wait in the outbox (`meterline outbox list`)"
        )
    api = StripeApi(config)
    return StripeSink(api, LedgerDirectory(make, "stripe")), api


def make_tax_sink(
    make: sessionmaker[Session], config: AvalaraConfig | None
) -> tuple[TaxSink, AvaTaxApi]:
    if config is None:
        raise SinkNotConfigured(
            "AvaTax is not configured: set METERLINE_AVALARA_ACCOUNT_ID,"
            " METERLINE_AVALARA_LICENSE_KEY, METERLINE_AVALARA_COMPANY_CODE and"
            " METERLINE_AVALARA_ORIGIN_ADDRESS (and METERLINE_AVALARA_API_BASE for a test"
            " server); the tax deliveries wait in the outbox (`meterline outbox list --sink"
            " avalara`), and Stripe waits for them"
        )
    api = AvaTaxApi(config)
    return TaxSink(api, TaxLedgerDirectory(make)), api


class WebhookEvents:
    """The webhook sink as the deliverer calls it: an outbox event in, its payload
    POSTed signed (meterline/sinks/webhook.py)."""

    name = "webhook"

    def __init__(self, sink: WebhookSink) -> None:
        self.sink = sink
        self.requests = 0
        self._lock = threading.Lock()

    def deliver(self, event: EventDoc) -> str | None:
        with self._lock:
            self.requests += 1
        return self.sink.send(event.kind, event.idempotency_key, event.data)


def make_webhook_sink(cfg: Settings) -> WebhookEvents:
    if not cfg.webhook_url or cfg.webhook_secret is None:
        raise SinkNotConfigured(
            "the webhook is not configured: set METERLINE_WEBHOOK_URL and"
            " METERLINE_WEBHOOK_SECRET; the alert events wait in the outbox"
            " (`meterline outbox list --sink webhook`)"
        )
    secret = cfg.webhook_secret.get_secret_value()
    return WebhookEvents(WebhookSink(cfg.webhook_url, secret, timeout=cfg.webhook_timeout_s))


def deliver(
    sink: str = "stripe",
    *,
    config: Settings | None = None,
    stripe: StripeConfig | None = None,
    avalara: AvalaraConfig | None = None,
    progress: Callable[[DeliveryReport], None] | None = None,
) -> DeliveryReport:
    """Deliver every deliverable outbox event to ``sink``. ``stripe`` and ``avalara``
    override the Stripe and AvaTax settings (tests, the demo). Raises SinkNotConfigured
    without credentials."""
    cfg = config or settings()
    if sink not in ALL_SINKS:
        raise ValueError(f"unknown sink {sink!r}: one of {', '.join(ALL_SINKS)}")
    report = DeliveryReport(sink=sink)
    # How long a claim keeps other deliverers off an event (METERLINE_OUTBOX_LEASE_SECONDS).
    lease = timedelta(seconds=cfg.outbox_lease_seconds)
    owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    with ledger_sessions(cfg) as make:
        target: Sink
        api: StripeApi | None = None
        tax_api: AvaTaxApi | None = None
        if sink == "webhook":
            target = make_webhook_sink(cfg)
            concurrency = 4
        elif sink == TAX_SINK:
            target, tax_api = make_tax_sink(make, avalara or avalara_config(cfg))
            concurrency = tax_api.config.concurrency
        else:
            target, api = make_stripe_sink(make, stripe or stripe_config(cfg))
            concurrency = api.config.concurrency
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="deliver") as pool:
            while True:
                with make.begin() as session:
                    claims = claim(
                        session, sink=sink, owner=owner, now=_now(), lease=lease, limit=ROUND
                    )
                if not claims:
                    break
                if sink == "stripe":
                    claims = _with_recorded_tax(make, claims)
                if isinstance(target, StripeSink) and isinstance(target.directory, LedgerDirectory):
                    target.directory.start_round(claims)
                # Each outcome is recorded as soon as it is known (in its own short
                # transaction), while the lease still holds.
                futures = {pool.submit(_deliver_one, target, c): c for c in claims}
                refused: SinkRefusedCredentials | None = None
                got_through = False
                for future in as_completed(futures):
                    one = futures[future]
                    external_id, error, permanent = future.result()
                    if isinstance(error, SinkRefusedCredentials):
                        refused = refused or error
                        continue
                    # Stripe has acted; a kill before the record leaves the lease to expire
                    # and the event to be delivered again (the sink looks first).
                    crash_point("deliver.after_send")
                    with make.begin() as session:
                        _record(session, report, one, external_id, error, permanent, cfg, owner)
                    got_through = got_through or error is None
                if refused is not None:
                    # No event's fault: the claims not recorded go back uncounted, and the
                    # run stops.
                    with make.begin() as session:
                        release(
                            session,
                            event_ids=[c.event.event_id for c in claims],
                            sink=sink,
                            owner=owner,
                        )
                    raise refused
                if progress is not None:
                    progress(report)
                if not got_through:
                    # Nothing got through this round: leave the rest for the next run
                    # (they back off) instead of spinning on an unreachable Stripe.
                    break
        if api is not None and isinstance(target, StripeSink):
            report.requests = dict(Counter(api.requests))
            report.items_added = target.counts["items_added"]
            report.items_removed = target.counts["items_removed"]
            # Finalized in Stripe by this run (a replay that finds them so counts nothing).
            report.invoices_finalized = target.counts["finalized"]
        elif isinstance(target, WebhookEvents):
            report.requests = {"POST webhook": target.requests}
        elif tax_api is not None and isinstance(target, TaxSink):
            report.requests = dict(Counter(tax_api.requests))
            report.invoices_taxed = target.counts["invoices_taxed"]
            report.transactions_created = target.counts["transactions_created"]
            report.transactions_voided = target.counts["transactions_voided"]
        with reading(make) as session:
            left = undelivered(session, sink=sink)
        report.left = left["pending"] + left["parked"]
        report.parked_total = left["parked"]
        report.waiting_for_tax = left["tax"]
    return report


def _with_recorded_tax(make: sessionmaker[Session], claims: list[Claim]) -> list[Claim]:
    """The claims with each finalized invoice's recorded tax as lines of it (the sinks
    after tax hear a taxed invoice whole: meterline.sinks.tax.lines)."""
    finalized = [c.event.invoice.invoice_id for c in claims if c.event.kind == "invoice.finalized"]
    if not finalized:
        return claims
    with reading(make) as session:
        taxed = tax_documents_of(session, finalized)
    if not taxed:
        return claims
    out = []
    for one in claims:
        documents = (
            taxed.get(one.event.invoice.invoice_id)
            if one.event.kind == "invoice.finalized"
            else None
        )
        if documents:
            data = with_tax(one.event.invoice, documents).to_json()
            one = replace(one, event=replace(one.event, data=data))
        out.append(one)
    return out


def _deliver_one(target: Sink, one: Claim) -> tuple[str | None, Any, bool]:
    """(external id, error, permanent); the error is the exception itself when the
    sink's credentials were refused (the run stops), else its message."""
    try:
        return target.deliver(one.event), None, False
    except SinkRefusedCredentials as exc:
        return None, exc, False
    except PermanentSinkError as exc:
        return None, str(exc), True
    except SinkError as exc:
        return None, str(exc), False


def _record(
    session: Session,
    report: DeliveryReport,
    one: Claim,
    external_id: str | None,
    error: str | None,
    permanent: bool,
    cfg: Settings,
    owner: str,
) -> None:
    event = one.event
    if error is None:
        mark_delivered(
            session, event_id=event.event_id, sink=one.sink, now=_now(), external_id=external_id
        )
        report.delivered += 1
        return
    status = mark_failed(
        session,
        event_id=event.event_id,
        sink=one.sink,
        now=_now(),
        error=error,
        max_attempts=cfg.outbox_max_attempts,
        permanent=permanent,
        owner=owner,
    )
    if status == "superseded":
        return  # another deliverer took the event over after our lease ran out
    about = f"invoice {event.invoice.invoice_id}" if event.kind.startswith("invoice.") else ""
    line = f"event {event.event_id} ({event.kind}{', ' + about if about else ''}): {error}"
    log.warning("%s delivery failed (%s): %s", one.sink, status, line)
    if len(report.errors) < 20:
        report.errors.append(line)
    if status == "parked":
        report.parked += 1
    else:
        report.failed += 1


def outbox_rows(
    *,
    sink: str | None = None,
    failed_only: bool = False,
    limit: int | None = None,
    config: Settings | None = None,
) -> list[DeliveryRow]:
    """The outbox's deliveries (``meterline outbox list``)."""
    with ledger_sessions(config or settings()) as make, reading(make) as session:
        return list_deliveries(session, sink=sink, failed_only=failed_only, limit=limit)


def replay_from(from_id: int, *, sink: str | None = None, config: Settings | None = None) -> int:
    """Make events from ``from_id`` on pending again (``meterline outbox replay``).
    Raises billing.errors.NotFound when there is no event ``from_id`` or later (exit 3)."""
    if sink is not None and sink not in ALL_SINKS:
        raise ValueError(f"unknown sink {sink!r}: one of {', '.join(ALL_SINKS)}")
    with ledger_sessions(config or settings()) as make, make.begin() as session:
        if not list_deliveries(session, sink=sink, from_id=from_id, limit=1):
            raise NotFound(
                f"no outbox event {from_id} or later: `meterline outbox list` shows the events"
            )
        return replay(session, from_id=from_id, sink=sink)


def deliver_or_skip(config: Settings | None = None) -> DeliveryReport | None:
    """``deliver("stripe")``, or None when Stripe is not configured (the DAG's task
    is then skipped: the events wait in the outbox). With the tax sink enabled and
    configured, the tax is delivered first (``deliver("avalara")``, its report the
    Stripe report's ``tax``; alone when Stripe is not configured), so the invoices it
    taxes reach Stripe in the same run."""
    cfg = config or settings()
    tax = None
    if cfg.tax_sink == TAX_SINK and avalara_config(cfg) is not None:
        tax = deliver(TAX_SINK, config=cfg)
    if stripe_config(cfg) is None:
        return tax
    report = deliver("stripe", config=cfg)
    report.tax = tax
    return report


def deliver_webhook_or_skip(config: Settings | None = None) -> DeliveryReport | None:
    """``deliver("webhook")``, or None when the webhook is not configured (the alert
    events wait in the outbox)."""
    cfg = config or settings()
    if not cfg.webhook_url or cfg.webhook_secret is None:
        return None
    return deliver("webhook", config=cfg)
