"""The invariants a played world must satisfy, each checked against the clean model or
against another store. Every check returns the failures it found, one line each, naming
the customer, period, line or file concerned; none means the invariant held.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from meterline.simulation.model import EXPONENT, ExpectedInvoice, expected_invoices
from meterline.simulation.play import GRACE_HOURS, Played, finalized_invoices
from meterline.simulation.world import Delivery, World

#: Stripe refuses amounts of these currencies (docs/stripe.md): their invoices are parked.
NOT_FOR_STRIPE = frozenset({"KWD"})


def minor(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(EXPONENT[currency]))


@dataclass
class Failures:
    """What broke: of the run as a whole (the batch), and of each world (by seed)."""

    run: list[str] = field(default_factory=list)
    worlds: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))


def seed_of(customer_id: str) -> int:
    """The seed of a simulated customer id (`c17_03`) or subscription (`sub_c17_03`);
    -1 for an id no world made."""
    found = re.fullmatch(r"(?:sub_)?c(\d+)_\d+", customer_id)
    return int(found.group(1)) if found else -1


def check_all(played: Played, deliveries: list[Delivery]) -> Failures:
    from meterline.settings import load_settings

    config = load_settings(**played.settings)
    out = Failures()
    out.run += check_intake(played, deliveries, config, out)
    ledger = _ledger(config)  # read once: every world's lines are in it
    for world in played.worlds:
        out.worlds[world.seed] += check_invoices(played, world, ledger)
    out.run += check_finalized_unchanged(played)
    out.run += check_runs(played)
    check_stripe(played, config, out)
    out.run += check_audit(played, ledger, config, out)
    return out


def check_intake(
    played: Played, deliveries: list[Delivery], config: Any, out: Failures
) -> list[str]:
    """received = accepted + duplicates + rejected per ingest; each file counted as the
    worlds say; every stored event exactly once."""
    from meterline.connections import open_warehouse

    failures = []
    expected = {d.name: d for d in deliveries}
    for name, got in played.ingests:
        if got["received"] != got["accepted"] + got["duplicates"] + got["rejected"]:
            failures.append(
                f"ingest of {name}: received != accepted + duplicates + rejected: {got}"
            )
        want = expected[name]
        counts = (got["accepted"], got["duplicates"], got["rejected"])
        if counts != (want.accepted, want.duplicates, want.rejected):
            failures.append(
                f"ingest of {name}: accepted/duplicates/rejected {counts}, expected "
                f"{(want.accepted, want.duplicates, want.rejected)}"
            )
    with open_warehouse(config) as warehouse:
        stored = warehouse.query_rows(
            "SELECT customer_id, count(), uniqExact(event_id) FROM usage_events FINAL"
            " GROUP BY customer_id"
        )
        logged = warehouse.query_rows(
            "SELECT sum(received), sum(accepted), sum(duplicates), sum(rejected) FROM ingest_log"
        )[0]
    per_world: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for customer, count, distinct in stored:
        per_world[seed_of(customer)][0] += int(count)
        per_world[seed_of(customer)][1] += int(distinct)
    for world in played.worlds:
        held = per_world.get(world.seed, [0, 0])
        if held != [len(world.events)] * 2:
            out.worlds[world.seed].append(
                f"warehouse holds {held[0]} events ({held[1]} ids), expected {len(world.events)}"
            )
    want_log = (
        sum(len(d.rows) for d in deliveries),
        sum(len(w.events) for w in played.worlds),
        sum(d.duplicates for d in deliveries),
        sum(d.rejected for d in deliveries),
    )
    if tuple(int(v or 0) for v in logged) != want_log:
        failures.append(f"ingest_log totals {tuple(logged)}, expected {want_log}")
    return failures


def _ledger(config: Any) -> list[dict[str, Any]]:
    """Every line of the ledger with its invoice's subscription, period and status."""
    from sqlalchemy import select

    from billing.models import Invoice, InvoiceLine, Subscription
    from meterline.connections import ledger_session

    with ledger_session(config) as session:
        rows = session.execute(
            select(InvoiceLine, Invoice, Subscription.external_id)
            .join(Invoice, InvoiceLine.invoice_id == Invoice.id)
            .join(Subscription, Invoice.subscription_id == Subscription.id)
        ).all()
        return [
            {
                "line": ln.id,
                "invoice": inv.id,
                "subscription": ext,
                "status": inv.status,
                "period_start": inv.period_start,
                "service_start": ln.service_period_start,
                "kind": ln.kind,
                "price_id": ln.price_id,
                "amount_minor": ln.amount_minor,
                "currency": ln.currency,
            }
            for ln, inv, ext in rows
        ]


def _by_period(expected: Iterable[ExpectedInvoice]) -> dict[tuple[str, Any], ExpectedInvoice]:
    return {(f"sub_{e.customer_id}", e.period.start): e for e in expected}


def check_invoices(played: Played, world: World, ledger: list[dict[str, Any]]) -> list[str]:
    """Each invoice finalized by the first close holds exactly the model's lines over the
    events stored by then; after the late file and the second close, each period's lines
    plus their adjustments equal the model over every stored event, and so do the totals
    per customer and currency, to the minor unit."""
    grace = timedelta(hours=GRACE_HOURS)
    late_ids = {
        e.event_id for d in world.deliveries if d.after_close for e in _events_of(world, d.rows)
    }
    before = [e for e in world.events if e.event_id not in late_ids]
    from meterline.simulation.catalog import catalog_data

    catalog = catalog_data([world])
    first = _by_period(
        expected_invoices(catalog, world.customers, before, played.as_of_close, grace)
    )
    final = _by_period(
        expected_invoices(catalog, world.customers, world.events, played.as_of_late, grace)
    )
    subscriptions = {f"sub_{c.customer_id}" for c in world.customers}
    lines = [ln for ln in ledger if ln["subscription"] in subscriptions]
    failures: list[str] = []
    original: dict[tuple[str, Any], dict[tuple[str, str], int]] = defaultdict(dict)
    statuses: dict[tuple[str, Any], str] = {}
    net: dict[tuple[str, Any], int] = defaultdict(int)
    for ln in lines:
        key = (ln["subscription"], ln["period_start"])
        if ln["kind"] != "adjustment" and ln["status"] != "void":
            part = (ln["price_id"], ln["kind"])
            if part in original[key]:
                failures.append(f"{key[0]} period {key[1]:%Y-%m-%d %H:%M}: {part} posted twice")
            original[key][part] = ln["amount_minor"]
            statuses[key] = ln["status"]
        if ln["status"] != "void":
            net[(ln["subscription"], ln["service_start"])] += ln["amount_minor"]
    for key, want in first.items():
        got = {k: v for k, v in original.get(key, {}).items() if v}
        want_minor = {k: minor(v, want.currency) for k, v in want.lines.items()}
        if got != want_minor:
            failures.append(
                f"{key[0]} period {key[1]:%Y-%m-%d %H:%M} ({want.currency}): lines {got}, "
                f"the model says {want_minor}"
            )
        if want.lines and statuses.get(key) != "finalized":
            failures.append(
                f"{key[0]} period {key[1]:%Y-%m-%d %H:%M}: not finalized ({statuses.get(key)})"
            )
    for key in original:
        if key not in first and any(original[key].values()):
            failures.append(
                f"{key[0]} period {key[1]:%Y-%m-%d %H:%M}: invoiced, the model bills no such period"
            )
    for key, want in final.items():
        total = minor(want.total, want.currency)
        if net.get(key, 0) != total:
            failures.append(
                f"{key[0]} period {key[1]:%Y-%m-%d %H:%M}: lines + adjustments "
                f"{net.get(key, 0)}, the model over every event says {total} (minor units)"
            )
    by_customer: dict[str, int] = defaultdict(int)
    for ln in lines:
        if ln["status"] != "void":
            by_customer[ln["subscription"]] += ln["amount_minor"]
    for c in world.customers:
        want_total = sum(
            minor(e.total, e.currency) for k, e in final.items() if k[0] == f"sub_{c.customer_id}"
        )
        posted = by_customer.get(f"sub_{c.customer_id}", 0)
        if posted != want_total:
            failures.append(
                f"customer {c.customer_id} ({c.currency}): posted {posted}, the model says "
                f"{want_total} (minor units)"
            )
    return failures


def _events_of(world: World, rows: Iterable[str]) -> list[Any]:
    import json

    ids = set()
    for row in rows:
        try:
            ids.add(json.loads(row).get("event_id"))
        except (ValueError, AttributeError):
            continue
    return [e for e in world.events if e.event_id in ids]


#: Lines explained per world (all of them when a world has fewer).
EXPLAINED = 4


def _sample(seed: int, line_ids: list[int]) -> list[int]:
    """EXPLAINED of a world's lines, drawn from its seed, adjustments first."""
    rng = random.Random(f"{seed}:explain")
    return sorted(rng.sample(line_ids, min(EXPLAINED, len(line_ids))))


def check_runs(played: Played) -> list[str]:
    """Every close billed every due period (none held back for days not rolled up,
    none refused), and the last delivery left nothing but the invoices Stripe refuses
    (parked, never retried)."""
    failures = []
    for n, close in enumerate(played.closes):
        if close["not_billed"] or close["not_rolled_up"]:
            failures.append(f"close #{n + 1} left periods unbilled: {close}")
    refused = sum(1 for w in played.worlds for c in w.customers if c.currency in NOT_FOR_STRIPE)
    last = played.deliveries[-1] if played.deliveries else None
    if last is not None and last["left"] and not refused:
        failures.append(f"the last delivery left {last['left']} event(s): {last['errors']}")
    return failures


def check_finalized_unchanged(played: Played) -> list[str]:
    now = finalized_invoices(played.settings)
    failures = []
    for invoice_id, before in played.finalized_after_close.items():
        if now.get(invoice_id) != before:
            failures.append(
                f"invoice {invoice_id} changed after finalization: {before} -> "
                f"{now.get(invoice_id)}"
            )
    return failures


def check_stripe(played: Played, config: Any, out: Failures) -> None:
    """Stripe holds exactly the ledger's lines (`stripe reconcile` finds no difference),
    but for invoices in currencies Stripe refuses, which are never delivered."""
    from meterline.audit.stripe import months_invoiced, reconcile_stripe_months

    refused = {
        c.customer_id for w in played.worlds for c in w.customers if c.currency in NOT_FOR_STRIPE
    }
    for report in reconcile_stripe_months(months_invoiced(config), config=config):
        month = report.period
        for diff in report.differences:
            if diff.customer in refused and diff.stripe_invoice is None:
                continue
            out.worlds[seed_of(diff.customer)].append(
                f"stripe {month}: invoice {diff.invoice_id}: {diff.what}"
            )


def check_audit(
    played: Played, ledger: list[dict[str, Any]], config: Any, out: Failures
) -> list[str]:
    """`audit explain` agrees with raw events on each world's lines (a sample of
    EXPLAINED lines per world: explaining is a re-rating from raw events, the slowest
    check); `audit reconcile` after the last close, which re-rates every period, has no
    error finding."""
    from meterline.audit.explain.gather import explain_lines
    from meterline.audit.reconcile.gather import reconcile_after_close

    failures = []
    by_world: dict[int, list[int]] = defaultdict(list)
    for ln in ledger:
        if ln["status"] != "void":
            by_world[seed_of(ln["subscription"])].append(ln["line"])
    ids = [i for seed in sorted(by_world) for i in _sample(seed, by_world[seed])]
    for explanation in explain_lines(ids, config=config, samples=0, late_limit=0):
        if explanation.status not in ("agrees", "adjusted"):
            out.worlds[seed_of(explanation.invoice.customer)].append(
                f"audit explain line {explanation.line.id}: {explanation.status} "
                f"(difference {explanation.difference})"
            )
    for report in reconcile_after_close(played.as_of_late, config=config):
        for finding in report.failures:
            line = f"audit reconcile {report.period}: {finding.check}: {finding.detail}"
            if finding.customer is not None and seed_of(finding.customer) >= 0:
                out.worlds[seed_of(finding.customer)].append(line)
            else:
                failures.append(line)
    return failures
