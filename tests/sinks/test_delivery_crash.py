"""Invariant 8 under real crashes: a deliverer killed (SIGKILL) after Stripe acted and
before the ledger recorded it, or between adding an invoice's lines and finalizing it in
Stripe, is repaired by the next run once the dead run's leases expire: Stripe then holds
exactly the ledger (`stripe reconcile` finds no difference), no invoice, customer or item
twice, and every outbox event is delivered. SQLite and PostgreSQL.

Each run is the real command, `python -m meterline.cli outbox deliver`, in a subprocess
(METERLINE_CRASH_AT names the crash point, meters/crashpoints.py) against the Stripe
stand-in serving from this process on a loopback port; the leases are shortened with
METERLINE_OUTBOX_LEASE_SECONDS and waited out."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

import billing
from billing.models import InvoiceLine, OutboxDelivery
from meterline.audit.stripe import reconcile_stripe
from meterline.demo.stripe_standin import StripeStandIn
from meterline.demo.stripe_standin.faults import FaultProxy
from meterline.jobs.deliver import outbox_rows
from tests.billing.factories import standard_charges
from tests.sinks.conftest import API_KEY, APRIL, GRACE, MARCH, World

LEASE_S = 1


def deliver_cli(
    world: World, cwd: Path, crash: str | None = None, concurrency: int = 8
) -> tuple[int, dict[str, Any]]:
    """`meterline outbox deliver --json` in a subprocess: (exit code, its report)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env.update(
        {
            "METERLINE_LEDGER_URL": world.ledger.url,
            "METERLINE_STRIPE_API_KEY": API_KEY.get_secret_value(),
            "METERLINE_STRIPE_API_BASE": world.stripe.base_url,
            "METERLINE_STRIPE_TIMEOUT_S": "5",
            "METERLINE_OUTBOX_LEASE_SECONDS": str(LEASE_S),
            "METERLINE_STRIPE_CONCURRENCY": str(concurrency),
        }
    )
    if crash:
        env["METERLINE_CRASH_AT"] = crash
    done = subprocess.run(
        [sys.executable, "-m", "meterline.cli", "outbox", "deliver", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    if done.returncode == -signal.SIGKILL:
        return done.returncode, {}
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def month_of_events(world: World) -> dict[str, int]:
    """Five outbox events over two customers (one customer's in order, in three rounds):
    March finalized for both, an adjustment of cus_00001's March onto its April draft,
    April finalized, cus_00009's March voided. The ledger invoice ids by name."""
    march = world.post("sub_00001", MARCH)
    world.finalize(march)
    other = world.post("sub_00009", MARCH, resolutions=7)
    world.finalize(other)
    with world.ledger.Session.begin() as session:
        corrected = standard_charges(session, resolutions=130)
        april = billing.post_adjustments(session, "sub_00001", MARCH, corrected).invoice_id
    assert april is not None
    world.post("sub_00001", APRIL, resolutions=40)
    world.finalize(april, APRIL)
    with world.ledger.Session.begin() as session:
        billing.void(session, other, as_of=MARCH.end + GRACE + timedelta(days=2))
    kinds = [(row.kind, row.invoice_id) for row in outbox_rows(config=world.settings)]
    assert kinds == [
        ("invoice.finalized", march),
        ("invoice.finalized", other),
        ("invoice.adjustments_posted", april),
        ("invoice.finalized", april),
        ("invoice.voided", other),
    ]
    return {"march": march, "other": other, "april": april}


def assert_stripe_holds_the_ledger(world: World, ids: dict[str, int]) -> None:
    for month in ("2026-03", "2026-04"):
        check = reconcile_stripe(month, config=world.settings, stripe=world.config())
        assert check.ok, (month, check.differences)
    store = world.stripe.store
    # One Stripe customer per ledger customer, one Stripe invoice per ledger invoice.
    assert sorted(c.metadata["meterline_customer_id"] for c in store.customers.values()) == [
        "cus_00001",
        "cus_00009",
    ]
    per_invoice = Counter(i.metadata["meterline_invoice_id"] for i in store.invoices.values())
    assert per_invoice == {str(ids[name]): 1 for name in ("march", "other", "april")}
    by_ledger = {i.metadata["meterline_invoice_id"]: i for i in store.invoices.values()}
    assert by_ledger[str(ids["other"])].status == "void"
    assert {by_ledger[str(ids[n])].status for n in ("march", "april")} == {"open"}
    # An item per ledger line, none twice.
    with world.ledger.Session() as session:
        lines = Counter(
            str(invoice_id)
            for (invoice_id,) in session.query(InvoiceLine.invoice_id).filter(
                InvoiceLine.invoice_id.in_([ids["march"], ids["april"]])
            )
        )
    for name in ("march", "april"):
        invoice = by_ledger[str(ids[name])]
        line_ids = [store.invoice_items[i].metadata["meterline_line_id"] for i in invoice.item_ids]
        assert len(line_ids) == len(set(line_ids)) == lines[str(ids[name])], name
    assert {row.status for row in outbox_rows(config=world.settings)} == {"delivered"}


def stripe_status(world: World, invoice_id: int) -> str | None:
    found = [
        i.status
        for i in world.stripe.store.invoices.values()
        if i.metadata["meterline_invoice_id"] == str(invoice_id)
    ]
    return found[0] if len(found) == 1 else None


# The five events meet the points in this order with one customer at a time (rounds:
# both Marches; the adjustment, the void; April). deliver.after_send: after each outcome
# comes back; stripe.after_lines: after each finalized invoice's items are added. With 8
# at a time a round's two events run at once: the kill at the first outcome of the second
# round cuts the other off wherever it is (found so: test_a_request_cut_off_... below).
# (point, concurrency, what Stripe has done that the ledger does not know: the ledger
# invoice and its Stripe status, any one of them)
CASES = [
    ("deliver.after_send", 1, (("march", "open"),)),  # finalized in Stripe, not recorded
    ("deliver.after_send:4", 1, (("other", "void"),)),  # voided in Stripe, not recorded
    ("stripe.after_lines:3", 1, (("april", "draft"),)),  # items added, not finalized
    ("deliver.after_send:3", 8, (("other", "void"), ("april", "draft"))),
]


@pytest.mark.parametrize(
    ("point", "concurrency", "acted"), CASES, ids=[f"{c[0]}-x{c[1]}" for c in CASES]
)
def test_a_killed_deliverer_is_repaired_by_the_next_run(
    world: World,
    tmp_path: Path,
    point: str,
    concurrency: int,
    acted: tuple[tuple[str, str], ...],
) -> None:
    ids = month_of_events(world)
    code, _ = deliver_cli(world, tmp_path, crash=point, concurrency=concurrency)
    assert code == -signal.SIGKILL
    # Stripe has acted; the ledger does not know.
    acted_on = [name for name, status in acted if stripe_status(world, ids[name]) == status]
    assert acted_on, [(name, stripe_status(world, ids[name])) for name, _ in acted]
    rows = outbox_rows(config=world.settings)
    assert any(r.invoice_id == ids[acted_on[0]] and r.status == "pending" for r in rows)
    left = [row for row in rows if row.status != "delivered"]
    with world.ledger.Session() as session:
        leases = [
            until
            for until in session.scalars(
                select(OutboxDelivery.lease_until).where(OutboxDelivery.status == "pending")
            )
            if until is not None
        ]
    assert leases, "the killed run left no claim behind"
    # Until the dead run's leases expire, its events are skipped: wait them out.
    time.sleep(max(0.0, (max(leases) - datetime.now(UTC)).total_seconds()) + 0.05)
    code, report = deliver_cli(world, tmp_path)
    assert code == 0, report
    assert report["delivered"] == len(left) and report["left"] == 0
    assert_stripe_holds_the_ledger(world, ids)


def post_cut_off(base_url: str, body: bytes, key: str) -> None:
    """A POST whose headers announce `body` but whose sender dies after sending its half."""
    parts = urlsplit(base_url)
    assert parts.hostname and parts.port
    with socket.create_connection((parts.hostname, parts.port)) as conn:
        conn.sendall(
            b"POST /v1/customers HTTP/1.1\r\nHost: stripe\r\n"
            b"Authorization: Bearer " + API_KEY.get_secret_value().encode() + b"\r\n"
            b"Idempotency-Key: " + key.encode() + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[: len(body) // 2]
        )


def test_a_request_cut_off_before_its_whole_body_is_not_acted_on() -> None:
    """Found by a deliverer killed with two customers in flight (deliver.after_send:3,
    8 at a time): the killed process had sent a POST's headers, not its body; the
    stand-in acted on what came (and the fault proxy forwarded it), saving the
    idempotency key with those params, so the retry's whole request was refused (400:
    other parameters) and the event parked. Stripe, like any HTTP server, acts only on
    a request it received whole: the stand-in and the proxy now drop it unanswered."""
    body = b"name=Acme&metadata[meterline_customer_id]=cus_00001"
    with StripeStandIn() as stripe, FaultProxy(stripe.base_url) as proxy:
        for n, base in enumerate((stripe.base_url, proxy.base_url)):
            post_cut_off(base, body, f"key-{n}")
            time.sleep(0.2)
            assert stripe.request_count == Counter(), base
            assert stripe.store.idempotency == {} and stripe.store.customers == {}
        # The retry, whole, with the same key: acted on once.
        for n, base in enumerate((stripe.base_url, proxy.base_url)):
            parts = urlsplit(base)
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
            headers = {
                "Authorization": f"Bearer {API_KEY.get_secret_value()}",
                "Idempotency-Key": f"key-{n}",
                "Content-Type": "application/x-www-form-urlencoded",
            }
            conn.request("POST", "/v1/customers", body=body, headers=headers)
            assert conn.getresponse().status == 200
            conn.close()
        assert len(stripe.store.customers) == 2
