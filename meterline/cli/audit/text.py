"""The audit's reports as text for a terminal or a log: `render_explain` (top, the
invoice, to bottom, the raw events), `render_reconcile` (tables fitted to the console:
money and counts are never cut, the findings' ids never folded), `render_rerate`. Each
prints the report's typed model (meterline.audit.*) to a console: quantities without
trailing zeros (meterline.output.format_quantity), money through the one money
formatter, tables through meterline.output.print_table, and no line wider than the
console or 100 columns (a word longer than that, such as a file path, is kept whole)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from meterline.audit.values import iso
from meterline.output import (
    format_amount,
    format_count,
    format_minor,
    format_money,
    format_quantity,
    plain_numbers,
)

if TYPE_CHECKING:
    from rich.console import Console

    from meterline.audit.explain import Explanation
    from meterline.audit.explain.report import QuantityChain, RatingView
    from meterline.audit.reconcile import ReconcileReport
    from meterline.audit.rerate import RerateReport
    from meterline.audit.values import Amount, Billed


def _when(moment: datetime | None) -> str:
    """An instant as UTC text, seconds dropped when zero ("2026-11-01T00:00Z")."""
    shown = iso(moment)
    return shown.replace(":00Z", "Z") if shown else "-"


# --- explain ---------------------------------------------------------------------------


def render_explain(out: Console, doc: Explanation) -> None:
    """The explanation as text, top (invoice) to bottom (raw events): quantities without
    trailing zeros, money through meterline.output.format_money, lines folded at the
    console's width (at most 100 columns), the late events as a table."""
    lines = _explain_head(doc)
    if doc.quantity is not None:
        lines += _explain_quantity(doc.quantity)
    lines += _explain_rating(doc.rating, doc.line.currency)
    lines += _explain_result(doc)
    for line in lines:
        for part in folded(line, min(out.width, MAX_WIDTH)):
            out.print(part, markup=False, highlight=False, soft_wrap=True)
    _explain_events(out, doc)


# Text reports are folded at the console's width, and never wider than this.
MAX_WIDTH = 100


def folded(line: str, width: int) -> list[str]:
    """A line broken between words to fit ``width``, each continuation indented two
    more than the line; a word longer than the width (an id, a path) is kept whole."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
    return textwrap.wrap(
        line,
        width,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [line]


def _q(value: Decimal | None) -> str:
    """A quantity, exact, without trailing zeros, digits grouped ("-" when absent)."""
    return format_quantity(value) if value is not None else "-"


def _m(value: Decimal | str | None, currency: str) -> str:
    """An amount in major units through the one money formatter (never cut)."""
    return format_money(Decimal(value), currency) if value is not None else "-"


def _filter(values: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()))


def price_body_text(body: Mapping[str, object], currency: str) -> str:
    """A stored price body in words: tiers as "up to N at AMOUNT", amounts as money,
    numbers without trailing zeros; the currency is said once, by the amounts."""
    parts = []
    for key, value in body.items():
        if key == "currency":
            continue
        if key == "tiers" and isinstance(value, list):
            tiers = []
            for tier in value:
                if not isinstance(tier, Mapping):
                    tiers.append(str(tier))
                    continue
                up_to = tier.get("up_to")
                bound = f"up to {_number(up_to)}" if up_to is not None else "above"
                what = f"{bound} at {_amount(tier.get('unit_amount'), currency)}"
                flat = tier.get("flat_amount")
                if flat is not None and _decimal(flat) != 0:
                    what += f" + flat {_amount(flat, currency)}"
                tiers.append(what)
            parts.append("tiers: " + "; ".join(tiers))
        elif isinstance(value, Mapping):
            parts.append(f"{key} {_filter({str(k): str(v) for k, v in value.items()})}")
        elif isinstance(value, list):
            parts.append(f"{key} " + ", ".join(_number(v) for v in value))
        elif key.endswith("_amount") or key in ("amount", "minimum", "maximum"):
            parts.append(f"{key} {_amount(value, currency)}")
        else:
            parts.append(f"{key} {_number(value)}")
    return ", ".join(parts)


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


def _number(value: object) -> str:
    """A stored value: a number without trailing zeros, anything else as written."""
    number = _decimal(value)
    return format_quantity(number) if number is not None else str(value)


def _amount(value: object, currency: str) -> str:
    number = _decimal(value)
    if number is None:
        return str(value)
    try:
        return format_money(number, currency)
    except ValueError:  # an unknown currency code: the number alone
        return format_quantity(number)


def _explain_head(doc: Explanation) -> list[str]:
    line, inv = doc.line, doc.invoice
    period = inv.period
    cur = line.currency
    out = [
        f"line {line.id}: {line.kind} {line.price_id}"
        + (f" [{line.group}]" if line.group else "")
        + f" on invoice {inv.id} ({inv.status}"
        + (f" {_when(inv.finalized_at)}" if inv.finalized_at else "")
        + ")",
        f'  customer  {inv.customer} "{inv.customer_name}", subscription'
        f" {inv.subscription}, plan {inv.plan}, {inv.currency}",
        f"  period    {period.start_local.isoformat()} -> {period.end_local.isoformat()}"
        f" ({period.timezone})",
        f"            UTC {_when(period.start_utc)} -> {_when(period.end_utc)};"
        f" billing cycle {_q(inv.billing_cycle.hours)} h",
        f"  posted    {format_minor(line.amount_minor, cur)} (precise"
        f" {_q(line.amount_precise)}), quantity {_q(line.quantity)}",
        f"            by rating run {line.rating_run_id or '-'} as of {_when(line.posted_at)}",
    ]
    if doc.corrects is not None:
        corrects, source = doc.corrects, doc.corrects.invoice
        out.append(
            f"  corrects  line {corrects.line_id or '-'} of invoice {source.id}, period"
            f" from {_when(source.period.start_utc)} (key {corrects.key})"
        )
    price = doc.price
    out.append(
        f"price {price.price_id} @ {price.version}"
        + (f", meter {price.meter}" if price.meter else "")
        + (f", filter {_filter(price.filter)}" if price.filter else "")
    )
    for w in price.windows:
        out.append(f"  {_when(w.start)} -> {_when(w.end)}  {w.version}:")
        out.append(f"    {price_body_text(w.body, cur)}")
    return out


def _explain_quantity(chain: QuantityChain) -> list[str]:
    out = [f"quantity  {chain.aggregation} of {chain.meter} ({chain.unit}): {chain.how}"]
    for w in chain.windows:
        out.append(
            f"  window {_when(w.start)} -> {_when(w.end)}"
            + (f" [{w.version}]" if w.version else "")
            + f": raw {_q(w.raw_quantity)}, rollup {_q(w.rollup_quantity)}"
        )
        for g in w.groups:
            out.append(f"    {g.group}: {_q(g.quantity)} ({format_count(g.events)} events)")
    for level in chain.levels:
        shown = ", ".join(level.events[:3]) + (" ..." if len(level.events) > 3 else "")
        out.append(
            f"  level {level.group}: {_q(level.value)} from {_when(level.start)} to"
            f" {_when(level.end)} ({_q(level.hours)} h) = {_q(level.share_of_cycle)} of the"
            f" cycle [{shown}]"
        )
    if chain.from_events is not None:
        out.append(f"  from the events by the meter's rule: {_q(chain.from_events)}")
    raw, rollup, diff = chain.raw_events, chain.rollup, chain.raw_vs_rollup
    out.append(
        f"  raw events (usage_events FINAL): {format_count(raw.events)} events, sum"
        f" {_q(raw.value_sum)}, last ingested {_when(raw.last_ingested_at)}"
    )
    out.append(
        f"  rollup: {format_count(rollup.rows)} hourly rows over {len(rollup.days)} day(s),"
        f" {format_count(rollup.events)} events, sum {_q(rollup.value_sum)}"
    )
    out.append(f"  raw - rollup: {format_count(diff.events)} events, {_q(diff.value_sum)}")
    return out


def _explain_rating(rating: RatingView | dict[str, object] | None, currency: str) -> list[str]:
    if rating is None:
        return []
    if isinstance(rating, dict):
        return [f"rating    {price_body_text(rating, currency)}"]
    out = [
        f"rating    {rating.model}: quantity {_q(rating.quantity)}, free"
        f" {_q(rating.free_units)}, billable {_q(rating.billable_quantity)}"
    ]
    for e in rating.entries:
        what = f"tier {e.tier}" if e.tier else e.kind
        version = f" [{e.version}]" if e.version else ""
        out.append(
            f"  {what}{version}: {_q(e.units)} × {_m(e.unit_amount, currency)}"
            + (f" + flat {_m(e.flat_amount, currency)}" if e.flat_amount else "")
            + f" = {_m(e.amount, currency)}"
        )
    if rating.minimum_adjustment:
        out.append(f"  raised to the price's minimum by {_m(rating.minimum_adjustment, currency)}")
    out.append(
        f"  = {_m(rating.amount, currency)} (precise {_q(rating.amount_precise)},"
        f" rounded {rating.rounding.replace('_', '-')})"
    )
    return out


def _billed(b: Billed, currency: str) -> str:
    return f"quantity {_q(b.quantity)}, {format_minor(b.amount_minor, currency)}"


def _explain_result(doc: Explanation) -> list[str]:
    cur = doc.line.currency
    out = [
        f"related   line {rel.id} {rel.kind} {rel.price_id}:"
        f" {format_minor(rel.amount_minor, cur)} ({plain_numbers(rel.description)})"
        for rel in doc.related_lines
    ]
    rec, diff = doc.recomputed, doc.difference
    out.append(
        f"recomputed from raw events: {_billed(rec, cur)} (precise"
        f" {_q(rec.amount_precise)}) at {rec.price_version or '-'}"
    )
    out.append(
        f"difference: {_billed(diff, cur)} (precise {_q(diff.amount_precise)})"
        f"  ->  {doc.status.upper()}"
    )
    for adj in doc.adjustments:
        out.append(
            f"adjusted by line {adj.id} on invoice {adj.invoice_id}"
            f" ({adj.invoice_status}): quantity {_q(adj.quantity)},"
            f" {format_minor(adj.amount_minor, cur)}"
        )
    if doc.adjustments:
        net = doc.net
        out.append(
            f"net billed {_billed(net.billed, cur)}; net difference {_billed(net.difference, cur)}"
        )
    late = doc.late_events
    if late.since is not None:
        run = f"rating run {late.rating_run_id}" if late.rating_run_id else "the rating"
        stale = late.stale_days
        out.append(
            f"late events (not seen by {run}: it saw events ingested up to {_when(late.since)}"
            + (f", and on {len(stale)} stale rollup day(s) less" if stale else "")
            + f"): {format_count(late.count)}"
            + (f", sum {_q(late.value_sum)}" if late.count else "")
        )
    return out


def _explain_events(out: Console, doc: Explanation) -> None:
    """The late events (each: id, time, value and group, then when and from where it
    was ingested), the sample events and the notes."""
    width = min(out.width, MAX_WIDTH)
    lines = []
    late = doc.late_events
    if late.since is not None:
        for e in late.events:
            lines.append(
                f"  {e.event_id} at {_event_time(e.timestamp)}, value {_q(e.value)}"
                + (f", {e.group}" if e.group else "")
            )
            lines.append(f"    ingested {_when(e.ingested_at)} from {e.source}")
    if doc.sample_events:
        lines.append("sample events: " + ", ".join(e.event_id for e in doc.sample_events))
    lines += [f"note: {plain_numbers(note)}" for note in doc.notes]
    for line in lines:
        for part in folded(line, width):
            out.print(part, markup=False, highlight=False, soft_wrap=True)


def _event_time(moment: datetime) -> str:
    """An event's time in UTC to the millisecond it is stored with."""
    utc = moment.astimezone(UTC)
    ms = f".{utc.microsecond // 1000:03d}" if utc.microsecond else ""
    return f"{utc:%Y-%m-%dT%H:%M:%S}{ms}Z"


def _narrow(out: Console, width: int) -> Console:
    """The console itself, or one like it at most ``width`` columns wide."""
    if out.width <= width:
        return out
    from rich.console import Console as RichConsole

    return RichConsole(
        file=out.file, width=width, highlight=False, soft_wrap=True, color_system=None
    )


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
        f"intake ({intake.scope} {_when(intake.window[0])} .. {_when(intake.window[1])}):",
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
        f"  against the events ingested up to {_when(report.run_at)}"
        + ("" if report.applied else "; dry run, nothing posted (--apply posts adjustments)"),
    ]
    for p in report.periods:
        lines.append(
            f"invoice {p.invoice_id} ({p.customer}) {_when(p.period[0])} ->"
            f" {_when(p.period[1])}: {format_minor(p.difference.minor, p.currency)}"
        )
    for line in lines:
        for part in folded(line, width):
            out.print(part, markup=False, highlight=False, soft_wrap=True)
    if report.periods:
        print_table(
            _narrow(out, width),
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
                    f"{_q(d.billed.quantity)} → {_q(d.rerated.quantity)}",
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
