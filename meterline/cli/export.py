"""`meterline export`: a closed month's billing data as Parquet files for the data lake
(docs/export.md); the billing_close DAG's export task, by hand."""

from __future__ import annotations

import click

from meterline.cli.options import Month
from meterline.jobs.export import export_period
from meterline.output import json_text


@click.command("export")
@click.option(
    "--period",
    type=Month(),
    required=True,
    help="The month: the invoices whose billing period starts in it (local time).",
)
@click.option(
    "--to",
    "to",
    required=True,
    metavar="URL",
    help="A local folder or any fsspec URL (s3://bucket/prefix needs s3fs installed).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def export(period: str, to: str, as_json: bool) -> None:
    """Export a closed month's billing data to the data lake as Parquet (docs/export.md).

    Invoices, invoice lines, daily usage, credit entries, rejected events, reconcile
    findings and the revenue schedule, one file each, then a manifest. Every row carries
    its primary key and row_version (the run): a loader keeping the latest version of
    each key ends with the ledger. An unchanged month writes nothing.
    Exit code 3 for a month with no invoice or billing period, 2 for one not closed yet
    or a destination that cannot be written."""
    report = export_period(period, to)
    if as_json:
        click.echo(json_text(report.to_json()))
        return
    click.echo(report.summary())
    if report.run is None:
        return
    width = max(len(name) for name in report.tables)
    for name, t in report.tables.items():
        gone = f", {t['deleted_rows']:,} tombstones" if t["deleted_rows"] else ""
        click.echo(f"  {name.ljust(width)}  {t['rows']:>10,} rows{gone}  {t['bytes']:>12,} bytes")
