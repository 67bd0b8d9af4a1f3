"""Delivery to Stripe while invoices are voided: what Stripe holds ends up exactly what
the ledger says, once.

Twelve customers have a finalized March invoice; half of them also a correction of
March on their April draft. `meterline outbox deliver` runs as a process of its own
against the Stripe stand-in (each finalize held back a little by the fault proxy, so
deliveries are in flight), while this process voids every other March invoice
(meterline.jobs.ledger.void_invoice): some already in Stripe, some being delivered, some
not yet claimed. Then the next deliver run. Every outbox event is delivered once, no
invoice or item is created twice, a voided invoice is void in Stripe, the April drafts
hold exactly their ledger adjustment lines, and `stripe reconcile` finds no difference.
SQLite and PostgreSQL (the warehouse plays no part in delivery)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

import billing
from billing.models import Invoice, InvoiceLine
from meterline.audit.stripe import reconcile_stripe
from meterline.demo.stripe_standin import StripeStandIn
from meterline.jobs.deliver import deliver, outbox_rows
from meterline.jobs.ledger import void_invoice
from meterline.settings import load_settings
from meterline.sinks.stripe import StripeConfig
from tests.billing.conftest import Ledger, ledger  # noqa: F401  (SQLite, and PostgreSQL when set)
from tests.billing.factories import CATALOG, CUSTOMERS, period_of, standard_charges, write_customers
from tests.concurrency.world import books
from tests.support.fault_proxy import FaultProxy

N = 12
KEY = SecretStr("sk_test_meterline_concurrency")
MARCH = period_of("sub_00001", 2026, 3)
GRACE = timedelta(days=3)
VOID_AT = MARCH.end + GRACE + timedelta(days=1)
PREFERRED = ("draft", "absent", "open")


def customers() -> list[dict[str, Any]]:
    base = CUSTOMERS[0]
    return [
        {
            **base,
            "customer_id": f"cus_c{i:02d}",
            "subscription_id": f"sub_c{i:02d}",
            "name": f"Racer {i}",
        }
        for i in range(N)
    ]


@pytest.fixture
def march(ledger: Ledger, tmp_path: Path) -> list[int]:  # noqa: F811
    """The March invoices (finalized), with corrections of March on half the customers'
    April drafts."""
    path = write_customers(tmp_path / "customers.jsonl", customers())
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
        billing.load_customers_file(session, path)
        batches = [
            billing.ChargeBatch(f"sub_c{i:02d}", MARCH, standard_charges(session, 50 + i))
            for i in range(N)
        ]
        posted = billing.post_charges_bulk(session, batches)
        ids = [posted.invoice_ids[(f"sub_c{i:02d}", MARCH.start)] for i in range(N)]
        billing.finalize_due(session, as_of=MARCH.end + GRACE, grace=GRACE)
    for i in range(0, N, 2):
        with ledger.Session.begin() as session:
            corrected = standard_charges(session, 70 + i)
            billing.post_adjustments(session, f"sub_c{i:02d}", MARCH, corrected)
    return ids


def stripe_status(stripe: StripeStandIn, invoice_id: int) -> str:
    """The Stripe state of a ledger invoice: absent, or its Stripe invoice's status."""
    for invoice in list(stripe.store.invoices.values()):
        if invoice.metadata.get("meterline_invoice_id") == str(invoice_id):
            return str(invoice.status)
    return "absent"


@pytest.fixture
def stripe() -> Iterator[StripeStandIn]:
    with StripeStandIn() as running:
        yield running


def test_delivery_during_voids_leaves_stripe_equal_to_the_ledger(
    ledger: Ledger,  # noqa: F811
    march: list[int],
    stripe: StripeStandIn,
    tmp_path: Path,
) -> None:
    settings = load_settings(ledger_url=ledger.url)
    config = StripeConfig(api_key=KEY, api_base=stripe.base_url, timeout_s=10.0)
    # Voided before the deliverer starts: the first four, claimed first, one of which has
    # its draft held 2 s before its finalize. Each void waits in the outbox behind its invoice's finalize
    # (a customer's events go in order): it must never race it to Stripe.
    early = march[:4]
    for invoice_id in early:
        void_invoice(invoice_id, as_of=VOID_AT, config=settings)
    # Voided while the deliverer runs: customers with a correction on April's draft, and
    # without.
    voided = [*early, *march[4::2], *march[7::4]]
    in_flight: list[bool] = []
    met: list[str] = []  # the Stripe state of each invoice when it was voided

    with FaultProxy(stripe.base_url) as proxy:
        finalize = lambda method, path: method == "POST" and path.endswith("/finalize")  # noqa: E731
        # The first invoice's lines: added, the answer held 2 s, its draft not finalized.
        proxy.plan("delay", delay=2.0, when=lambda m, p: m == "POST" and p.endswith("/add_lines"))
        proxy.plan(
            "delay",
            times=10 * N,
            delay=0.15,
            when=finalize,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
        env.update(
            METERLINE_LEDGER_URL=ledger.url,
            METERLINE_STRIPE_API_KEY=KEY.get_secret_value(),
            METERLINE_STRIPE_API_BASE=proxy.base_url,
            METERLINE_STRIPE_CONCURRENCY="4",
        )
        deliverer = subprocess.Popen(
            [sys.executable, "-m", "meterline.cli", "outbox", "deliver", "--json"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Void once Stripe has the first invoice, while the rest are being delivered.
            started = threading.Event()
            for _ in range(600):
                if any(i.status != "draft" for i in list(stripe.store.invoices.values())):
                    started.set()
                    break
                if deliverer.poll() is not None:
                    break
                started.wait(0.05)
            assert started.is_set(), deliverer.communicate()
            # Each time the invoice caught mid-delivery if there is one (its Stripe
            # draft made, not yet finalized), else one not delivered yet, else any.
            todo = [i for i in voided if i not in early]
            while todo:
                states = {i: stripe_status(stripe, i) for i in todo}
                invoice_id = min(todo, key=lambda i: PREFERRED.index(states[i]))
                todo.remove(invoice_id)
                met.append(states[invoice_id])
                void_invoice(invoice_id, as_of=VOID_AT, config=settings)
                in_flight.append(deliverer.poll() is None)
            out, err = deliverer.communicate(timeout=300)
        finally:
            if deliverer.poll() is None:
                deliverer.kill()
    assert deliverer.returncode == 0, err
    assert any(in_flight), "every void came after the deliverer had finished"

    last = deliver(config=settings, stripe=config)  # what was voided after its last round
    assert last.ok and last.left == 0, last.errors
    rows = outbox_rows(config=settings)
    assert {r.status for r in rows} == {"delivered"}
    assert books(ledger.url).duplicates() == []

    # Stripe: one invoice per ledger invoice it was told of, void where the ledger's is.
    store = stripe.store
    by_ledger_id = Counter(i.metadata["meterline_invoice_id"] for i in store.invoices.values())
    assert max(by_ledger_id.values()) == 1
    with ledger.Session() as session:
        status = {i: st for i, st in session.execute(select(Invoice.id, Invoice.status))}
        adjustments = Counter(
            session.scalars(select(InvoiceLine.invoice_id).where(InvoiceLine.kind == "adjustment"))
        )
    for invoice in store.invoices.values():
        local = int(invoice.metadata["meterline_invoice_id"])
        if local in march:
            assert invoice.status == ("void" if local in voided else "open"), local
        else:  # an April draft carrying corrections of March
            assert (status[local], invoice.status) == ("draft", "draft")
            assert len(invoice.item_ids) == adjustments[local], local
    assert {int(k) for k in by_ledger_id} >= set(march)
    check = reconcile_stripe("2026-03", config=settings, stripe=config)
    assert check.ok, check.differences
    assert (check.invoices, check.lines) == (N - len(voided), 2 * (N - len(voided)))
