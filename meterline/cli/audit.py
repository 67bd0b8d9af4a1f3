"""`meterline audit explain|reconcile|acknowledge|rerate` and `meterline statement`: why a
customer was charged what they were, whether the books balance, and what a re-rating
would change.

Registered on the main group by `register(main)`. The commands read `settings()` and
print the audit's typed reports (meterline.audit.*): as text, or with --json through
meterline.output.json_text. `reconcile` exits 1 when a finding fails the month, so it
can run as a DAG task or a cron check; a missing line, customer or period exits 3.
"""

from __future__ import annotations

import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meterline.cli.options import Month, Timestamp, console

if TYPE_CHECKING:
    from rich.console import Console

    from meterline.audit.explain import Explanation
    from meterline.audit.explain.report import QuantityChain, RatingView
    from meterline.audit.reconcile import ReconcileReport
    from meterline.audit.rerate import RerateReport
    from meterline.audit.values import Amount


def register(main: click.Group) -> None:
    """Add `audit` and `statement` to the main `meterline` command group."""
    main.add_command(audit)
    main.add_command(statement)


def _echo_json(report: object) -> None:
    from meterline.output import json_text

    click.echo(json_text(report, indent=2))


def _when(moment: datetime | None) -> str:
    """An instant as UTC text, seconds dropped when zero ("2026-11-01T00:00Z")."""
    from meterline.audit.values import iso

    text = iso(moment)
    return text.replace(":00Z", "Z") if text else "-"


def _n(value: Decimal | None) -> str:
    """A number as the reports spell it (canonical text)."""
    from meterline.audit.values import text

    return text(value) if value is not None else "None"


@click.group("audit")
def audit() -> None:
    """Audit charges: explain a line from its raw events, reconcile a month, re-rate it."""


# --- explain ----------------------------------------------------------------------------


@audit.command("explain")
@click.argument("line_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option("--samples", default=5, show_default=True, help="Sample event ids to show.")
def explain(line_id: int, as_json: bool, samples: int) -> None:
    """The chain from invoice line LINE_ID down to the raw events, recomputed."""
    from meterline.audit.explain import explain_line

    found = explain_line(line_id, samples=samples)
    if as_json:
        _echo_json(found)
        return
    for line in render_explain(found):
        click.echo(line)


def render_explain(doc: Explanation) -> list[str]:
    """The explanation as text lines, top (invoice) to bottom (raw events)."""
    out = _explain_head(doc)
    if doc.quantity is not None:
        out += _explain_quantity(doc.quantity)
    out += _explain_rating(doc.rating, doc.line.currency)
    out += _explain_result(doc)
    return out


def _explain_head(doc: Explanation) -> list[str]:
    line, inv = doc.line, doc.invoice
    period = inv.period
    out = [
        f"line {line.id}: {line.kind} {line.price_id}"
        + (f" [{line.group}]" if line.group else "")
        + f" on invoice {inv.id} ({inv.status}"
        + (f" {_when(inv.finalized_at)}" if inv.finalized_at else "")
        + ")",
        f"  customer  {inv.customer} {inv.customer_name!r}, subscription"
        f" {inv.subscription}, plan {inv.plan}, {inv.currency}",
        f"  period    {period.start_local.isoformat()} -> {period.end_local.isoformat()}"
        f" ({period.timezone})",
        f"            UTC {_when(period.start_utc)} -> {_when(period.end_utc)};"
        f" billing cycle {_n(inv.billing_cycle.hours)} h",
        f"  posted    {line.currency} {line.amount} (precise {_n(line.amount_precise)}),"
        f" quantity {_n(line.quantity)}, rating run {line.rating_run_id or '-'}"
        f" as of {_when(line.posted_at)}",
    ]
    if doc.corrects is not None:
        corrects, source = doc.corrects, doc.corrects.invoice
        out.append(
            f"  corrects  line {corrects.line_id or '-'} (key {corrects.key}) of invoice"
            f" {source.id}, period {_when(source.period.start_utc)}"
        )
    price = doc.price
    out.append(
        f"price {price.price_id} @ {price.version}"
        + (f", meter {price.meter}" if price.meter else "")
        + (f", filter {price.filter}" if price.filter else "")
    )
    for w in price.windows:
        detail = ", ".join(f"{k} {v}" for k, v in w.body.items() if k != "currency")
        out.append(f"  {_when(w.start)} -> {_when(w.end)}  {w.version}: {detail}")
    return out


def _explain_quantity(chain: QuantityChain) -> list[str]:
    out = [f"quantity  {chain.aggregation} of {chain.meter} ({chain.unit}): {chain.how}"]
    for w in chain.windows:
        groups = ", ".join(f"{g.group} {_n(g.quantity)} ({g.events} events)" for g in w.groups)
        out.append(
            f"  window {_when(w.start)} -> {_when(w.end)}"
            + (f" [{w.version}]" if w.version else "")
            + f": raw {_n(w.raw_quantity)}, rollup {_n(w.rollup_quantity)}"
            + (f"  <- {groups}" if groups else "")
        )
    for level in chain.levels:
        out.append(
            f"  level {level.group}: {_n(level.value)} from {_when(level.start)} to"
            f" {_when(level.end)} ({_n(level.hours)} h) = {_n(level.share_of_cycle)} of the"
            f" cycle  [{', '.join(level.events[:3])}"
            + (" ..." if len(level.events) > 3 else "")
            + "]"
        )
    if chain.from_events is not None:
        out.append(f"  from the events by the meter's rule: {_n(chain.from_events)}")
    raw, rollup, diff = chain.raw_events, chain.rollup, chain.raw_vs_rollup
    out.append(
        f"  raw events (usage_events FINAL): {raw.events:,} events, sum"
        f" {_n(raw.value_sum)}, last ingested {_when(raw.last_ingested_at)}"
    )
    out.append(
        f"  rollup: {rollup.rows:,} hourly rows over {len(rollup.days)} day(s),"
        f" {rollup.events:,} events, sum {_n(rollup.value_sum)}; raw - rollup:"
        f" {diff.events} events, {_n(diff.value_sum)}"
    )
    return out


def _explain_rating(rating: RatingView | dict[str, object] | None, currency: str) -> list[str]:
    if rating is None:
        return []
    if isinstance(rating, dict):
        return [f"rating    {rating}"]
    out = [
        f"rating    {rating.model}: quantity {_n(rating.quantity)}, free"
        f" {_n(rating.free_units)}, billable {_n(rating.billable_quantity)}"
    ]
    for e in rating.entries:
        what = f"tier {e.tier}" if e.tier else e.kind
        version = f" [{e.version}]" if e.version else ""
        out.append(
            f"  {what}{version}: {_n(e.units)} x {_n(e.unit_amount)}"
            + (f" + flat {_n(e.flat_amount)}" if e.flat_amount else "")
            + f" = {_n(e.amount)}"
        )
    if rating.minimum_adjustment:
        out.append(f"  raised to the price's minimum by {_n(rating.minimum_adjustment)}")
    out.append(f"  = {currency} {_n(rating.amount)} (precise {_n(rating.amount_precise)})")
    return out


def _explain_result(doc: Explanation) -> list[str]:
    cur = doc.line.currency
    out = [
        f"related   line {rel.id} {rel.kind} {rel.price_id}: {cur} {rel.amount}"
        f"  ({rel.description})"
        for rel in doc.related_lines
    ]
    rec, diff = doc.recomputed, doc.difference
    out.append(
        f"recomputed from raw events: quantity {_n(rec.quantity)}, {cur} {rec.amount}"
        f" (precise {_n(rec.amount_precise)}) at {rec.price_version or '-'}"
    )
    out.append(
        f"difference: quantity {_n(diff.quantity)}, {cur} {diff.amount}, precise"
        f" {_n(diff.amount_precise)}  ->  {doc.status.upper()}"
    )
    for adj in doc.adjustments:
        out.append(
            f"adjusted by line {adj.id} on invoice {adj.invoice_id}"
            f" ({adj.invoice_status}): quantity {_n(adj.quantity)}, {cur} {adj.amount}"
        )
    if doc.adjustments:
        net = doc.net
        out.append(
            f"net billed {_n(net.billed.quantity)} / {cur} {net.billed.amount};"
            f" net difference {_n(net.difference.quantity)} / {cur} {net.difference.amount}"
        )
    late = doc.late_events
    if late.since is not None:
        run = f"rating run {late.rating_run_id}" if late.rating_run_id else "the rating"
        stale = late.stale_days
        out.append(
            f"late events (not seen by {run}: it saw events ingested up to {_when(late.since)}"
            + (f", and on {len(stale)} stale rollup day(s) less" if stale else "")
            + f"): {late.count}"
            + (f", sum {_n(late.value_sum)}" if late.count else "")
        )
        for e in late.events:
            out.append(
                f"  {e.event_id} at {_when(e.timestamp)} value {_n(e.value)} {e.group},"
                f" ingested {_when(e.ingested_at)} from {e.source}"
            )
    if doc.sample_events:
        out.append("sample events: " + ", ".join(e.event_id for e in doc.sample_events))
    out += [f"note: {note}" for note in doc.notes]
    return out


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


def render_reconcile(out: Console, report: ReconcileReport) -> None:
    """One month's reconciliation as text: the verdict, the intake, the chain per meter
    and currency, the totals per kind, late usage, and the findings. Tables fit the
    console (meterline.output.print_table: money and counts are never cut)."""
    invoices = report.invoices
    verdict = "[green]RECONCILED[/green]" if report.ok else "[red]NOT RECONCILED[/red]"
    scope = report.period + (f" customer {report.customer}" if report.customer else "")
    out.print(
        f"[bold]reconcile {scope}[/bold]: {verdict}: {invoices.checked} finalized invoices"
        f" checked, {invoices.open} open, {invoices.void} void"
    )
    _print_intake(out, report)
    _print_chain(out, report)
    adjusted = sum(1 for d in report.drift if d.adjusted)
    if report.drift:
        out.print(
            f"late usage: {len(report.drift)} finalized invoice(s) have"
            f" {sum(d.late_events for d in report.drift):,} event(s) the run that rated them"
            f" did not see; {adjusted} fully adjusted"
        )
    for d in report.drift:
        if not d.adjusted:
            out.print(
                f"  [red]not adjusted[/red]: invoice {d.invoice_id} ({d.customer}):"
                f" {d.late_events} late event(s); adjustments so far {d.adjustments}"
            )
    if not report.unattributed:
        out.print("unattributed usage: none")
    render_findings(out, report)


def _print_intake(out: Console, report: ReconcileReport) -> None:
    from meterline.audit.values import iso
    from meterline.output import Column, print_table

    intake = report.intake
    balance = "balanced" if intake.balanced else "[red]NOT balanced[/red]"
    out.print(
        f"intake ({intake.scope} {iso(intake.window[0])} .. {iso(intake.window[1])}):"
        f" {intake.ingests} ingests, received {intake.received:,} = accepted"
        f" {intake.accepted:,} + duplicates {intake.duplicates:,} + rejected"
        f" {intake.rejected:,}: {balance}"
    )
    if intake.by_meter_currency:
        print_table(
            out,
            [
                "meter",
                "currency",
                Column("accepted", "number"),
                Column("rejected", "number"),
                "rejected by reason",
            ],
            [
                [
                    row.meter,
                    row.currency,
                    f"{row.accepted:,}",
                    f"{row.rejected:,}",
                    ", ".join(f"{k} {v:,}" for k, v in row.rejected_by_reason.items()),
                ]
                for row in intake.by_meter_currency
            ],
        )


def _print_chain(out: Console, report: ReconcileReport) -> None:
    from meterline.output import Column, format_amount, format_quantity, print_table

    def amount(value: Amount) -> str:
        return format_amount(value.major, value.currency)

    if report.meters:
        quantities = ("raw qty", "rollup qty", "rated qty", "posted qty")
        print_table(
            out,
            [
                "meter",
                "currency",
                *(
                    Column(h, "number")
                    for h in ("invoices", "raw events", "rollup events", *quantities)
                ),
                *(Column(h, "money") for h in ("rated", "posted", "difference")),
            ],
            [
                [
                    r.meter,
                    r.currency,
                    *(f"{n:,}" for n in (r.invoices, r.raw_events, r.rollup_events)),
                    *(
                        format_quantity(q)
                        for q in (
                            r.raw_quantity,
                            r.rollup_quantity,
                            r.rated_quantity,
                            r.posted_quantity,
                        )
                    ),
                    *(amount(a) for a in (r.rated_amount, r.posted_amount, r.difference)),
                ]
                for r in report.meters
            ],
            title="raw events -> rollup -> rated -> posted (lines + adjustments)",
        )
    if report.charges:
        print_table(
            out,
            [
                "currency",
                "kind",
                *(Column(h, "money") for h in ("re-rated", "posted", "difference")),
            ],
            [
                [r.currency, r.kind, *(amount(a) for a in (r.rerated, r.posted, r.difference))]
                for r in report.charges
            ],
            title="all lines",
        )


def render_findings(out: Console, report: ReconcileReport) -> None:
    """The findings as one table: id (for `meterline audit acknowledge`), severity,
    whether it fails the run (or who acknowledged it, and why), what and where."""
    from meterline.output import Column, print_table

    if not report.findings:
        out.print("findings: none")
        return
    counts = report.counts
    out.print(
        f"findings: {counts['error']} error(s), {counts['warning']} warning(s),"
        f" {counts['acknowledged']} acknowledged; the run fails on unacknowledged"
        f" {'errors' if report.fail_on == 'error' else 'errors and warnings'}"
        " (METERLINE_RECONCILE_FAIL_ON)"
    )
    rows = []
    for f in report.findings:
        ack = f.acknowledged
        if ack is not None:
            status = f"acknowledged by {ack.by} {ack.at:%Y-%m-%d}: {ack.reason}"
        else:
            status = "FAILS" if f.fails else "passes"
        where = " ".join(
            p for p in (f.customer or "", f"invoice {f.invoice_id}" if f.invoice_id else "") if p
        )
        rows.append([f.id, f.severity, status, f.check, where or "-", f.detail])
    # The id is what `meterline audit acknowledge` takes: never cut or folded.
    print_table(
        out,
        [Column("id", "number"), "severity", "status", "check", "where", "detail"],
        rows,
    )


# --- acknowledge ------------------------------------------------------------------------


@audit.command("acknowledge")
@click.argument("finding_id")
@click.option("--reason", required=True, help="Why the finding is known and may pass.")
@click.option(
    "--by",
    "by",
    help="Who acknowledges it (default: the user running the command).",
)
def acknowledge(finding_id: str, reason: str, by: str | None) -> None:
    """Acknowledge reconcile finding FINDING_ID (as `audit reconcile` lists it): it stays
    listed, marked acknowledged, and no longer fails a run. A finding whose values change
    gets a new id and needs a new acknowledgement."""
    import getpass
    from datetime import UTC

    from meterline.audit.findings import acknowledge as record
    from meterline.audit.findings import check_finding_id

    try:
        check_finding_id(finding_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="FINDING_ID") from None
    if not reason.strip():
        raise click.BadParameter("must say why", param_hint="--reason")
    who = by or getpass.getuser()
    ack = record(finding_id, reason=reason, by=who, at=datetime.now(UTC))
    click.echo(
        f"acknowledged {ack.finding_id} by {ack.by} at {ack.at:%Y-%m-%d %H:%M} UTC: {ack.reason}"
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

    report = rerate(period, customer=customer, apply=apply_)
    if as_json:
        _echo_json(report)
        return
    for line in render_rerate(report):
        click.echo(line)


def render_rerate(report: RerateReport) -> list[str]:
    scope = report.period + (f" customer {report.customer}" if report.customer else "")
    out = [
        f"rerate {scope} against events ingested up to {_when(report.run_at)}:"
        f" {report.periods_checked} finalized period(s) checked, {report.periods_differing}"
        f" differ ({report.lines_differing} line(s))"
        + ("" if report.applied else "; dry run, nothing posted (--apply posts adjustments)")
    ]
    for p in report.periods:
        cur = p.currency
        out.append(
            f"invoice {p.invoice_id} {p.customer} {p.subscription}"
            f" {_when(p.period[0])} -> {_when(p.period[1])}: difference {cur}"
            f" {p.difference}"
        )
        for d in p.lines:
            b, r, x = d.billed, d.rerated, d.difference
            out.append(
                f"  {'line ' + str(d.line_id) if d.line_id else 'new'} {d.price_id}"
                f" {d.kind}{' ' + d.group if d.group else ''}: billed"
                f" {_n(b.quantity)} / {b.amount} -> re-rated {_n(r.quantity)} / {r.amount}"
                f" (difference {_n(x.quantity)} / {cur} {x.amount})"
            )
    for s in report.skipped:
        out.append(
            f"skipped: {s.reason}: "
            + ", ".join(
                f"{k} {v}" for k, v in s.model_dump(exclude={"reason"}, exclude_none=True).items()
            )
        )
    if report.applied and report.posted:
        out.append(f"posted with rating run {report.rating_run_id}:")
        for c in report.posted:
            out.append(
                f"  invoice {c.carrier_invoice_id} ({c.customer}) carries the correction"
                f" of invoice {c.corrected_invoice_id}: {c.created} new,"
                f" {c.replaced} replaced adjustment line(s) {c.line_ids}"
            )
    return out


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
