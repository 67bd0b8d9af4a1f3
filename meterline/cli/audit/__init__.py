"""`meterline audit explain|reconcile|acknowledge|rerate` and `meterline statement`: why a
customer was charged what they were, whether the books balance, and what a re-rating
would change.

Registered on the main group by `register(main)`. The commands read `settings()` and
print the audit's typed reports (meterline.audit.*): as text (meterline.cli.audit.text),
or with --json through meterline.output.json_text. `reconcile` exits 1 when a finding
fails the month, so it can run as a DAG task or a cron check; a missing line, customer
or period exits 3.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from meterline.cli.options import Id, Month, Timestamp, console

if TYPE_CHECKING:
    from rich.console import Console

R = TypeVar("R")


def register(main: click.Group) -> None:
    """Add `audit` and `statement` to the main `meterline` command group."""
    main.add_command(audit)
    main.add_command(statement)


def _echo_json(report: object) -> None:
    from meterline.output import json_text

    click.echo(json_text(report, indent=2))


def _show(report: R, render: Callable[[Console, R], None], *, as_json: bool) -> None:
    """A report as JSON, or as the text `render` prints of it to the command's console."""
    if as_json:
        _echo_json(report)
        return
    render(console(), report)


@click.group("audit")
def audit() -> None:
    """Audit charges: explain a line from its raw events, reconcile a month, re-rate it."""


# --- explain ----------------------------------------------------------------------------


@audit.command("explain")
@click.argument("line_id", type=Id("a line id"))
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option(
    "--samples",
    default=5,
    show_default=True,
    type=click.IntRange(0, 1_000),
    help="Sample event ids to show (0 to 1000).",
)
def explain(line_id: int, as_json: bool, samples: int) -> None:
    """The chain from invoice line LINE_ID down to the raw events, recomputed."""
    from meterline.audit.explain import explain_line
    from meterline.cli.audit.text import render_explain

    _show(explain_line(line_id, samples=samples), render_explain, as_json=as_json)


# --- reconcile --------------------------------------------------------------------------


@audit.command("reconcile")
@click.option(
    "--period", type=Month(), help="YYYY-MM: the invoices whose period starts in that month."
)
@click.option("--customer", help="One customer (external id).")
@click.option(
    "--as-of",
    "as_of",
    type=Timestamp(),
    help="Also fail on periods due by then without an invoice; without --period, reconcile"
    " every month a close as of then can still change (the billing_close DAG's task).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def reconcile(
    period: str | None, customer: str | None, as_of: datetime | None, as_json: bool
) -> None:
    """Check the chain for a month: intake, raw events, rollup, rated and posted lines.

    Exit code 1 when anything does not reconcile."""
    from meterline.audit.reconcile import reconcile_after_close, reconcile_period
    from meterline.cli.audit.reconcile_text import render_reconcile

    if period is not None:
        reports = [reconcile_period(period, customer=customer, as_of=as_of)]
    elif as_of is not None:
        reports = reconcile_after_close(as_of, customer=customer)
    else:
        raise click.UsageError("give --period YYYY-MM, --as-of TIME, or both")
    ok = all(r.ok for r in reports)
    if as_json:
        _echo_json(reports[0] if period else {"ok": ok, "months": reports})
    else:
        out = console()
        if not reports:
            out.print("nothing to reconcile: no invoice period ended in the lookback")
        for report in reports:
            render_reconcile(out, report)
    if not ok:
        sys.exit(1)


# --- acknowledge ------------------------------------------------------------------------


@audit.command("acknowledge")
@click.argument("finding_id")
@click.option(
    "--period",
    type=Month(),
    help="YYYY-MM: the month whose `audit reconcile --period` lists the finding.",
)
@click.option(
    "--as-of",
    "as_of",
    type=Timestamp(),
    help="As `audit reconcile --as-of`: with --period, also that month's periods due by"
    " then; alone, every month a close as of then can change (the billing_close DAG's"
    " reconcile).",
)
@click.option("--customer", help="As `audit reconcile --customer`: one customer's findings.")
@click.option("--reason", required=True, help="Why the finding is known and may pass.")
@click.option(
    "--by",
    "by",
    help="Who acknowledges it (default: the user running the command).",
)
def acknowledge(
    finding_id: str,
    period: str | None,
    as_of: datetime | None,
    customer: str | None,
    reason: str,
    by: str | None,
) -> None:
    """Acknowledge reconcile finding FINDING_ID, as `audit reconcile` with the same
    --period / --as-of / --customer lists it: it stays listed, marked acknowledged, and
    no longer fails a run. The reconcile runs again first; an id it does not list exits
    3. A finding whose values change gets a new id and needs a new acknowledgement."""
    import getpass
    from datetime import UTC

    from meterline.audit.findings import acknowledge as record
    from meterline.audit.findings import check_finding_id, reason_problem
    from meterline.audit.reconcile import find_finding

    try:
        wanted = check_finding_id(finding_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="FINDING_ID") from None
    if not reason.strip():
        raise click.BadParameter("must say why", param_hint="--reason")
    if reason_problem(reason) is not None:
        raise click.BadParameter(str(reason_problem(reason)), param_hint="--reason")
    if period is None and as_of is None:
        raise click.UsageError(
            "give --period YYYY-MM or --as-of TIME: the reconcile that lists the finding"
        )
    found = find_finding(wanted, period=period, as_of=as_of, customer=customer)
    who = by or getpass.getuser()
    ack = record(wanted, reason=reason, by=who, at=datetime.now(UTC))
    where = " ".join(
        p for p in (found.customer, f"invoice {found.invoice_id}" if found.invoice_id else "") if p
    )
    click.echo(
        f"acknowledged {ack.finding_id} ({found.severity} {found.check}"
        + (f", {where}" if where else "")
        + f") by {ack.by} at {ack.at:%Y-%m-%d %H:%M} UTC: {ack.reason}"
    )


# --- rerate -----------------------------------------------------------------------------


@audit.command("rerate")
@click.option(
    "--period",
    type=Month(),
    required=True,
    help="YYYY-MM: the invoices whose period starts then.",
)
@click.option("--customer", help="One customer (external id).")
@click.option("--apply", "apply_", is_flag=True, help="Post the differences as adjustment lines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def rerate_command(period: str, customer: str | None, apply_: bool, as_json: bool) -> None:
    """Re-rate a month's finalized invoices against the current events and catalog.

    Without --apply: the differences, line by line; nothing is written. With --apply:
    posted as adjustment lines on the next open invoices (a finalized invoice is never
    edited)."""
    from meterline.audit.rerate import rerate
    from meterline.cli.audit.reconcile_text import render_rerate

    _show(rerate(period, customer=customer, apply=apply_), render_rerate, as_json=as_json)


# --- statement --------------------------------------------------------------------------


@click.command("statement")
@click.option("--customer", required=True, help="The customer (external id).")
@click.option(
    "--period",
    required=True,
    help="YYYY-MM: the billing periods whose first day, in the subscription's timezone,"
    " is in that month (an anchor-31 period from 2026-10-31 to 2026-11-29 is 2026-10);"
    " or YYYY-MM-DD: the period containing that local day.",
)
@click.option(
    "--view",
    type=click.Choice(["customer", "internal"]),
    default="customer",
    show_default=True,
    help="customer: safe to send (no ledger ids, version hashes, UTC instants or audit"
    " chain); internal: adds them, with each line re-rated from the raw events.",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write.",
)
def statement(customer: str, period: str, view: str, out: Path) -> None:
    """A self-contained HTML usage statement: lines, daily usage, tiers (and the audit
    chain in the internal view). Exit 3 when the customer or period does not exist."""
    from meterline.audit.statement import parse_period, render, statement_data

    try:
        parse_period(period)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--period") from None
    page = render(statement_data(customer, period, view=view))  # type: ignore[arg-type]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or exc
        raise click.BadParameter(f"cannot write {out}: {reason}", param_hint="--out") from None
    click.echo(f"wrote {out}")
