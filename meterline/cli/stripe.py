"""`meterline stripe`: the ledger against Stripe (docs/stripe.md)."""

from __future__ import annotations

import sys

import click

from meterline.audit.stripe import reconcile_stripe
from meterline.cli.options import Month
from meterline.output import json_text

#: Differences listed in the text; --json lists them all.
SHOWN = 50


@click.group("stripe")
def stripe() -> None:
    """Stripe Billing: reconcile a month's invoices against Stripe."""


@stripe.command("reconcile")
@click.option("--period", type=Month(), required=True, help="Invoices whose period starts in it.")
@click.option("--customer", default=None, help="Only this customer's invoices.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def reconcile(period: str, customer: str | None, as_json: bool) -> None:
    """Compare every finalized invoice of the month with its Stripe invoice, line by line
    (by our line ids in the items' metadata): missing, extra, different amount, different
    total. Exit code 1 on any difference."""
    report = reconcile_stripe(period, customer=customer)
    if as_json:
        click.echo(json_text(report.to_json()))
    else:
        click.echo(report.summary())
        for d in report.differences[:SHOWN]:
            where = f" (Stripe {d.stripe_invoice})" if d.stripe_invoice else ""
            click.echo(f"  invoice {d.invoice_id} of {d.customer}{where}: {d.what}")
        if len(report.differences) > SHOWN:
            click.echo(f"  ... and {len(report.differences) - SHOWN:,} more (--json lists all)")
    if not report.ok:
        sys.exit(1)
