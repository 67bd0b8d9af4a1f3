"""`meterline ingest`, `meterline rejected`.

`ingest` runs the ingest job (meterline.jobs.ingest), the usage_ingest DAG's task. Exit
codes (the README's table): 0 when every file was read and the rejected share is within
METERLINE_INGEST_MAX_REJECTED_SHARE; 1 when more rows were rejected than that, or every
row received was; 2 when a file could not be read (the other files are still ingested
and the summary printed first) or a delivery is not there; 5 if the accounting does not
balance (a bug).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meterline.cli.exits import ExitCode, NotFound, echo_error
from meterline.cli.options import AS_OF_HELP, Day, Timestamp

if TYPE_CHECKING:
    from meters.ingest.ingestor import IngestSummary


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


@click.command("ingest")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--delivery",
    type=Day(),
    help="Ingest this UTC day's delivery (YYYY-MM-DD) from METERLINE_DELIVERY_PATH, as the"
    " usage_ingest DAG does; --as-of then defaults to the day's end.",
)
@click.option(
    "--as-of",
    type=Timestamp(),
    help="Judge event age against this time instead of now (backfills): events up to "
    f"METERLINE_MAX_EVENT_AGE_DAYS before it are accepted. {AS_OF_HELP}.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def ingest(
    paths: tuple[Path, ...],
    delivery: date | None,
    as_of: datetime | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Ingest usage files (.jsonl, .csv, .parquet; folders are read recursively).

    Every row is accepted, a duplicate, or rejected with a reason; nothing is dropped.
    Exit code 1 when more rows were rejected than METERLINE_INGEST_MAX_REJECTED_SHARE
    allows (or all of them), 2 when a file could not be read (the others are ingested).
    """
    from meterline.jobs.ingest import expected_rows, ingest_delivery, ingest_paths
    from meterline.output import progress

    if bool(paths) == (delivery is not None):
        raise click.UsageError("give PATHS or --delivery DAY (one of them)")
    total = expected_rows(list(paths)) if paths else None
    with progress("ingest", total, quiet=quiet or as_json) as tick:
        if delivery is not None:
            report = ingest_delivery(delivery, as_of=as_of, on_rows=tick.advance)
        else:
            report = ingest_paths(list(paths), as_of=as_of, on_rows=tick.advance)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        print_summary(report.summary)
    total_counts = report.total
    if not report.balanced:
        echo_error(
            f"internal error (a bug): ingest {report.ingest_id} does not balance (received "
            f"{total_counts.received} != accepted {total_counts.accepted} + duplicates "
            f"{total_counts.duplicates} + rejected {total_counts.rejected}); please report it"
        )
        raise SystemExit(ExitCode.INTERNAL)
    for message in report.file_errors.values():
        echo_error(message)
    if report.problem:
        echo_error(
            f"{report.problem}; see them with: meterline rejected --ingest {report.ingest_id}"
        )
    if report.file_errors:
        raise SystemExit(ExitCode.REFUSED)
    if report.problem:
        raise SystemExit(ExitCode.FINDINGS)


@click.command("rejected")
@click.option("--ingest", "ingest_id", help="Only rows of this ingest id.")
@click.option("--reason", help="Only rows with this reason (see the README's reasons list).")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Show at most this many rows, newest first (1 to 1,000,000).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per row.")
def rejected(ingest_id: str | None, reason: str | None, limit: int, as_json: bool) -> None:
    """Show rejected rows: where they came from, why, and their raw payload."""
    from meterline.cli.options import console
    from meterline.jobs.ingest import REASONS, UnknownIngest, rejected_rows
    from meterline.output import Column, print_table

    if reason is not None and reason not in REASONS:
        raise click.BadParameter(
            f"{reason!r} is not a rejection reason (reasons: {', '.join(REASONS)})",
            param_hint="'--reason'",
        )
    try:
        rows = rejected_rows(ingest_id=ingest_id, reason=reason, limit=limit)
    except UnknownIngest as exc:
        raise NotFound(str(exc)) from None
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.to_json(), ensure_ascii=False))
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
        [[row.source, str(row.line), row.reason, row.detail, _shown(row.raw)] for row in rows],
    )


def _shown(raw: str, limit: int = 200) -> str:
    """A raw payload for a table: control characters visible, at most `limit` characters."""
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in raw)
    return text if len(text) <= limit else text[: limit - 1] + "…"
