"""The data-lake export (`meterline export`, the billing_close DAG's export task;
docs/export.md): a closed month's invoices, invoice lines, daily usage, credit ledger
entries, rejected events, reconcile findings and revenue recognition schedule as Parquet
files under a folder or any fsspec URL, each row with its primary key and
``row_version``.

One run: check the month is closed (``closed``: PeriodNotFound exit 3, PeriodNotClosed
exit 2), open the destination (LakeUnwritable 2, LakeUnavailable 4), read the month
(``ledger``, ``usage``, ``findings``, ``revrec``), and compare its content with the month's newest
manifest there: unchanged, nothing is written. Otherwise read what loaders may hold
there, record the run in the ledger (its id is the version, which must be above every
run the month's folder holds: else LakeUnwritable, nothing recorded), add tombstones for
the keys a loader holds that the month no longer has, write the files and the manifest
last (meterline.sinks.lake.store), and record the manifest's sha256. memory:// is
refused: its files would end with the process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from billing.models import ExportRun
from billing.views import month_bounds
from meterline.audit.reconcile import reconcile_period
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.export import ledger as ledger_rows
from meterline.jobs.export.closed import PeriodNotClosed, PeriodNotFound, check_closed
from meterline.jobs.export.findings import finding_rows
from meterline.jobs.export.revrec import schedule_rows
from meterline.jobs.export.usage import UsagePeriod, daily_usage, rejected_events
from meterline.jobs.revrec import period_of
from meterline.settings import Settings, settings
from meterline.sinks.lake import manifest as mf
from meterline.sinks.lake.store import (
    Destination,
    LakeUnwritable,
    highest_run,
    latest_manifest,
    loaded_rows,
    open_destination,
    part_runs,
    write_run,
)
from meterline.sinks.lake.tables import TABLES, Table
from meterline.sinks.lake.versions import content_sha256, latest, tombstones, versioned

__all__ = [
    "ExportReport",
    "PeriodNotClosed",
    "PeriodNotFound",
    "export_after_close",
    "export_period",
]


@dataclass
class ExportReport:
    """What one export of a month did. `run` is the version it wrote (None: the month
    was unchanged since run `unchanged_since`, and nothing was written); `tables` holds,
    per table, its rows, tombstones and bytes; `manifest` where the manifest is."""

    period: str
    destination: str
    run: int | None
    unchanged_since: int | None
    manifest: str | None
    seconds: float
    tables: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> str:
        if self.run is None:
            return (
                f"{self.period}: unchanged since run {self.unchanged_since}; nothing written"
                f" ({self.destination})"
            )
        rows = sum(t["rows"] for t in self.tables.values())
        size = sum(t["bytes"] for t in self.tables.values())
        return (
            f"{self.period}: run {self.run} wrote {rows:,} rows in {len(self.tables)} files"
            f" ({size:,} bytes) and {self.manifest} in {self.seconds:.1f} s"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "destination": self.destination,
            "run": self.run,
            "unchanged_since": self.unchanged_since,
            "manifest": self.manifest,
            # decimal text, as every number in --json output (a float is refused there)
            "seconds": f"{self.seconds:.3f}",
            "tables": self.tables,
        }


def export_period(period: str, to: str, *, config: Settings | None = None) -> ExportReport:
    """Export month `period` (YYYY-MM: the invoices whose period starts in it, local
    time) to `to` (a folder or fsspec URL). Raises PeriodNotFound (3), PeriodNotClosed
    (2), ValueError for a month that is not YYYY-MM, LakeUnwritable (2) and
    LakeUnavailable (4) for the destination, and the stores' own errors."""
    config = config or settings()
    month_bounds(period)
    _require_lasting(to)
    began = time.monotonic()
    with ledger_session(config) as session:
        dest = open_destination(to)
        as_of = check_closed(session, period, config)
        rows = {
            "invoices": ledger_rows.invoices(session, period),
            "invoice_lines": ledger_rows.invoice_lines(session, period),
            "credit_entries": ledger_rows.credit_entries(session, period),
        }
        periods = [UsagePeriod(*p) for p in ledger_rows.usage_periods(session, period)]
    # The catalog is read in a transaction of its own (meterline.jobs.catalog), which
    # SQLite does not begin while another session holds the ledger.
    meters = meter_catalog(config)
    with ledger_session(config) as session, open_warehouse(config) as warehouse:
        rows["daily_usage"] = daily_usage(warehouse, meters, periods)
        rows["rejected_events"] = rejected_events(warehouse, period)
        recognized = period_of(session, warehouse, meters, period).rows
        rows["revrec_schedule"] = schedule_rows(recognized)
    reconciled = reconcile_period(period, as_of=as_of, config=config)
    rows["reconcile_findings"] = finding_rows(reconciled.findings)
    return _write(dest, period, TABLES, rows, as_of, began, config)


def _require_lasting(url: str) -> None:
    """LakeUnwritable for a destination whose files end with the process: fsspec's
    memory:// (also inside a chain, cached::memory://). An export there would record a run
    and report its files, and nothing would be left to load."""
    if any(part.strip().lower().startswith("memory:") for part in url.split("::")):
        raise LakeUnwritable(
            f"export destination {url}: memory:// keeps files only while this process runs;"
            " give a folder or a URL of lasting storage (s3://bucket/prefix)"
        )


def export_after_close(
    months: Sequence[str], *, config: Settings | None = None
) -> list[ExportReport | str] | None:
    """The billing_close DAG's export task: each of `months` (those its reconcile
    covered) that is closed, to METERLINE_EXPORT_URL; a month not closed yet is listed as
    the reason it was skipped. None when METERLINE_EXPORT_URL is not set."""
    config = config or settings()
    if not config.export_url:
        return None
    out: list[ExportReport | str] = []
    for month in sorted(set(months)):
        try:
            out.append(export_period(month, config.export_url, config=config))
        except (PeriodNotClosed, PeriodNotFound) as exc:
            out.append(f"{month}: skipped: {exc}")
    return out


def _write(
    dest: Destination,
    period: str,
    tables: Sequence[Table],
    rows: dict[str, pa.Table],
    as_of: datetime | None,
    began: float,
    config: Settings,
) -> ExportReport:
    current = {t.name: versioned(t, rows[t.name], period, 0) for t in tables}
    contents = {t.name: content_sha256(t, current[t.name]) for t in tables}
    previous = latest_manifest(dest, period)
    prev_run = int(previous["run"]) if previous else None
    newer = any(r > (prev_run or 0) for t in tables for r in part_runs(dest, period, t))
    if previous is not None and mf.content_of(previous) == contents and not newer:
        return ExportReport(period, dest.safe_url, None, prev_run, None, time.monotonic() - began)
    # Everything read from the destination before the run takes its number: a folder
    # that cannot be read refuses the export without using one.
    alive = {
        t.name: latest(t, loaded_rows(dest, period, t, since_run=prev_run or 0)) for t in tables
    }
    run = _start_run(period, dest, highest_run(dest, period), config)
    files = {}
    for t in tables:
        mine = current[t.name].set_column(
            t.schema.get_field_index("row_version"),
            t.schema.field("row_version"),
            pa.array([run] * current[t.name].num_rows, pa.int64()),
        )
        files[t.name] = pa.concat_tables([mine, tombstones(t, alive[t.name], mine, period, run)])

    def manifest_of(written: dict[str, mf.WrittenFile]) -> dict[str, Any]:
        return mf.build(
            period=period,
            run=run,
            previous_run=prev_run,
            exported_at=_iso(datetime.now(UTC)),
            as_of=_iso(as_of) if as_of else None,
            tables={
                t.name: mf.table_entry(t, files[t.name], [written[t.name]], contents[t.name])
                for t in tables
            },
        )

    manifest, digest = write_run(dest, period, run, files, manifest_of)
    _finish_run(run, digest, config)
    tables_done = {
        name: {
            "rows": entry["rows"],
            "deleted_rows": entry["deleted_rows"],
            "bytes": sum(f["bytes"] for f in entry["files"]),
        }
        for name, entry in manifest["tables"].items()
    }
    where = dest.shown(f"{dest.period_dir(period)}/{mf.manifest_name(run)}")
    return ExportReport(
        period, dest.safe_url, run, None, where, time.monotonic() - began, tables_done
    )


def _start_run(period: str, dest: Destination, above: int, config: Settings) -> int:
    """Record a run in the ledger (committed at once: its id is taken for good). Its id
    is the rows' version, so it must be above every run the month's folder already holds
    (`above`): otherwise loaders would keep those rows over this run's. LakeUnwritable
    (nothing recorded, nothing written) when it is not: the folder was written from
    another ledger, or this ledger was restored from a backup."""
    with ledger_session(config, write=True) as session:
        row = ExportRun(
            period=period,
            destination=dest.safe_url,
            # Wall clock: when this process wrote, a record, not a billing time.
            started_at=datetime.now(UTC),
        )
        session.add(row)
        session.flush()
        run = int(row.id)
        if run <= above:
            raise LakeUnwritable(
                f"export destination {dest.safe_url}: period={period} holds run {above:,},"
                f" and this ledger's next run is {run:,}: its rows would be older versions"
                " than those, and loaders would keep the others. The folder was written from"
                " another ledger, or this ledger was restored from a backup: export to"
                f" another folder, or move period={period} away (docs/export.md)"
            )
        return run


def _finish_run(run: int, digest: str, config: Settings) -> None:
    with ledger_session(config, write=True) as session:
        row = session.get(ExportRun, run)
        assert row is not None
        row.finished_at = datetime.now(UTC)
        row.manifest_sha256 = digest


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
