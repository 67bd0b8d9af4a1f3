"""`meterline audit explain|reconcile|rerate` and `meterline statement`: why a customer was
charged what they were, whether the books balance, and what a re-rating would change.

Registered on the main group by `register(main)` (as meterline/cli/ledger.py does). The
commands read `settings()`; errors a user can fix (a missing line, a bad month) end with
one line and exit code 2, through the main group. `reconcile` exits 1 when anything
does not reconcile, so it can run as a DAG task or a cron check.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from meterline.cli.ingest import Timestamp


def register(main: click.Group) -> None:
    """Add `audit` and `statement` to the main `meterline` command group."""
    main.add_command(audit)
    main.add_command(statement)


def _console() -> Console:
    """The terminal's width, or 80 columns (COLUMNS if set) for a file, pipe or log."""
    from meterline.output import console

    return console()


def _echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def _month(value: str | None) -> str | None:
    if value is None:
        return None
    from billing.views import month_bounds

    try:
        month_bounds(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not YYYY-MM", param_hint="--period") from None
    return value


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
    from meterline.audit.gather import explain_line

    doc = explain_line(line_id, samples=samples)
    if as_json:
        _echo_json(doc)
        return
    for line in render_explain(doc):
        click.echo(line)


def _when(value: str | None) -> str:
    return value.replace(":00Z", "Z") if value else "-"


def render_explain(doc: dict[str, Any]) -> list[str]:
    """The explanation as text lines, top (invoice) to bottom (raw events)."""
    line, inv = doc["line"], doc["invoice"]
    cur = line["currency"]
    period = inv["period"]
    out = [
        f"line {line['id']}: {line['kind']} {line['price_id']}"
        + (f" [{line['group']}]" if line["group"] else "")
        + f" on invoice {inv['id']} ({inv['status']}"
        + (f" {_when(inv['finalized_at'])}" if inv["finalized_at"] else "")
        + ")",
        f"  customer  {inv['customer']} {inv['customer_name']!r}, subscription"
        f" {inv['subscription']}, plan {inv['plan']}, {inv['currency']}",
        f"  period    {period['start_local']} -> {period['end_local']} ({period['timezone']})",
        f"            UTC {_when(period['start_utc'])} -> {_when(period['end_utc'])};"
        f" billing cycle {inv['billing_cycle']['hours']} h",
        f"  posted    {cur} {line['amount']} (precise {line['amount_precise']}), quantity"
        f" {line['quantity']}, rating run {line['rating_run_id'] or '-'}"
        f" as of {_when(line['posted_at'])}",
    ]
    if "corrects" in doc:
        corrects = doc["corrects"]
        source = corrects["invoice"]
        out.append(
            f"  corrects  line {corrects['line_id'] or '-'} (key {corrects['key']}) of invoice"
            f" {source['id']}, period {_when(source['period']['start_utc'])}"
        )
    price = doc["price"]
    out.append(
        f"price {price['price_id']} @ {price['version']}"
        + (f", meter {price['meter']}" if price["meter"] else "")
        + (f", filter {price['filter']}" if price["filter"] else "")
    )
    for w in price["windows"]:
        body = w["body"]
        detail = ", ".join(f"{k} {v}" for k, v in body.items() if k not in ("currency",))
        out.append(f"  {_when(w['from'])} -> {_when(w['to'])}  {w['version']}: {detail}")
    chain = doc.get("quantity")
    if chain:
        out.append(
            f"quantity  {chain['aggregation']} of {chain['meter']} ({chain['unit']}):"
            f" {chain['how']}"
        )
        for w in chain["windows"]:
            groups = ", ".join(
                f"{g['group']} {g['quantity']} ({g['events']} events)" for g in w["groups"]
            )
            out.append(
                f"  window {_when(w['from'])} -> {_when(w['to'])}"
                + (f" [{w['version']}]" if w["version"] else "")
                + f": raw {w['raw_quantity']}, rollup {w['rollup_quantity']}"
                + (f"  <- {groups}" if groups else "")
            )
        for level in chain.get("levels", []):
            out.append(
                f"  level {level['group']}: {level['value']} from {_when(level['from'])} to"
                f" {_when(level['to'])} ({level['hours']} h) = {level['share_of_cycle']} of the"
                f" cycle  [{', '.join(level['events'][:3])}"
                + (" ..." if len(level["events"]) > 3 else "")
                + "]"
            )
        if "from_events" in chain:
            out.append(f"  from the events by the meter's rule: {chain['from_events']}")
        raw, rollup = chain["raw_events"], chain["rollup"]
        out.append(
            f"  raw events (usage_events FINAL): {raw['events']:,} events, sum"
            f" {raw['value_sum']}, last ingested {_when(raw['last_ingested_at'])}"
        )
        out.append(
            f"  rollup: {rollup['rows']:,} hourly rows over {len(rollup['days'])} day(s),"
            f" {rollup['events']:,} events, sum {rollup['value_sum']}; raw - rollup:"
            f" {chain['raw_vs_rollup']['events']} events, {chain['raw_vs_rollup']['value_sum']}"
        )
    rating = doc.get("rating")
    if rating and "entries" in rating:
        out.append(
            f"rating    {rating['model']}: quantity {rating['quantity']}, free"
            f" {rating['free_units']}, billable {rating['billable_quantity']}"
        )
        for e in rating["entries"]:
            what = f"tier {e['tier']}" if e.get("tier") else e["kind"]
            version = f" [{e['version']}]" if e.get("version") else ""
            out.append(
                f"  {what}{version}: {e.get('units')} x {e.get('unit_amount')}"
                + (f" + flat {e['flat_amount']}" if e.get("flat_amount", "0") != "0" else "")
                + f" = {e.get('amount')}"
            )
        if rating.get("minimum_adjustment") not in (None, "0"):
            out.append(f"  raised to the price's minimum by {rating['minimum_adjustment']}")
        out.append(f"  = {cur} {rating['amount']} (precise {rating['amount_precise']})")
    elif rating:
        out.append(f"rating    {rating}")
    for rel in doc["related_lines"]:
        out.append(
            f"related   line {rel['id']} {rel['kind']} {rel['price_id']}: {cur} {rel['amount']}"
            f"  ({rel['description']})"
        )
    rec = doc["recomputed"]
    out.append(
        f"recomputed from raw events: quantity {rec['quantity']}, {cur} {rec['amount']}"
        f" (precise {rec['amount_precise']}) at {rec['price_version'] or '-'}"
    )
    diff = doc["difference"]
    out.append(
        f"difference: quantity {diff['quantity']}, {cur} {diff['amount']}, precise"
        f" {diff['amount_precise']}  ->  {doc['status'].upper()}"
    )
    for adj in doc["adjustments"]:
        out.append(
            f"adjusted by line {adj['id']} on invoice {adj['invoice_id']}"
            f" ({adj['invoice_status']}): quantity {adj['quantity']}, {cur} {adj['amount']}"
        )
    if doc["adjustments"]:
        net = doc["net"]
        out.append(
            f"net billed {net['billed']['quantity']} / {cur} {net['billed']['amount']};"
            f" net difference {net['difference']['quantity']} / {cur} {net['difference']['amount']}"
        )
    late = doc["late_events"]
    if late["since"]:
        run = f"rating run {late['rating_run_id']}" if late["rating_run_id"] else "the rating"
        stale = late["stale_days"]
        out.append(
            f"late events (not seen by {run}: it saw events ingested up to"
            f" {_when(late['since'])}"
            + (f", and on {len(stale)} stale rollup day(s) less" if stale else "")
            + f"): {late['count']}"
            + (f", sum {late['value_sum']}" if late["count"] else "")
        )
        for e in late["events"]:
            out.append(
                f"  {e['event_id']} at {_when(e['timestamp'])} value {e['value']} {e['group']},"
                f" ingested {_when(e['ingested_at'])} from {e['source']}"
            )
    if doc["sample_events"]:
        out.append("sample events: " + ", ".join(e["event_id"] for e in doc["sample_events"]))
    for note in doc["notes"]:
        out.append(f"note: {note}")
    return out


# --- reconcile --------------------------------------------------------------------------


@audit.command("reconcile")
@click.option("--period", help="YYYY-MM: the invoices whose period starts in that month.")
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
    from meterline.audit.gather import months_to_reconcile, reconcile_period

    if period is not None:
        months = [_month(period) or period]
    elif as_of is not None:
        months = months_to_reconcile(as_of)
    else:
        raise click.UsageError("give --period YYYY-MM, --as-of TIME, or both")
    reports = [reconcile_period(m, customer=customer, as_of=as_of) for m in months]
    ok = all(r.ok for r in reports)
    if as_json:
        docs = [r.to_json() for r in reports]
        _echo_json(docs[0] if period else {"ok": ok, "months": docs})
    else:
        console = _console()
        if not reports:
            console.print("nothing to reconcile: no invoice period ended in the lookback")
        for report in reports:
            render_reconcile(console, report.to_json())
    if not ok:
        sys.exit(1)


def render_reconcile(console: Console, doc: dict[str, Any]) -> None:
    """One month's reconciliation as text: the verdict, the intake, the chain per meter
    and currency, the totals per kind, late usage, and the findings. Tables fit the
    console (meterline.output.print_table: money and counts are never cut)."""
    from meterline.output import Column, format_amount, format_quantity, print_table

    def amount(text: str, currency: str) -> str:
        return format_amount(Decimal(text), currency)

    invoices = doc["invoices"]
    verdict = "[green]RECONCILED[/green]" if doc["ok"] else "[red]NOT RECONCILED[/red]"
    scope = doc["period"] + (f" customer {doc['customer']}" if doc["customer"] else "")
    console.print(
        f"[bold]reconcile {scope}[/bold]: {verdict}: {invoices['checked']} finalized invoices"
        f" checked, {invoices['open']} open, {invoices['void']} void"
    )
    intake = doc["intake"]
    balance = "balanced" if intake["balanced"] else "[red]NOT balanced[/red]"
    console.print(
        f"intake ({intake['scope']} {intake['window'][0]} .. {intake['window'][1]}):"
        f" {intake['ingests']} ingests, received {intake['received']:,} = accepted"
        f" {intake['accepted']:,} + duplicates {intake['duplicates']:,} + rejected"
        f" {intake['rejected']:,}: {balance}"
    )
    if intake["by_meter_currency"]:
        print_table(
            console,
            [
                "meter",
                "currency",
                Column("accepted", "number"),
                Column("rejected", "number"),
                "rejected by reason",
            ],
            [
                [
                    row["meter"],
                    row["currency"],
                    f"{row['accepted']:,}",
                    f"{row['rejected']:,}",
                    ", ".join(f"{k} {v:,}" for k, v in row["rejected_by_reason"].items()),
                ]
                for row in intake["by_meter_currency"]
            ],
        )
    if doc["meters"]:
        print_table(
            console,
            [
                "meter",
                "currency",
                Column("invoices", "number"),
                Column("raw events", "number"),
                Column("rollup events", "number"),
                Column("raw qty", "number"),
                Column("rollup qty", "number"),
                Column("rated qty", "number"),
                Column("posted qty", "number"),
                Column("rated", "money"),
                Column("posted", "money"),
                Column("difference", "money"),
            ],
            [
                [
                    r["meter"],
                    r["currency"],
                    f"{r['invoices']:,}",
                    f"{r['raw_events']:,}",
                    f"{r['rollup_events']:,}",
                    format_quantity(r["raw_quantity"]),
                    format_quantity(r["rollup_quantity"]),
                    format_quantity(r["rated_quantity"]),
                    format_quantity(r["posted_quantity"]),
                    amount(r["rated_amount"], r["currency"]),
                    amount(r["posted_amount"], r["currency"]),
                    amount(r["difference"], r["currency"]),
                ]
                for r in doc["meters"]
            ],
            title="raw events -> rollup -> rated -> posted (lines + adjustments)",
        )
    if doc["charges"]:
        print_table(
            console,
            [
                "currency",
                "kind",
                Column("re-rated", "money"),
                Column("posted", "money"),
                Column("difference", "money"),
            ],
            [
                [
                    r["currency"],
                    r["kind"],
                    amount(r["rerated"], r["currency"]),
                    amount(r["posted"], r["currency"]),
                    amount(r["difference"], r["currency"]),
                ]
                for r in doc["charges"]
            ],
            title="all lines",
        )
    drift = doc["drift"]
    if drift:
        adjusted = sum(1 for d in drift if d["adjusted"])
        events = sum(d["late_events"] for d in drift)
        console.print(
            f"late usage: {len(drift)} finalized invoice(s) have {events:,} event(s) the run"
            f" that rated them did not see; {adjusted} fully adjusted"
        )
    for d in drift:
        if not d["adjusted"]:
            console.print(
                f"  [red]not adjusted[/red]: invoice {d['invoice_id']} ({d['customer']}):"
                f" {d['late_events']} late event(s); adjustments so far {d['adjustments']}"
            )
    if not doc["unattributed"]:
        console.print("unattributed usage: none")
    render_findings(console, doc)


def render_findings(console: Console, doc: dict[str, Any]) -> None:
    """The findings as one table: id (for `meterline audit acknowledge`), severity,
    whether it fails the run (or who acknowledged it, and why), what and where."""
    from meterline.output import Column, print_table

    findings = doc["findings"]
    if not findings:
        console.print("findings: none")
        return
    counts = doc["counts"]
    console.print(
        f"findings: {counts['error']} error(s), {counts['warning']} warning(s),"
        f" {counts['acknowledged']} acknowledged; the run fails on unacknowledged"
        f" {'errors' if doc['fail_on'] == 'error' else 'errors and warnings'}"
        " (METERLINE_RECONCILE_FAIL_ON)"
    )
    rows = []
    for f in findings:
        ack = f["acknowledged"]
        if ack:
            status = f"acknowledged by {ack['by']} {ack['at'][:10]}: {ack['reason']}"
        else:
            status = "FAILS" if f["fails"] else "passes"
        where = " ".join(
            p
            for p in (f["customer"] or "", f"invoice {f['invoice_id']}" if f["invoice_id"] else "")
            if p
        )
        rows.append([f["id"], f["severity"], status, f["check"], where or "-", f["detail"]])
    # The id is what `meterline audit acknowledge` takes: never cut or folded.
    print_table(
        console,
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

    from meterline.audit.gather import FINDING_ID
    from meterline.audit.gather import acknowledge as record

    if not FINDING_ID.match(finding_id.strip().lower()):
        raise click.BadParameter(
            f"{finding_id!r} is not a finding id (f- and 12 hex digits, as"
            " `meterline audit reconcile` lists them)",
            param_hint="FINDING_ID",
        )
    if not reason.strip():
        raise click.BadParameter("must say why", param_hint="--reason")
    who = by or getpass.getuser()
    ack = record(finding_id, reason=reason, by=who, at=datetime.now(UTC))
    click.echo(
        f"acknowledged {ack.finding_id} by {ack.by} at {ack.at:%Y-%m-%d %H:%M} UTC: {ack.reason}"
    )


# --- rerate -----------------------------------------------------------------------------


@audit.command("rerate")
@click.option("--period", required=True, help="YYYY-MM: the invoices whose period starts then.")
@click.option("--customer", help="One customer (external id).")
@click.option("--apply", "apply_", is_flag=True, help="Post the differences as adjustment lines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def rerate_command(period: str, customer: str | None, apply_: bool, as_json: bool) -> None:
    """Re-rate a month's finalized invoices against the current events and catalog.

    Without --apply: the differences, line by line; nothing is written. With --apply:
    posted as adjustment lines on the next open invoices (a finalized invoice is never
    edited)."""
    from meterline.audit.gather import rerate

    report = rerate(_month(period) or period, customer=customer, apply=apply_)
    doc = report.to_json()
    if as_json:
        _echo_json(doc)
        return
    for line in render_rerate(doc):
        click.echo(line)


def render_rerate(doc: dict[str, Any]) -> list[str]:
    scope = doc["period"] + (f" customer {doc['customer']}" if doc["customer"] else "")
    out = [
        f"rerate {scope} against events ingested up to {_when(doc['run_at'])}:"
        f" {doc['periods_checked']} finalized period(s) checked, {doc['periods_differing']}"
        f" differ ({doc['lines_differing']} line(s))"
        + ("" if doc["applied"] else "; dry run, nothing posted (--apply posts adjustments)")
    ]
    for p in doc["periods"]:
        cur = p["currency"]
        out.append(
            f"invoice {p['invoice_id']} {p['customer']} {p['subscription']}"
            f" {_when(p['period'][0])} -> {_when(p['period'][1])}: difference {cur}"
            f" {p['difference']}"
        )
        for d in p["lines"]:
            b, r, x = d["billed"], d["rerated"], d["difference"]
            out.append(
                f"  {'line ' + str(d['line_id']) if d['line_id'] else 'new'} {d['price_id']}"
                f" {d['kind']}{' ' + d['group'] if d['group'] else ''}: billed"
                f" {b['quantity']} / {b['amount']} -> re-rated {r['quantity']} / {r['amount']}"
                f" (difference {x['quantity']} / {cur} {x['amount']})"
            )
    for s in doc["skipped"]:
        out.append(f"skipped: {s}")
    if doc["applied"] and doc["posted"]:
        out.append(f"posted with rating run {doc['rating_run_id']}:")
        for p in doc["posted"]:
            out.append(
                f"  invoice {p['carrier_invoice_id']} ({p['customer']}) carries the correction"
                f" of invoice {p['corrected_invoice_id']}: {p['created']} new,"
                f" {p['replaced']} replaced adjustment line(s) {p['line_ids']}"
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
    from meterline.audit.statement import StatementNotFound, parse_period, render, statement_data

    try:
        parse_period(period)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--period") from None
    try:
        page = render(statement_data(customer, period, view=view))  # type: ignore[arg-type]
    except StatementNotFound as exc:

        class NotFound(click.ClickException):
            exit_code = 3  # not found: one line, listing the periods that do exist

        raise NotFound(str(exc)) from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or exc
        raise click.BadParameter(f"cannot write {out}: {reason}", param_hint="--out") from None
    click.echo(f"wrote {out}")
