"""`meterline outbox`: the transactional outbox by hand (docs/stripe.md): list what
waits or failed, deliver it, replay it."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from meterline.cli.exits import ExitCode
from meterline.cli.options import Id
from meterline.jobs.deliver import DeliveryReport, deliver, outbox_rows, replay_from
from meterline.output import json_text, progress

SINK_CHOICE = click.Choice(["stripe", "avalara", "webhook"])


@click.group("outbox")
def outbox() -> None:
    """The outbox: list, deliver, replay what the ledger tells Stripe, AvaTax, the webhook.

    Each finalized or voided invoice, and each change of a draft's adjustment lines, is an
    event written in the same transaction as the change (for Stripe, and AvaTax with
    METERLINE_TAX_SINK=avalara); so is each alert fired or retracted (for the webhook,
    docs/alerts.md). `deliver` sends what waits;
    delivering twice changes nothing. A customer's events go in order: one that failed
    too often is parked and holds its customer's later events back until replayed."""


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


@outbox.command("list")
@click.option("--failed", is_flag=True, help="Only events that failed or are parked.")
@click.option("--sink", type=SINK_CHOICE, default=None, help="Only this sink's deliveries.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=None, help="At most N rows.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def list_command(failed: bool, sink: str | None, limit: int | None, as_json: bool) -> None:
    """List outbox events and their delivery state, oldest first.

    Exit code 1 when some event is parked (a person must look: fix the cause, then
    `meterline outbox replay --from ID`)."""
    rows = outbox_rows(sink=sink, failed_only=failed, limit=limit)
    if as_json:
        click.echo(json_text(rows))
    else:
        if not rows:
            click.echo("no outbox events" + (" failed" if failed else ""))
        for row in rows:
            state = row.status
            if row.status == "delivered":
                state += f" {_when(row.delivered_at)} -> {row.external_id or '-'}"
            elif row.waiting_for is not None:
                state += f" (after event {row.waiting_for} of this customer)"
            if row.waiting_for_tax and row.status != "delivered":
                state += " (waiting for its tax: `meterline outbox deliver --sink avalara`)"
            if row.attempts:
                state += f", {row.attempts} failed attempt(s)"
            if row.status == "pending" and row.next_attempt_at is not None:
                state += f", next try after {_when(row.next_attempt_at)}"
            click.echo(
                f"{row.event_id:>8}  {row.kind:<28} invoice {row.invoice_id or '-':<8}"
                f" {row.customer}"
                f"  {row.sink}: {state}"
            )
            if row.last_error and row.status != "delivered":
                click.echo(f"{'':>10}last error: {row.last_error}")
    if any(row.status == "parked" for row in rows):
        sys.exit(1)


@outbox.command("deliver")
@click.option(
    "--sink", type=SINK_CHOICE, default="stripe", show_default=True, help="The sink to deliver to."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def deliver_command(sink: str, as_json: bool) -> None:
    """Deliver every event that waits, in order per customer, customers in parallel.

    Exit code 1 when some delivery failed (retried on the next run, after a backoff) or
    an event is parked; 2 when the sink is not configured (METERLINE_STRIPE_API_KEY;
    --sink avalara: METERLINE_AVALARA_*) or refuses the key (nothing is charged an
    attempt); 4 when it could not be reached at all (every delivery tried failed; they
    are retried after a backoff). With METERLINE_TAX_SINK=avalara, an invoice reaches
    Stripe once `--sink avalara` recorded its tax (docs/tax.md)."""

    # The shared progress display: a bar on a terminal once the run takes a few seconds,
    # a line every 30 s in a log after 10 s (it printed a line per batch, even for a
    # one-second run, after the summary).
    with progress(f"{sink}: events delivered", quiet=as_json) as tick:

        def moved(report: DeliveryReport) -> None:
            tick(report.delivered)

        report = deliver(sink, progress=moved)
    if as_json:
        click.echo(json_text(report.to_json()))
    else:
        click.echo(report.summary())
        for line in report.errors:
            click.echo(f"  {line}")
    if report.failed and not report.delivered and not report.parked:
        sys.exit(ExitCode.UNAVAILABLE)
    if not report.ok:
        sys.exit(ExitCode.FINDINGS)


@outbox.command("replay")
@click.option(
    "--from", "from_id", type=Id("an event id"), required=True, help="First event id to replay."
)
@click.option("--sink", type=SINK_CHOICE, default=None, help="Only this sink (default: all).")
def replay_command(from_id: int, sink: str | None) -> None:
    """Make every event from ID on pending again (delivered and parked alike); the next
    `deliver` sends them. Harmless: the sink looks before it creates, and brings the
    other system to each event's state."""
    count = replay_from(from_id, sink=sink)
    noun = "delivery" if count == 1 else "deliveries"
    click.echo(f"{count:,} {noun} from event {from_id} on pending (again)")
