"""The audit's reports as text for a terminal or a log: `render_explain` (top, the
invoice, to bottom, the raw events), `render_reconcile` (tables fitted to the console:
money and counts are never cut, the findings' ids never folded), `render_rerate`. Each
takes the report's typed model (meterline.audit.*)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from meterline.audit.values import iso, text

if TYPE_CHECKING:
    from rich.console import Console

    from meterline.audit.explain import Explanation
    from meterline.audit.explain.report import QuantityChain, RatingView
    from meterline.audit.reconcile import ReconcileReport
    from meterline.audit.rerate import RerateReport
    from meterline.audit.values import Amount


def _when(moment: datetime | None) -> str:
    """An instant as UTC text, seconds dropped when zero ("2026-11-01T00:00Z")."""
    shown = iso(moment)
    return shown.replace(":00Z", "Z") if shown else "-"


def _n(value: Decimal | None) -> str:
    """A number as the reports spell it (canonical text)."""
    return text(value) if value is not None else "None"


# --- explain ---------------------------------------------------------------------------


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


# --- reconcile -------------------------------------------------------------------------


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


# --- rerate ----------------------------------------------------------------------------


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
