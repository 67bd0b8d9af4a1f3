"""`meterline customers sync-salesforce`: customers, subscriptions and discounts from
Salesforce (meterline.jobs.salesforce; docs/salesforce.md). Registered on the
`customers` group (meterline.cli.ledger); the job, and simple-salesforce with it, is
imported when the command runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from meterline.cli.options import Timestamp

if TYPE_CHECKING:
    from meterline.jobs.salesforce import ObjectRead, SyncReport


def _stamp(instant: datetime | None) -> str:
    return "none" if instant is None else instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record_line(change: Any, ref: Any) -> str:
    what = f"{change.kind} {change.external_id}"
    if ref is not None:
        what += f" ({ref})"
    line = f"  {what}: {change.status}"
    if change.changes:
        line += ": " + "; ".join(str(c) for c in change.changes)
    return line


def _counts(changes: list[Any]) -> str:
    statuses = ("added", "changed", "unchanged")
    counts = {s: sum(1 for c in changes if c.status == s) for s in statuses}
    return ", ".join(f"{n:,} {s}" for s, n in counts.items())


def _read_line(report: SyncReport) -> str:
    acc, subs = report.accounts, report.subscriptions
    if report.full:
        start = "every record (the first sync, or the mapping changed)"
    else:
        start = (
            f"the records modified since {_stamp(acc.since)}"
            if acc.since == subs.since
            else f"{acc.name} modified since {_stamp(acc.since)} and {subs.name} since"
            f" {_stamp(subs.since)}"
        )
    return (
        f"salesforce: read {start}: {acc.modified:,} {acc.name} and {subs.modified:,}"
        f" {subs.name} record(s) modified, in {report.requests:,} request(s)"
    )


def _mark(read: ObjectRead) -> str:
    after = read.after.high_water if read.after else None
    before = read.before.high_water if read.before else None
    moved = "" if after == before else f" (was {_stamp(before)})"
    return f"{read.name} {_stamp(after)}{moved}"


def report_lines(report: SyncReport) -> list[str]:
    """What a sync prints: what it read, each record added or changed (every record with
    --dry-run), the counts, the high-water marks, and whether anything was stored."""
    lines = [_read_line(report)]
    for change in [*report.customers, *report.subscription_changes]:
        if report.dry_run or change.status != "unchanged":
            lines.append(_record_line(change, report.refs.get((change.kind, change.external_id))))
    if report.dry_run:
        lines.extend(
            f"  {ref}: no subscription read: not a customer" for ref in report.without_subscription
        )
    lines.append(
        f"customers: {_counts(report.customers)}; subscriptions:"
        f" {_counts(report.subscription_changes)}"
        + (
            f"; {len(report.without_subscription):,} account(s) without a subscription"
            if report.without_subscription
            else ""
        )
    )
    marks = f"high-water marks: {_mark(report.accounts)}, {_mark(report.subscriptions)}"
    if report.dry_run:
        lines.append(f"dry run: nothing was stored; a sync would set the {marks}")
    else:
        lines.append(marks if report.changed else f"{marks}; the ledger's customers did not change")
    return lines


@click.command("sync-salesforce")
@click.option(
    "--mapping",
    "mapping",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The field mapping file (YAML; docs/salesforce.md); default METERLINE_SALESFORCE_MAPPING.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read and check everything, print each record's change, store nothing.",
)
@click.option(
    "--since",
    type=Timestamp(),
    help="Read the records modified from this time (RFC 3339 with an offset, or a date:"
    " midnight UTC) instead of from the stored high-water marks.",
)
def sync_salesforce(mapping: Path | None, dry_run: bool, since: datetime | None) -> None:
    """Sync customers, subscriptions and discounts from Salesforce. All or nothing."""
    from meterline.jobs.salesforce import sync_salesforce as run

    report = run(mapping, dry_run=dry_run, since=since)
    for line in report_lines(report):
        click.echo(line)
