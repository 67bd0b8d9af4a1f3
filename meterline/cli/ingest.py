"""`meterline init`, `meterline ingest`, `meterline rejected`.

Exit codes of `ingest` (the README's table): 0 when every file was read and the
rejected share is within METERLINE_INGEST_MAX_REJECTED_SHARE; 1 when more rows were
rejected than that, or every row received was; 2 when a file could not be read (the
other files are still ingested and the summary printed first); 5 if the accounting
does not balance (a bug).
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meterline.cli.exits import ExitCode, NotFound, echo_error
from meterline.cli.options import AS_OF_HELP, Timestamp

if TYPE_CHECKING:
    from meters.ingest.ingestor import IngestSummary, SourceCounts

# The file types ingest reads (meters.ingest.readers.FORMATS), for walking folders.
SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".pq")


@click.command("init")
def init() -> None:
    """Create or upgrade the warehouse schema (idempotent)."""
    from meterline.connections import init_warehouse, open_warehouse

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
    """Ingest the files as one run, with a progress bar on stderr. A file that cannot be
    read is named in the summary's file_errors; the others are ingested."""
    from meterline import connections as app
    from meterline.output import progress
    from meterline.settings import settings
    from meters.ingest.ingestor import Ingestor
    from meters.ingest.readers import count_rows

    config = settings()
    options = app.ingest_options(config)
    catalog = app.meter_catalog(config)
    known = [count_rows(p) for p in paths]
    total = sum(n for n in known if n is not None) if all(n is not None for n in known) else None
    with app.open_warehouse(config) as warehouse, progress("ingest", total, quiet=quiet) as tick:
        app.init_warehouse(warehouse)
        ingestor = Ingestor(
            warehouse,
            catalog,
            as_of=as_of,
            options=options,
            progress=lambda _source, rows: tick.advance(rows),
        )
        return ingestor.ingest_files(paths)


def rejected_share_problem(total: SourceCounts, max_share: Decimal) -> str | None:
    """Why an ingest's rejections need a person (exit code 1), or None.

    Every row rejected is always a problem (a nightly job must not go green on a file it
    could not use); otherwise rejected / received above `max_share`, compared exactly
    (rejected > max_share x received, in Decimal)."""
    received, rejected = total.received, total.rejected
    if not received:
        return None
    share = (Decimal(rejected) * 100 / received).quantize(Decimal("0.1"))
    if rejected == received:
        return f"every row was rejected ({rejected:,} of {received:,})"
    if Decimal(rejected) > max_share * received:
        return (
            f"{rejected:,} of {received:,} rows were rejected ({share}%), more than "
            f"METERLINE_INGEST_MAX_REJECTED_SHARE allows ({max_share})"
        )
    return None


def print_summary(summary: IngestSummary) -> None:
    from meterline.cli.options import console
    from meterline.output import Column, format_count, print_table

    out = console()
    total = summary.total
    rows = [
        [
            name + (" (unreadable)" if name in summary.file_errors else ""),
            *(
                format_count(n)
                for n in (counts.received, counts.accepted, counts.duplicates, counts.rejected)
            ),
        ]
        for name, counts in summary.sources.items()
    ]
    if len(summary.sources) > 1:
        rows.append(
            [
                "total",
                *(
                    format_count(n)
                    for n in (total.received, total.accepted, total.duplicates, total.rejected)
                ),
            ]
        )
    columns = [
        Column("source"),
        *(Column(h, "number") for h in ("received", "accepted", "duplicates", "rejected")),
    ]
    print_table(out, columns, rows, title=f"ingest {summary.ingest_id}")
    for run in summary.rolled_back:
        out.print(
            f"rolled back interrupted ingest {run.ingest_id} (started "
            f"{run.ingested_at.isoformat()}; {', '.join(run.sources)}): ingest those files again"
        )
    if total.rejected_by_reason:
        reasons = ", ".join(
            f"{r} {format_count(n)}" for r, n in sorted(total.rejected_by_reason.items())
        )
        out.print(f"rejected by reason: {reasons}")
        out.print("see them with: meterline rejected --ingest " + summary.ingest_id)
    balance = "balanced" if total.balanced else "NOT BALANCED"
    out.print(
        f"received {format_count(total.received)} = accepted {format_count(total.accepted)}"
        f" + duplicates {format_count(total.duplicates)} + rejected "
        f"{format_count(total.rejected)}: {balance}"
    )


def _files(paths: tuple[Path, ...]) -> tuple[list[Path], dict[str, str]]:
    """The files to ingest, folders walked recursively, and a refusal for each folder
    that holds none."""
    files: list[Path] = []
    problems: dict[str, str] = {}
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
            )
            if not found:
                problems[str(path)] = (
                    f"{path}: the folder holds no usage files ({', '.join(SUFFIXES)})"
                )
            files.extend(found)
        else:
            files.append(path)
    return files, problems


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--as-of",
    type=Timestamp(),
    help="Judge event age against this time instead of now (backfills): events up to "
    f"METERLINE_MAX_EVENT_AGE_DAYS before it are accepted. {AS_OF_HELP}.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def ingest(paths: tuple[Path, ...], as_of: datetime | None, as_json: bool, quiet: bool) -> None:
    """Ingest usage files (.jsonl, .csv, .parquet; folders are read recursively).

    Every row is accepted, a duplicate, or rejected with a reason; nothing is dropped.
    Exit code 1 when more rows were rejected than METERLINE_INGEST_MAX_REJECTED_SHARE
    allows (or all of them), 2 when a file could not be read (the others are ingested).
    """
    from meterline.settings import settings

    max_share = settings().ingest_max_rejected_share
    files, folder_problems = _files(paths)
    summary = ingest_with_progress(files, as_of=as_of, quiet=quiet or as_json)
    if as_json:
        doc = summary.to_json()
        doc["file_errors"] = {**folder_problems, **doc.get("file_errors", {})}
        click.echo(json.dumps(doc))
    else:
        print_summary(summary)
    total = summary.total
    if not total.balanced:
        echo_error(
            f"internal error (a bug): ingest {summary.ingest_id} does not balance (received "
            f"{total.received} != accepted {total.accepted} + duplicates {total.duplicates} "
            f"+ rejected {total.rejected}); please report it"
        )
        raise SystemExit(ExitCode.INTERNAL)
    unreadable = {**folder_problems, **summary.file_errors}
    for message in unreadable.values():
        echo_error(message)
    problem = rejected_share_problem(total, max_share)
    if problem:
        click.echo(
            f"meterline: {problem}; see them with: meterline rejected --ingest {summary.ingest_id}",
            err=True,
        )
    if unreadable:
        raise SystemExit(ExitCode.REFUSED)
    if problem:
        raise SystemExit(ExitCode.FINDINGS)


@click.command("rejected")
@click.option("--ingest", "ingest_id", help="Only rows of this ingest id.")
@click.option("--reason", help="Only rows with this reason (see the README's reasons list).")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Show at most this many rows, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per row.")
def rejected(ingest_id: str | None, reason: str | None, limit: int, as_json: bool) -> None:
    """Show rejected rows: where they came from, why, and their raw payload."""
    from meterline.cli.options import console
    from meterline.connections import init_warehouse, open_warehouse
    from meterline.output import Column, print_table
    from meters.ingest.ingestor import REASONS

    if reason is not None and reason not in REASONS:
        raise click.BadParameter(
            f"{reason!r} is not a rejection reason (reasons: {', '.join(REASONS)})",
            param_hint="'--reason'",
        )
    with open_warehouse() as warehouse:
        init_warehouse(warehouse)
        if ingest_id is not None:
            ((known,),) = warehouse.query_rows(
                "SELECT count() FROM ingest_log WHERE ingest_id = {ingest:String}",
                {"ingest": ingest_id},
            )
            if not int(known):
                raise NotFound(
                    f"no ingest {ingest_id!r}: ingest ids are printed by `meterline ingest`"
                )
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
            click.echo(json.dumps(record, ensure_ascii=False))
        return
    print_table(
        console(),
        [
            Column("source"),
            Column("line", "number"),
            Column("reason"),
            Column("detail"),
            Column("raw"),
        ],
        [[row[2], str(row[3]), row[4], row[5], _shown(row[6])] for row in rows],
    )


def _shown(raw: str, limit: int = 200) -> str:
    """A raw payload for a table: control characters visible, at most `limit` characters."""
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in raw)
    return text if len(text) <= limit else text[: limit - 1] + "…"
