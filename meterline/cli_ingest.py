"""`meterline init`, `meterline ingest`, `meterline rejected`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from meterline.app import ingest_options, init_warehouse, meter_catalog, open_warehouse
from meterline.settings import settings
from meters.ingest import Ingestor, IngestSummary
from meters.readers import UnreadableFile, count_rows

console = Console(stderr=True)


class Timestamp(click.ParamType):
    """An ISO 8601 instant; a date means its midnight UTC; a naive time is UTC."""

    name = "timestamp"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or time", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command("init")
def init() -> None:
    """Create or upgrade the warehouse schema (idempotent)."""
    with open_warehouse() as warehouse:
        applied = init_warehouse(warehouse)
    if applied:
        click.echo("applied migrations: " + ", ".join(applied))
    else:
        click.echo("warehouse schema is up to date")


def ingest_with_progress(
    paths: list[Path],
    *,
    as_of: datetime | None = None,
    quiet: bool = False,
) -> IngestSummary:
    config = settings()
    options = ingest_options(config)
    catalog = meter_catalog(config)
    known = [count_rows(p) for p in paths]
    total = sum(n for n in known if n is not None) if all(n is not None for n in known) else None
    with (
        open_warehouse(config) as warehouse,
        Progress(
            TextColumn("ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
        ) as progress,
    ):
        init_warehouse(warehouse)
        task = progress.add_task("ingest", total=total)
        ingestor = Ingestor(
            warehouse,
            catalog,
            as_of=as_of,
            options=options,
            progress=lambda _source, rows: progress.advance(task, rows),
        )
        return ingestor.ingest_files(paths)


def print_summary(summary: IngestSummary) -> None:
    total = summary.total
    table = Table(title=f"ingest {summary.ingest_id[:12]}")
    for column in ("source", "received", "accepted", "duplicates", "rejected"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for name, counts in summary.sources.items():
        table.add_row(
            name,
            *(
                f"{n:,}"
                for n in (counts.received, counts.accepted, counts.duplicates, counts.rejected)
            ),
        )
    if len(summary.sources) > 1:
        table.add_row(
            "total",
            *(f"{n:,}" for n in (total.received, total.accepted, total.duplicates, total.rejected)),
        )
    out = Console()
    out.print(table)
    if total.rejected_by_reason:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(total.rejected_by_reason.items()))
        out.print(f"rejected by reason: {reasons}")
        out.print("see them with: meterline rejected --ingest " + summary.ingest_id)
    balance = "balanced" if total.balanced else "NOT BALANCED"
    out.print(
        f"received {total.received:,} = accepted {total.accepted:,} + duplicates "
        f"{total.duplicates:,} + rejected {total.rejected:,}: {balance}"
    )


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--as-of",
    type=Timestamp(),
    help="Judge event age against this time instead of now (backfills).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def ingest(paths: tuple[Path, ...], as_of: datetime | None, as_json: bool, quiet: bool) -> None:
    """Ingest usage files (.jsonl, .csv, .parquet; folders are read recursively).

    Every row is accepted, a duplicate, or rejected with a reason; nothing is dropped.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
                )
            )
        else:
            files.append(path)
    try:
        summary = ingest_with_progress(files, as_of=as_of, quiet=quiet or as_json)
    except UnreadableFile as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(summary.to_json()))
    else:
        print_summary(summary)
    if not summary.total.balanced:
        raise SystemExit(1)


@click.command("rejected")
@click.option("--ingest", "ingest_id", help="Only rows of this ingest id.")
@click.option("--reason", help="Only rows with this reason.")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def rejected(ingest_id: str | None, reason: str | None, limit: int, as_json: bool) -> None:
    """Show rejected rows: where they came from, why, and their raw payload."""
    with open_warehouse() as warehouse:
        init_warehouse(warehouse)
        rows = warehouse.query_rows(
            "SELECT ingest_id, ingested_at, source, source_line, reason, detail, raw "
            "FROM usage_events_rejected "
            "WHERE ({ingest:String} = '' OR ingest_id = {ingest:String}) "
            "AND ({reason:String} = '' OR reason = {reason:String}) "
            "ORDER BY ingested_at DESC, source, source_line LIMIT {limit:UInt32}",
            {"ingest": ingest_id or "", "reason": reason or "", "limit": limit},
        )
    names = ("ingest_id", "ingested_at", "source", "line", "reason", "detail", "raw")
    if as_json:
        for row in rows:
            record = dict(zip(names, row, strict=True))
            record["ingested_at"] = record["ingested_at"].isoformat()
            click.echo(json.dumps(record))
        return
    table = Table()
    for name in ("source", "line", "reason", "detail", "raw"):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(str(row[2]), str(row[3]), str(row[4]), str(row[5]), str(row[6])[:200])
    Console().print(table)
