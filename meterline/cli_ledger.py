"""`meterline customers|catalog|invoices|ledger ...`: the billing ledger by hand.

The lead registers these groups on the main `meterline` group (see ``register``). They
read the ledger URL from ``settings().ledger_url`` and the catalog from
``settings().catalog_path``. An embedded SQLite ledger is migrated on first use; a
PostgreSQL ledger must be migrated explicitly (``meterline ledger migrate``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import billing
from billing import migrate
from billing.customers import FORMATS
from billing.db import create_ledger_engine, session_factory
from billing.errors import LedgerError
from billing.views import totals_by_currency
from meterline.settings import settings

_DURATION = re.compile(r"^\s*(\d+)\s*([dhms]?)\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "": "hours"}


def _console() -> Console:
    # Piped output (a file, a log, a test) is not cut to 80 columns.
    width = None if sys.stdout.isatty() else 240
    return Console(highlight=False, width=width)


@contextmanager
def _ledger(*, write: bool) -> Iterator[Session]:
    """A session on the configured ledger, in one transaction (committed on success)."""
    url = settings().ledger_url
    engine: Engine = create_ledger_engine(url)
    try:
        if make_url(url).get_backend_name() == "sqlite":
            migrate.upgrade(engine)  # the embedded ledger sets itself up
        else:
            migrate.require_head(engine)
        make = session_factory(engine)
        with make.begin() if write else make() as session:
            yield session
    except (LedgerError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()


def _instant(value: str) -> datetime:
    """An ISO 8601 instant with its offset, or a date (midnight UTC)."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or date-time") from None
    if parsed.utcoffset() is None:
        raise click.BadParameter(f"{value!r} has no UTC offset (add Z or +HH:MM)")
    return parsed


def _duration(value: str) -> timedelta:
    match = _DURATION.match(value)
    if not match:
        raise click.BadParameter(f"{value!r}: use a number with d, h, m or s (e.g. 72h, 3d)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


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
    type=click.Choice(sorted(set(FORMATS.values()))),
    help="File format (default: from the extension: .jsonl, .yaml/.yml, .csv).",
)
def customers_load(file: Path, fmt: str | None) -> None:
    """Load (insert or update in place) the customers file FILE. All or nothing."""
    with _ledger(write=True) as session:
        result = billing.load_customers_file(session, file, fmt)  # type: ignore[arg-type]
    click.echo(
        f"{result.rows} row(s): customers {result.customers_created} created,"
        f" {result.customers_updated} updated; subscriptions {result.subscriptions_created}"
        f" created, {result.subscriptions_updated} updated; discounts replaced on"
        f" {result.discounts_replaced} subscription(s)"
        + ("" if result.changed else " (nothing changed)")
    )


# --- catalog ------------------------------------------------------------------------


@click.group()
def catalog() -> None:
    """Plans and versioned prices."""


@catalog.command("load")
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def catalog_load(file: Path | None) -> None:
    """Load the catalog FILE (default: the configured catalog). Idempotent: an edited
    price body becomes a new version; the old one is kept for audit."""
    path = file or settings().catalog_path
    with _ledger(write=True) as session:
        result = billing.load_catalog(session, path)
    click.echo(
        f"{path}: plans {result.plans_created} created, {result.plans_updated} updated;"
        f" price versions {result.versions_created} created, {result.versions_unchanged}"
        f" unchanged, {result.versions_superseded} superseded, {result.versions_restored}"
        " restored" + ("" if result.changed else " (nothing changed)")
    )


# --- invoices -----------------------------------------------------------------------


@click.group()
def invoices() -> None:
    """Invoices: list, show, finalize, void."""


@invoices.command("list")
@click.option("--period", help="Month YYYY-MM (by the period's local start date).")
@click.option("--customer", help="Customer external id.")
@click.option("--status", type=click.Choice(billing.models.INVOICE_STATUSES))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def invoices_list(
    period: str | None, customer: str | None, status: str | None, as_json: bool
) -> None:
    """List invoices with their totals, and the totals per currency."""
    with _ledger(write=False) as session:
        rows = billing.list_invoices(session, period=period, customer=customer, status=status)
    totals = totals_by_currency(rows)
    if as_json:
        _echo_json({"invoices": rows, "totals": totals})
        return
    table = Table(title=f"{len(rows)} invoice(s)")
    for name in ("id", "customer", "subscription", "period", "status", "lines", "total"):
        table.add_column(name, justify="right" if name in ("id", "lines", "total") else "left")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["customer"],
            r["subscription"],
            f"{r['period_start_local']} ({r['period_start'][:16]}Z ..)",
            r["status"],
            str(r["line_count"]),
            f"{r['currency']} {r['total']}",
        )
    console = _console()
    console.print(table)
    for currency, total in totals.items():
        console.print(
            f"total {currency} {total['total']} over {total['invoices']} non-void invoice(s)"
        )


@invoices.command("show")
@click.argument("invoice_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def invoices_show(invoice_id: int, as_json: bool) -> None:
    """Show invoice INVOICE_ID: its lines, tier breakdowns and totals."""
    with _ledger(write=False) as session:
        detail = billing.invoice_detail(session, invoice_id)
    if as_json:
        _echo_json(detail)
        return
    cur = detail["currency"]
    console = _console()
    console.print(
        f"Invoice {detail['id']}  {detail['status']}  customer {detail['customer']}"
        f"  subscription {detail['subscription']}"
    )
    console.print(f"period {detail['period_start']} .. {detail['period_end']} (UTC)")
    if detail["reissue_of"]:
        console.print(f"re-issue of invoice {detail['reissue_of']}")
    if detail["reissued_by"]:
        console.print(f"re-issued as invoice(s) {', '.join(map(str, detail['reissued_by']))}")
    table = Table()
    for name in ("#", "kind", "description", "price", "quantity", "unit", "amount"):
        table.add_column(
            name, justify="right" if name in ("quantity", "unit", "amount") else "left"
        )
    for line in detail["lines"]:
        price = f"{line['price_id']}@{line['price_version']}"
        if line["group"]:
            price += f" [{line['group']}]"
        table.add_row(
            str(line["id"]),
            line["kind"],
            line["description"],
            price,
            line["quantity"],
            line["unit_amount"] or "",
            f"{cur} {line['amount']}",
        )
        for tier in line["tiers"]:
            label = f"tier {tier.get('tier', '')}".strip()
            table.add_row(
                "",
                "",
                f"  {label}",
                "",
                str(tier.get("units", "")),
                str(tier.get("unit_amount", "")),
                str(tier.get("amount", "")),
            )
    console.print(table)
    for label, key in (
        ("subtotal", "subtotal"),
        ("discounts", "discounts"),
        ("adjustments", "adjustments"),
        ("total", "total"),
    ):
        console.print(f"{label:>12} {cur} {detail[key]}")


@invoices.command("finalize")
@click.argument("invoice_ids", nargs=-1, type=int)
@click.option("--due", is_flag=True, help="Finalize every draft whose grace period is over.")
@click.option(
    "--as-of", "as_of", required=True, help="Logical time (ISO 8601 with offset, or a date)."
)
@click.option(
    "--grace",
    help="Wait after period end (e.g. 72h, 3d); default METERLINE_FINALIZE_GRACE_HOURS, as close.",
)
def invoices_finalize(
    invoice_ids: tuple[int, ...], due: bool, as_of: str, grace: str | None
) -> None:
    """Finalize INVOICE_IDS (or --due): totals are frozen, the invoice never changes again."""
    if bool(invoice_ids) == due:
        raise click.UsageError("give invoice ids or --due (not both)")
    instant = _instant(as_of)
    wait = _duration(grace) if grace else timedelta(hours=settings().finalize_grace_hours)
    with _ledger(write=True) as session:
        if due:
            done = billing.finalize_due(session, as_of=instant, grace=wait)
        else:
            done = [billing.finalize(session, i, as_of=instant, grace=wait).id for i in invoice_ids]
    click.echo(
        f"finalized {len(done)} invoice(s)" + (f": {', '.join(map(str, done))}" if done else "")
    )


@invoices.command("void")
@click.argument("invoice_id", type=int)
@click.option(
    "--as-of", "as_of", required=True, help="Logical time (ISO 8601 with offset, or a date)."
)
def invoices_void(invoice_id: int, as_of: str) -> None:
    """Void INVOICE_ID. Posting its period again issues a new invoice linked to it."""
    with _ledger(write=True) as session:
        invoice = billing.void(session, invoice_id, as_of=_instant(as_of))
    click.echo(f"invoice {invoice.id} is void")


# --- ledger (schema) ----------------------------------------------------------------


@click.group()
def ledger() -> None:
    """The ledger database itself (schema migrations)."""


@ledger.command("migrate")
@click.option("--revision", default="head", show_default=True)
def ledger_migrate(revision: str) -> None:
    """Upgrade the ledger schema (Alembic) to REVISION."""
    migrate.upgrade(settings().ledger_url, revision)
    click.echo(f"ledger schema at {migrate.current(settings().ledger_url)}")


@ledger.command("current")
def ledger_current() -> None:
    """Print the ledger schema revision (and the latest one this code ships)."""
    click.echo(f"at {migrate.current(settings().ledger_url) or 'none'}; latest {migrate.head()}")
