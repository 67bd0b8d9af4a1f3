"""`meterline customers|catalog|invoices|ledger ...`: the billing ledger by hand.

They call meterline.jobs.ledger (the ledger of ``settings().ledger_url``); `catalog load`
(meterline.cli.catalog) takes the catalog file into the ledger. The ledger must be at
this code's schema revision, SQLite or PostgreSQL: `meterline init` (or `meterline
ledger migrate`) creates or upgrades it; the other commands only check it.
"""

from __future__ import annotations

import json
import re
import textwrap
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from meterline.cli.catalog import catalog
from meterline.cli.options import AS_OF_HELP, Id, Month, Timestamp, console
from meterline.cli.salesforce import sync_salesforce
from meterline.jobs import ledger as jobs
from meterline.output import (
    Column,
    format_minor,
    format_money,
    format_quantity,
    plain_numbers,
    print_table,
)

_DURATION = re.compile(r"^\s*(\d{1,12})\s*([dhms]?)\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "": "hours"}
# The longest grace period: METERLINE_FINALIZE_GRACE_HOURS's upper bound (a leap year).
MAX_GRACE = timedelta(hours=8_784)


def _duration(value: str) -> timedelta:
    """A grace period such as 72h or 3d (hours when no unit), at most MAX_GRACE."""
    match = _DURATION.match(value)
    if not match:
        raise click.BadParameter(
            f"{value!r}: use a number with d, h, m or s (e.g. 72h, 3d)", param_hint="'--grace'"
        )
    grace = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if grace > MAX_GRACE:
        raise click.BadParameter(
            f"{value!r} is longer than {MAX_GRACE.days} days (8784h), the longest grace period",
            param_hint="'--grace'",
        )
    return grace


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def register(main: click.Group) -> None:
    """Add the ledger's groups to the main `meterline` command group."""
    for group in (customers, catalog, invoices, ledger):
        main.add_command(group)


# --- customers ----------------------------------------------------------------------


@click.group()
def customers() -> None:
    """Customers, subscriptions and their discounts."""


@customers.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(jobs.CUSTOMER_FORMATS),
    help="File format (default: from the extension: .jsonl, .yaml/.yml, .csv).",
)
def customers_load(file: Path, fmt: str | None) -> None:
    """Load (insert or update in place) the customers file FILE. All or nothing."""
    result = jobs.load_customers(file, fmt)  # type: ignore[arg-type]
    click.echo(f"{file}: {jobs.customers_load_text(result)}")


customers.add_command(sync_salesforce)


# --- catalog: meterline.cli.catalog (the one catalog, loaded into the ledger) ----------


# --- invoices -----------------------------------------------------------------------


@click.group()
def invoices() -> None:
    """Invoices: list, show, finalize, void."""


@invoices.command("list")
@click.option("--period", type=Month(), help="Month YYYY-MM (by the period's local start date).")
@click.option("--customer", help="Customer external id.")
@click.option("--status", type=click.Choice(jobs.INVOICE_STATUSES), help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def invoices_list(
    period: str | None, customer: str | None, status: str | None, as_json: bool
) -> None:
    """List invoices with their totals, and the totals per currency."""
    rows, totals = jobs.list_invoices(period=period, customer=customer, status=status)
    if as_json:
        _echo_json({"invoices": rows, "totals": totals})
        return
    out = console()
    print_table(
        out,
        [
            Column("id", "number"),
            "customer",
            "subscription",
            Column("period", "number"),
            "status",
            Column("lines", "number"),
            Column("total", "money"),
        ],
        [
            (
                r["id"],
                r["customer"],
                r["subscription"],
                r["period_start_local"],
                r["status"],
                f"{r['line_count']:,}",
                format_minor(r["total_minor"], r["currency"]),
            )
            for r in rows
        ],
        title=f"{len(rows):,} invoice(s)",
    )
    for currency, total in totals.items():
        out.print(
            f"total {format_minor(total['total_minor'], currency)} over"
            f" {total['invoices']:,} non-void invoice(s)"
        )


@invoices.command("show")
@click.argument("invoice_id", type=Id("an invoice id"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def invoices_show(invoice_id: int, as_json: bool) -> None:
    """Show invoice INVOICE_ID: its lines, tier breakdowns and totals."""
    detail = jobs.invoice_detail(invoice_id)
    if as_json:
        _echo_json(detail)
        return
    for line in invoice_header(detail):
        click.echo(line)
    out = console()
    print_table(out, INVOICE_COLUMNS, invoice_rows(detail))
    for line in invoice_totals(detail):
        out.print(line)
    notes = invoice_notes(detail)
    if notes:
        out.print("how each line was computed:")
        for note in notes:
            for part in textwrap.wrap(
                note,
                min(out.width, 100),
                subsequent_indent="      ",
                break_long_words=False,
                break_on_hyphens=False,
            ):
                out.print(part, markup=False, highlight=False, soft_wrap=True)


def invoice_totals(detail: dict[str, Any]) -> list[str]:
    """The invoice's totals, each a line: subtotal, discounts, credits (what the credit
    grants paid; --json's `discounts` includes them, as it always has), adjustments and
    total, which they add up to; for an invoice taxed through the tax sink (docs/tax.md)
    then its tax and the total with it once recorded, or that it is pending or voided."""
    cur = detail["currency"]
    credits = Decimal(detail.get("credits") or 0)
    values = {
        "subtotal": Decimal(detail["subtotal"]),
        "discounts": Decimal(detail["discounts"]) - credits,
        "credits": credits,
        "adjustments": Decimal(detail["adjustments"]),
        "total": Decimal(detail["total"]),
    }
    tax = detail.get("tax")
    notes: list[tuple[str, str]] = []
    if tax is not None and tax.get("tax") is not None and tax["status"] == "recorded":
        values["tax"] = Decimal(tax["tax"])
        values["total with tax"] = Decimal(tax["total_with_tax"])
    elif tax is not None and tax["status"] == "pending":
        notes.append(
            ("tax", "pending: not recorded yet (`meterline outbox list --sink avalara`: why)")
        )
    elif tax is not None and tax["status"] == "voided":
        was = f" (was {format_money(Decimal(tax['tax']), cur)})" if tax.get("tax") else ""
        notes.append(("tax", f"voided with the invoice{was}"))
    shown = {label: format_money(value, cur) for label, value in values.items()}
    width = max(len(text) for text in shown.values())
    labels = max(12, *(len(label) for label in shown))
    return [f"{label:>{labels}} {text:>{width}}" for label, text in shown.items()] + [
        f"{label:>{labels}} {text}" for label, text in notes
    ]


INVOICE_COLUMNS: list[Column | str] = [
    Column("#", "number"),
    "kind",
    "price",
    Column("version", "number"),
    Column("quantity", "number"),
    Column("unit price", "money"),
    Column("amount", "money"),
]


def invoice_header(detail: dict[str, Any]) -> list[str]:
    """The invoice's identity, status and period, as lines of text."""
    out = [
        f"invoice {detail['id']}  {detail['status']}  customer {detail['customer']}"
        f"  subscription {detail['subscription']}",
        f"period {detail['period_start_local']} (local), {detail['period_start'][:16]}Z .."
        f" {detail['period_end'][:16]}Z UTC",
    ]
    if detail["reissue_of"]:
        out.append(f"re-issue of invoice {detail['reissue_of']}")
    if detail["reissued_by"]:
        out.append(f"re-issued as invoice(s) {', '.join(map(str, detail['reissued_by']))}")
    return out


def invoice_rows(detail: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per line, then one per tier it reached: the price with its dimension
    group, the version's effective date (the whole version id is in --json and `audit
    explain`), quantities without trailing zeros (at most 4 decimals, "≈" when rounded),
    money through the one money formatter. A tiered line's unit price is left blank:
    it is an average, and its tier rows carry the unit prices charged."""
    cur = detail["currency"]
    rows: list[tuple[str, ...]] = []
    for line in detail["lines"]:
        price = line["price_id"]
        if line["group"]:
            price += f" [{line['group']}]"
        unit = line["unit_amount"]
        if line["kind"] == "credit":
            # What a grant paid of another line: money, not a quantity of the price; the
            # units it took from a grant of units are in the notes below.
            rows.append(
                (
                    str(line["id"]),
                    line["kind"],
                    _credit_what(line),
                    "",
                    "",
                    "",
                    format_money(Decimal(line["amount"]), cur),
                )
            )
            continue
        rows.append(
            (
                str(line["id"]),
                line["kind"],
                price,
                str(line["price_version"] or "").split("#", 1)[0],
                format_quantity(Decimal(line["quantity"]), 4),
                format_money(Decimal(unit), cur) if unit is not None and not line["tiers"] else "",
                format_money(Decimal(line["amount"]), cur),
            )
        )
        for tier in line["tiers"]:
            rows.append(
                (
                    "",
                    "",
                    f"  tier {tier.get('tier', '')}".rstrip(),
                    "",
                    _decimal_text(tier.get("units"), lambda v: format_quantity(v, 4)),
                    _decimal_text(tier.get("unit_amount"), lambda v: format_money(v, cur)),
                    _decimal_text(tier.get("amount"), lambda v: format_money(v, cur)),
                )
            )
    return rows


def _credit_what(line: dict[str, Any]) -> str:
    """A credit line's grant and the line it pays: "grant welcome pays line 12"."""
    paid = line.get("pays_line_id")
    target = f"line {paid}" if paid is not None else f"{line['price_id']}"
    return f"grant {line.get('grant_id') or '-'} pays {target}"


def _credit_note(line: dict[str, Any], currency: str) -> str:
    """How a credit line came about, from its breakdown (billing: the drawdown's
    consumption): the grant, the line it pays, and what left the grant."""
    breakdown = line["breakdown"] if isinstance(line["breakdown"], dict) else {}
    paid = format_money(-Decimal(line["amount"]), currency)
    unit, units = breakdown.get("unit"), breakdown.get("units")
    taken = (
        f"{format_quantity(Decimal(str(units)))} {unit} taken from the grant, {paid} paid"
        if unit and unit != currency and units is not None
        else f"{paid} paid"
    )
    price = line["price_id"] + (f" [{line['group']}]" if line["group"] else "")
    return f"credit: {_credit_what(line)} ({price}): {taken}"


def invoice_notes(detail: dict[str, Any]) -> list[str]:
    """Each line's stored description (how the rating computed it), prefixed with the
    line's id, its long decimals without trailing zeros (meterline.output.plain_numbers);
    a credit line's from its grant and the line it pays."""
    cur = detail["currency"]
    return [
        f"  {line['id']}: "
        + (
            _credit_note(line, cur)
            if line["kind"] == "credit"
            else plain_numbers(line["description"])
        )
        for line in detail["lines"]
        if line.get("description") or line["kind"] == "credit"
    ]


def _decimal_text(value: Any, show: Any) -> str:
    """A stored breakdown number (decimal text) through ``show``; blank when absent."""
    if value is None or value == "":
        return ""
    return str(show(Decimal(str(value))))


@invoices.command("finalize")
@click.argument("invoice_ids", nargs=-1, type=Id("an invoice id"))
@click.option("--due", is_flag=True, help="Finalize every draft whose grace period is over.")
@click.option(
    "--as-of", "as_of", required=True, type=Timestamp(), help=f"Logical time: {AS_OF_HELP}."
)
@click.option(
    "--grace",
    help="Wait after period end (e.g. 72h, 3d; at most 8784h); default"
    " METERLINE_FINALIZE_GRACE_HOURS, as close.",
)
def invoices_finalize(
    invoice_ids: tuple[int, ...], due: bool, as_of: datetime, grace: str | None
) -> None:
    """Finalize INVOICE_IDS (or --due): totals are frozen, the invoice never changes again."""
    if bool(invoice_ids) == due:
        raise click.UsageError("give invoice ids or --due (not both)")
    done = jobs.finalize_invoices(
        invoice_ids, due=due, as_of=as_of, grace=_duration(grace) if grace else None
    )
    click.echo(
        f"finalized {len(done)} invoice(s)" + (f": {', '.join(map(str, done))}" if done else "")
    )


@invoices.command("void")
@click.argument("invoice_id", type=Id("an invoice id"))
@click.option(
    "--as-of", "as_of", required=True, type=Timestamp(), help=f"Logical time: {AS_OF_HELP}."
)
def invoices_void(invoice_id: int, as_of: datetime) -> None:
    """Void INVOICE_ID. Posting its period again issues a new invoice linked to it."""
    click.echo(f"invoice {jobs.void_invoice(invoice_id, as_of=as_of)} is void")


# --- ledger (schema) ----------------------------------------------------------------


@click.group()
def ledger() -> None:
    """The ledger database itself (schema migrations)."""


@ledger.command("migrate")
@click.option(
    "--revision", default="head", show_default=True, help="Alembic revision to upgrade to."
)
def ledger_migrate(revision: str) -> None:
    """Upgrade the ledger schema (Alembic) to REVISION."""
    from meterline.jobs.init import migrate_ledger

    _, after = migrate_ledger(revision=revision)
    click.echo(f"ledger schema at {after}")


@ledger.command("current")
def ledger_current() -> None:
    """Print the ledger schema revision (and the latest one this code ships)."""
    at, latest = jobs.ledger_revision()
    click.echo(f"at {at or 'none'}; latest {latest}")
