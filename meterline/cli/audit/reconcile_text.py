"""The month's audit reports as text: `render_reconcile` (tables fitted to the console:
money and counts are never cut, the findings' ids never folded), `render_findings`,
`render_rerate`. Like meterline.cli.audit.text (the explanation), each prints the
report's typed model to a console through meterline.output's formatters and tables, no
line wider than the console or 100 columns."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from meterline.cli.audit.text import MAX_WIDTH, folded, narrow, qty, when
from meterline.output import format_amount, format_count, format_minor, format_quantity

if TYPE_CHECKING:
    from rich.console import Console

    from meterline.audit.reconcile import ReconcileReport
    from meterline.audit.rerate import RerateReport
    from meterline.audit.values import Amount


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
        )
        out.print(f"  did not see; {adjusted} fully adjusted")
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
    from meterline.output import Column, print_table

    intake = report.intake
    balance = "balanced" if intake.balanced else "NOT balanced"
    lines = [
        f"intake ({intake.scope} {when(intake.window[0])} .. {when(intake.window[1])}):",
        f"  {intake.ingests:,} ingests, received {intake.received:,} = accepted"
        f" {intake.accepted:,} + duplicates {intake.duplicates:,} + rejected"
        f" {intake.rejected:,}: {balance}",
    ]
    for line in lines:
        for part in folded(line, min(out.width, MAX_WIDTH)):
            out.print(part, markup=False, highlight=False, soft_wrap=True)
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
    from meterline.output import Column, format_amount, print_table

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
    )
    out.print(
        f"  {'errors' if report.fail_on == 'error' else 'errors and warnings'}"
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


# --- rerate ----------------------------------------------------------------------------


def render_rerate(out: Console, report: RerateReport) -> None:
    """The re-rating as text: what was checked, one line per differing invoice, and the
    differing lines as one table (quantities without trailing zeros, money through the
    one money formatter; meterline.output.print_table fits it to the console)."""
    from meterline.output import Column, print_table

    width = min(out.width, MAX_WIDTH)
    scope = report.period + (f" customer {report.customer}" if report.customer else "")
    lines = [
        f"rerate {scope}: {format_count(report.periods_checked)} finalized period(s)"
        f" checked, {format_count(report.periods_differing)} differ"
        f" ({format_count(report.lines_differing)} line(s))",
        f"  against the events ingested up to {when(report.run_at)}"
        + ("" if report.applied else "; dry run, nothing posted (--apply posts adjustments)"),
    ]
    for p in report.periods:
        lines.append(
            f"invoice {p.invoice_id} ({p.customer}) {when(p.period[0])} ->"
            f" {when(p.period[1])}: {format_minor(p.difference.minor, p.currency)}"
        )
    for line in lines:
        for part in folded(line, width):
            out.print(part, markup=False, highlight=False, soft_wrap=True)
    if report.periods:
        print_table(
            narrow(out, width),
            [
                Column("invoice", "number"),
                Column("line", "number"),
                "price",
                Column("quantity", "number"),
                Column("amount", "money"),
                Column("difference", "money"),
            ],
            [
                [
                    str(p.invoice_id),
                    str(d.line_id) if d.line_id else "new",
                    f"{d.price_id} {d.kind}" + (f" [{d.group}]" if d.group else ""),
                    f"{qty(d.billed.quantity)} → {qty(d.rerated.quantity)}",
                    f"{format_amount(Decimal(d.billed.amount), p.currency)} →"
                    f" {format_amount(Decimal(d.rerated.amount), p.currency)}",
                    format_minor(d.difference.amount_minor, p.currency),
                ]
                for p in report.periods
                for d in p.lines
            ],
            title="the lines that differ: quantity and amount billed → re-rated",
        )
    tail = []
    for s in report.skipped:
        detail = s.model_dump(exclude={"reason"}, exclude_none=True)
        shown = ", ".join(
            f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in detail.items()
        )
        tail.append(f"skipped: {s.reason}: {shown}")
    if report.applied and report.posted:
        tail.append(f"posted with rating run {report.rating_run_id}:")
        for c in report.posted:
            ids = ", ".join(map(str, c.line_ids)) or "none"
            tail.append(
                f"  invoice {c.carrier_invoice_id} ({c.customer}) carries the correction of"
                f" invoice {c.corrected_invoice_id}: {c.created} new, {c.replaced} replaced"
                f" adjustment line(s): {ids}"
            )
    for line in tail:
        for part in folded(line, width):
            out.print(part, markup=False, highlight=False, soft_wrap=True)
