"""`meterline revrec --period YYYY-MM` and `meterline revrec waterfall`, and `meterline
journal --period YYYY-MM`: revenue recognition and the accounting journal of a month
(docs/revrec.md). They call meterline.jobs.revrec, revrec_report and journal; errors and
exit codes follow the README's table: 1 when the balances or the journal do not tie,
2 a bad option, 3 an unknown customer.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from meterline.cli.exits import Refused
from meterline.cli.options import Month, console
from meterline.cli.outfiles import OutputFiles
from meterline.output import Column, format_money, json_text, print_table

if TYPE_CHECKING:
    from rich.console import Console

# Above this many customers the month's text shows the currencies only (--json has all).
_CUSTOMERS_SHOWN = 30


def _money(amount: str, currency: str) -> str:
    return format_money(Decimal(amount), currency)


def _balances_row(label: str, doc: dict[str, Any]) -> list[str]:
    cur = doc["currency"]
    return [
        label,
        *(_money(doc[k], cur) for k in ("billed", "recognized", "deferred", "unbilled")),
        "yes" if doc["balanced"] else "NO",
    ]


_BALANCE_COLUMNS = [
    Column("", "text"),
    Column("billed", "money"),
    Column("recognized", "money"),
    Column("deferred", "money"),
    Column("unbilled", "money"),
    Column("balances", "text"),
]


def _render_month(out: Console, doc: dict[str, Any]) -> None:
    scope = doc["period"] + (f" customer {doc['customer']}" if doc["customer"] else "")
    out.print(f"revenue recognition {scope} ({doc['first_day']}..{doc['last_day']}, local days)")
    if not doc["currencies"]:
        out.print("nothing billed or recognized")
    for cur in doc["currencies"]:
        c = cur["currency"]
        print_table(
            out,
            _BALANCE_COLUMNS,
            [
                _balances_row(f"opening {cur['opening']['day']}", cur["opening"]),
                _balances_row(f"closing {cur['closing']['day']}", cur["closing"]),
            ],
            title=f"{c}: billed = recognized + deferred - unbilled",
        )
        rows = [[k, _money(v, c)] for k, v in cur["recognized"].items() if _nonzero(v)]
        rows += [
            [f"{k} (net of its discounts and credits)", _money(v, c)]
            for k, v in cur["recognized_by_product"].items()
        ]
        print_table(out, [Column("recognized in the month", "text"), Column(c, "money")], rows)
        out.print(
            f"billed in the month: {cur['invoices_billed']} invoice(s)"
            f" {_money(cur['invoices_billed_amount'], c)}, paid commitments"
            f" {_money(cur['commitments_billed_amount'], c)}"
        )
    customers = doc["customers"]
    if customers and (doc["customer"] or len(customers) <= _CUSTOMERS_SHOWN):
        print_table(
            out,
            [Column("customer", "text"), *_BALANCE_COLUMNS[1:]],
            [_balances_row(b["customer"], b) for b in customers],
            title=f"closing balances {doc['last_day']}",
        )
    elif customers:
        out.print(f"{len(customers)} customer(s): --json or --customer C shows each")
    for b in doc["failures"][:20]:
        out.print(
            f"NOT BALANCED: {b['customer']} {b['currency']} {b['day']}: billed {b['billed']},"
            f" recognized {b['recognized']}, deferred {b['deferred']}, unbilled {b['unbilled']}"
        )
    for problem in doc["problems"]:
        out.print(f"problem: {problem}")


def _nonzero(amount: str) -> bool:
    return bool(Decimal(amount))


@click.group("revrec", invoke_without_command=True)
@click.option("--period", type=Month(), help="YYYY-MM: the month (local days of each customer).")
@click.option("--customer", help="One customer (external id): with its every day and row.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def revrec(ctx: click.Context, period: str | None, customer: str | None, as_json: bool) -> None:
    """Revenue recognition of a month: recognized, billed, deferred, unbilled (docs/revrec.md).

    Exit code 1 when billed = recognized + deferred - unbilled does not hold on some day,
    or the schedule found a problem."""
    if ctx.invoked_subcommand is not None:
        if period or customer or as_json:
            raise click.UsageError(
                f"--period, --customer and --json are options of `revrec` itself, not of"
                f" `revrec {ctx.invoked_subcommand}`: give them after the subcommand's name"
            )
        return
    if period is None:
        raise click.UsageError("give --period YYYY-MM (or the subcommand: revrec waterfall)")
    from meterline.jobs.revrec import revrec_period
    from meterline.jobs.revrec_report import revrec_doc

    doc = revrec_doc(revrec_period(period, customer=customer), detail=customer is not None)
    if as_json:
        click.echo(json_text(doc, indent=2))
    else:
        _render_month(console(), doc)
    if not doc["ok"]:
        sys.exit(1)


@revrec.command("waterfall")
@click.option("--from", "first", type=Month(), required=True, help="YYYY-MM: the first month.")
@click.option("--to", "last", type=Month(), required=True, help="YYYY-MM: the last month.")
@click.option("--customer", help="One customer (external id).")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the waterfall as CSV to this file.",
)
@click.option(
    "--png",
    "png_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the waterfall chart (PNG) to this file.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def waterfall(
    first: str,
    last: str,
    customer: str | None,
    csv_path: Path | None,
    png_path: Path | None,
    as_json: bool,
) -> None:
    """Recognized revenue by month of recognition against month of billing."""
    from meterline.jobs.revrec import MAX_WATERFALL_MONTHS, revrec_waterfall, waterfall_span
    from meterline.jobs.revrec_report import (
        ChartUnavailable,
        waterfall_csv,
        waterfall_doc,
        waterfall_png,
    )

    if last < first:
        raise click.BadParameter(f"{last} is before --from {first}", param_hint="--to")
    span = waterfall_span(first, last)
    if span > MAX_WATERFALL_MONTHS:
        raise click.BadParameter(
            f"--from {first} --to {last} is {span:,} months; a waterfall shows at most"
            f" {MAX_WATERFALL_MONTHS} (ten years): give a shorter range",
            param_hint="--to",
        )
    with OutputFiles({"--csv": csv_path, "--png": png_path}) as files:
        files.check()
        found = revrec_waterfall(first, last, customer=customer)
        if csv_path is not None:
            files.write_text("--csv", waterfall_csv(found))
        if png_path is not None:
            try:
                with files.writing("--png"):
                    waterfall_png(found, files.stage("--png"))
            except ChartUnavailable as exc:
                raise Refused(str(exc)) from None
        files.commit()
    doc = waterfall_doc(found)
    if as_json:
        click.echo(json_text(doc, indent=2))
        return
    out = console()
    for cur in doc["currencies"]:
        c = cur["currency"]
        print_table(
            out,
            [Column("billed", "text"), *(Column(m, "money") for m in doc["months"])],
            [
                [row["billed"], *(_money(row["recognized"][m], c) for m in doc["months"])]
                for row in cur["rows"]
            ]
            + [["total", *(_money(cur["totals"][m], c) for m in doc["months"])]],
            title=f"{c}: recognized by month (columns), by month billed (rows)",
        )
    if not doc["currencies"]:
        out.print(f"nothing recognized in {first}..{last}")
    for what, path in (("CSV", csv_path), ("chart", png_path)):
        if path is not None:
            out.print(f"{what} written to {path}")


@click.command("journal")
@click.option("--period", type=Month(), required=True, help="YYYY-MM: the month.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="NetSuite's journal entry CSV import layout, or JSON.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)
def journal(period: str, fmt: str, out_path: Path | None) -> None:
    """The month's balanced journal entries per currency, for NetSuite (docs/revrec.md).

    Exit code 1 when an entry does not balance or a total does not tie to the ledger
    or to the revrec balances (the ties are in --format json, and on stderr)."""
    from meterline.jobs import journal as jobs

    with OutputFiles({"--out": out_path}) as files:
        files.check()
        found = jobs.journal(period)
        text = (
            jobs.journal_csv(found)
            if fmt == "csv"
            else json_text(jobs.journal_doc(found), indent=2) + "\n"
        )
        if out_path is not None:
            files.write_text("--out", text)
            files.commit()
        else:
            click.echo(text, nl=False)
    if not found.ok:
        for tie in found.ties:
            if not tie.ok:
                click.echo(
                    f"meterline: journal {period} {tie.currency}: {tie.name}: journal"
                    f" {tie.journal}, {tie.source} {tie.expected} (minor units)",
                    err=True,
                )
        sys.exit(1)
    if out_path is not None:
        entries = len(found.entries)
        click.echo(f"{entries} journal entr{'y' if entries == 1 else 'ies'} written to {out_path}")
