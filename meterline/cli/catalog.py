"""`meterline catalog load|show`: the one catalog, loaded into the ledger once and read
by every command from there (docs/catalog.md)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from billing.catalog import CatalogPriceVersion


@click.group()
def catalog() -> None:
    """The catalog: meters, plans and versioned prices (docs/catalog.md)."""


@catalog.command("load")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--reprice",
    is_flag=True,
    help="Allow a change to what finalized invoices were charged: store it and post the"
    " differences once, as adjustment lines on the next open invoices.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def catalog_load(file: Path | None, reprice: bool, as_json: bool) -> None:
    """Validate the catalog FILE (default: METERLINE_CATALOG_PATH) and make it the
    catalog every command reads. Loading the same content again changes nothing; a
    price version that priced a finalized invoice never changes in place (--reprice)."""
    from meterline.jobs.catalog import load_catalog_file

    report = load_catalog_file(file, reprice=reprice)
    click.echo(json.dumps(report.to_json()) if as_json else report.text())


@catalog.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def catalog_show(as_json: bool) -> None:
    """Show the catalog the ledger holds: its version, meters, plans and prices (with
    each price's tax code, docs/tax.md)."""
    from meterline.jobs.catalog import loaded_catalog

    current = loaded_catalog()
    meters = [
        {
            "name": m.name,
            "aggregation": m.aggregation.value,
            "unit": m.unit,
            "dimensions": list(m.dimensions),
            "filter": dict(m.filter),
        }
        for m in current.meters.meters.values()
    ]
    grouped: dict[tuple[str, str], list[CatalogPriceVersion]] = defaultdict(list)
    for version in current.prices:
        grouped[(version.plan_id, version.price_id)].append(version)
    prices: list[dict[str, Any]] = [
        {
            "plan": plan,
            "price": price,
            "meter": versions[0].meter,
            "filter": versions[0].filter or {},
            "currencies": sorted({v.currency for v in versions}),
            "effective_from": sorted({v.effective_from.isoformat() for v in versions}),
            "tax_code": current.tax_codes.get(price),
        }
        for (plan, price), versions in grouped.items()
    ]
    if as_json:
        doc = {
            "catalog_version": current.version,
            "content_hash": current.content_hash,
            "source": current.source,
            "loaded_at": current.loaded_at.isoformat(),
            "meters": meters,
            "plans": [
                {"id": p.id, "name": p.name, "minimum_commitment": p.minimum_commitment}
                for p in current.plans
            ],
            "prices": prices,
        }
        click.echo(json.dumps(doc))
        return
    click.echo(
        f"catalog version {current.version} ({current.content_hash[:12]}), loaded"
        f" {current.loaded_at:%Y-%m-%d %H:%M}Z from {current.source}"
    )
    click.echo("meters:")
    for m in meters:
        dims = f" by {', '.join(m['dimensions'])}" if m["dimensions"] else ""
        click.echo(f"  {m['name']}: {m['aggregation']} of {m['unit']}{dims}")
    click.echo("plans:")
    for plan in current.plans:
        click.echo(f"  {plan.id}: {plan.name}")
        for entry in prices:
            if entry["plan"] == plan.id:
                on = f" on {entry['meter']}" if entry["meter"] else " (flat fee)"
                where = "".join(f" [{k}={v}]" for k, v in sorted(entry["filter"].items()))
                tax = f"; tax code {entry['tax_code']}" if entry["tax_code"] else ""
                click.echo(
                    f"    {entry['price']}{on}{where}: {', '.join(entry['currencies'])};"
                    f" versions from {', '.join(entry['effective_from'])}{tax}"
                )
