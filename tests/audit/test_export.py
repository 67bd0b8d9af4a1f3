"""The data-lake export of a closed month (docs/export.md), on the audit month: every file
read back with DuckDB ties to the ledger and to its manifest; an unchanged month writes
nothing; after a void (tombstones) and a re-close with late usage and a credit grant (new
versions), the documented Redshift load (staging table, merge keeping the latest
row_version), run in DuckDB over every manifest, holds exactly the new ledger, in any
load order. Bad input exits with the README's codes.

The audit month is November 2026 closed as of 2026-12-05: October (the periods that
start in October and end in November) is the closed month; November is not closed yet.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from meterline.audit.reconcile import reconcile_period
from meterline.cli import main
from meterline.jobs.close import close_periods
from meterline.jobs.credits import grant_one
from meterline.jobs.export import ExportReport, export_period
from meterline.jobs.export.usage import RAW_LIMIT
from meterline.jobs.ledger import void_invoice
from meterline.jobs.revrec import revrec_schedule
from meterline.jobs.rollup import rollup_day
from meterline.settings import settings
from meterline.sinks.lake import redshift
from meterline.sinks.lake.tables import TABLES
from meters.ingest.ingestor import ingest_events
from tests.audit.conftest import AS_OF, World, ingest_resolution

pytestmark = pytest.mark.single_warehouse

MONTH = "2026-10"
OCTOBER = "strftime('%Y-%m', i.period_start_local) = '2026-10'"


def manifests(lake: Path) -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text()) for p in sorted((lake / f"period={MONTH}").glob("manifest-*"))
    ]


def rows(con: duckdb.DuckDBPyConnection, sql: str, *params: object) -> set[tuple[Any, ...]]:
    return set(con.execute(sql, list(params)).fetchall())


def check_files(lake: Path, report: ExportReport) -> dict[str, Any]:
    """The run's files are whole: sizes, sha256 and row counts are the manifest's."""
    assert report.run is not None
    (manifest,) = [m for m in manifests(lake) if m["run"] == report.run]
    assert manifest["schema_version"] == 1 and manifest["row_version"] == report.run
    con = duckdb.connect()
    for name, entry in manifest["tables"].items():
        (f,) = entry["files"]
        data = (lake / f"period={MONTH}" / f["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["bytes"], f["sha256"])
        path = str(lake / f"period={MONTH}" / f["path"])
        ((count, versions, deleted),) = con.execute(
            "SELECT count(*), list(DISTINCT row_version), count(*) FILTER (deleted)"
            " FROM read_parquet(?)",
            [path],
        ).fetchall()
        assert (count, deleted) == (entry["rows"], entry["deleted_rows"]), name
        assert versions in ([report.run], [], None), name
    return manifest


def ledger_state(world: World) -> dict[str, set[tuple[Any, ...]]]:
    """What the ledger holds for the month, in the merged tables' terms."""
    return {
        "invoices": set(
            world.sql(
                f"SELECT i.id, i.status, i.currency, i.total_minor FROM invoices i WHERE {OCTOBER}"
            )
        ),
        "invoice_lines": set(
            world.sql(
                "SELECT l.id, l.kind, l.amount_minor FROM invoice_lines l"
                f" JOIN invoices i ON i.id = l.invoice_id WHERE {OCTOBER}"
            )
        ),
        "credit_entries": set(world.sql("SELECT id, kind, value_minor FROM credit_ledger_entries")),
    }


MERGED_COLUMNS = {
    "invoices": "invoice_id, status, currency, total_minor",
    "invoice_lines": "line_id, kind, amount_minor",
    "credit_entries": "entry_id, kind, value_minor",
}


def redshift_load(lake: Path, order: list[int]) -> duckdb.DuckDBPyConnection:
    """docs/export.md's load, in DuckDB: per manifest (in `order`), empty the staging
    tables, load each file into them (DuckDB's stand-in for COPY, by position), merge."""
    con = duckdb.connect()
    con.execute(f"CREATE SCHEMA {redshift.TARGET}; CREATE SCHEMA {redshift.STAGING}")
    for t in TABLES:
        con.execute(redshift.ddl(t))
        con.execute(redshift.ddl(t, redshift.STAGING))
        con.execute(redshift.current_view(t))
    by_run = {m["run"]: m for m in manifests(lake)}
    for run in order:
        for t in TABLES:
            (f,) = by_run[run]["tables"][t.name]["files"]
            con.execute(f"DELETE FROM {redshift.STAGING}.{t.name}")
            con.execute(
                f"INSERT INTO {redshift.STAGING}.{t.name} SELECT * FROM read_parquet(?)",
                [str(lake / f"period={MONTH}" / f["path"])],
            )
            con.execute(redshift.merge(t))
    return con


def assert_merge_is_the_ledger(world: World, lake: Path, report: ExportReport) -> None:
    latest = ledger_state(world)
    runs = sorted(m["run"] for m in manifests(lake))
    as_of = world.sql("SELECT max(finalized_at) FROM invoices")[0][0]
    reconciled = reconcile_period(
        MONTH, as_of=datetime.fromisoformat(as_of).replace(tzinfo=UTC), config=world.config
    )
    recognized = {(r.key, r.amount_minor) for r in revrec_schedule(MONTH, config=world.config)}
    for order in (runs, runs[::-1]):
        con = redshift_load(lake, order)
        for name, columns in MERGED_COLUMNS.items():
            got = rows(con, f"SELECT {columns} FROM meterline.{name}_current")
            assert got == latest[name], (name, order)
        # One row per key, tombstones included, each the newest version.
        for t in TABLES:
            ((n, keys),) = con.execute(
                f"SELECT count(*), count(DISTINCT ({', '.join(t.key)})) FROM meterline.{t.name}"
            ).fetchall()
            assert n == keys, t.name
        findings = rows(con, "SELECT finding_id FROM meterline.reconcile_findings_current")
        assert findings == {(f.id,) for f in reconciled.findings}
        # Revenue recognized in the month: revrec's own schedule, key by key.
        schedule = rows(
            con, "SELECT schedule_key, amount_minor FROM meterline.revrec_schedule_current"
        )
        assert schedule == recognized
        # Daily usage: the merge is the newest run's live rows.
        path = lake / f"period={MONTH}" / "daily_usage" / f"part-{report.run:09d}.parquet"
        newest = rows(
            con,
            "SELECT subscription_id, day, meter, dimensions, quantity FROM read_parquet(?)"
            " WHERE NOT deleted",
            str(path),
        )
        merged = rows(
            con,
            "SELECT subscription_id, day, meter, dimensions, quantity"
            " FROM meterline.daily_usage_current",
        )
        assert merged == newest


def check_ties(world: World, lake: Path, manifest: dict[str, Any]) -> None:
    """Totals of the files = the manifest's = the ledger's; each invoice's lines add up
    to its total; the days of a count meter add up to the usage lines' quantity."""
    con = duckdb.connect()
    part = lake / f"period={MONTH}"

    def file(name: str) -> str:
        return str(part / manifest["tables"][name]["files"][0]["path"])

    invoices = rows(
        con,
        "SELECT currency, status, sum(total_minor)::BIGINT FROM read_parquet(?)"
        " WHERE NOT deleted GROUP BY ALL",
        file("invoices"),
    )
    assert invoices == set(
        world.sql(
            f"SELECT currency, status, sum(total_minor) FROM invoices i WHERE {OCTOBER}"
            " GROUP BY currency, status"
        )
    )
    assert invoices == {
        (t["currency"], t["status"], t["total_minor"])
        for t in manifest["tables"]["invoices"]["totals"]
    }
    lines = rows(
        con,
        "SELECT currency, kind, sum(amount_minor)::BIGINT FROM read_parquet(?)"
        " WHERE NOT deleted GROUP BY ALL",
        file("invoice_lines"),
    )
    assert lines == set(
        world.sql(
            "SELECT l.currency, l.kind, sum(l.amount_minor) FROM invoice_lines l"
            f" JOIN invoices i ON i.id = l.invoice_id WHERE {OCTOBER} GROUP BY l.currency, l.kind"
        )
    )
    assert lines == {
        (t["currency"], t["kind"], t["amount_minor"])
        for t in manifest["tables"]["invoice_lines"]["totals"]
    }
    unbalanced = con.execute(
        "SELECT i.invoice_id FROM read_parquet(?) i LEFT JOIN read_parquet(?) l"
        " ON l.invoice_id = i.invoice_id AND NOT l.deleted WHERE NOT i.deleted"
        " GROUP BY i.invoice_id, i.total_minor HAVING i.total_minor <> coalesce(sum(l.amount_minor), 0)",
        [file("invoices"), file("invoice_lines")],
    ).fetchall()
    assert unbalanced == []
    credits = {
        (t["currency"], t["kind"], t["value_minor"])
        for t in manifest["tables"]["credit_entries"]["totals"]
    }
    ledger_credits = world.sql(
        "SELECT g.currency, e.kind, coalesce(sum(e.value_minor), 0) FROM credit_ledger_entries e"
        " JOIN credit_grants g ON g.id = e.grant_id GROUP BY g.currency, e.kind"
    )
    assert credits == set(ledger_credits)
    # Revenue recognized in the month, per currency and category: revrec's.
    recognized: dict[tuple[str, str], int] = defaultdict(int)
    for r in revrec_schedule(MONTH, config=world.config):
        recognized[(r.currency, r.category)] += r.amount_minor
    assert (
        recognized
        and {
            (t["currency"], t["category"]): t["amount_minor"]
            for t in manifest["tables"]["revrec_schedule"]["totals"]
        }
        == recognized
    )
    # fin_resolution (a count meter, one unfiltered price): its days are the lines.
    days: dict[int, Decimal] = defaultdict(Decimal)
    for invoice_id, quantity in con.execute(
        "SELECT invoice_id, sum(quantity) FROM read_parquet(?) WHERE meter = 'fin_resolution'"
        " AND NOT deleted GROUP BY ALL",
        [file("daily_usage")],
    ).fetchall():
        days[invoice_id] = quantity
    billed: dict[int, Decimal] = defaultdict(Decimal)
    for invoice_id, quantity in world.sql(
        "SELECT l.invoice_id, l.quantity FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
        f" WHERE {OCTOBER} AND i.status = 'finalized' AND l.kind = 'usage'"
        " AND l.meter = 'fin_resolution'"
    ):
        billed[invoice_id] += Decimal(quantity)
    assert days and days == {i: q for i, q in billed.items() if q}


def cli(world: World, *args: str) -> tuple[int, str]:
    settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main,
            list(args),
            env={
                "METERLINE_LEDGER_URL": world.config.ledger_url,
                "METERLINE_WAREHOUSE_URL": world.config.warehouse_url,
                "METERLINE_BILLING_GO_LIVE": "2026-11-01",
            },
        )
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


def test_export_ties_to_the_ledger_and_a_merge_follows_void_and_rerate(
    copy_of_month: World, tmp_path: Path
) -> None:
    world = copy_of_month
    lake = tmp_path / "lake"
    ((invoice_id, customer, start, local_start, currency),) = world.sql(
        "SELECT i.id, c.external_id, i.period_start, i.period_start_local, i.currency"
        " FROM invoices i"
        " JOIN customers c ON c.id = i.customer_id JOIN invoice_lines l ON l.invoice_id = i.id"
        f" WHERE {OCTOBER} AND l.kind = 'usage' AND l.meter = 'fin_resolution'"
        " AND l.amount_minor > 0 ORDER BY i.id LIMIT 1"
    )
    # Rows ingested in October and rejected (one longer than a Redshift text holds).
    ingest_events(
        world.warehouse,
        world.meters,
        [
            {
                "event_id": "bad-1",
                "customer_id": customer,
                "meter": "no_such_meter",
                "timestamp": "2026-10-20T10:00:00Z",
            },
            {
                "event_id": "bad-2",
                "customer_id": customer,
                "meter": "no_such_meter",
                "timestamp": "2026-10-20T10:00:00Z",
                "properties": {"note": "x" * 70_000},
            },
        ],
        source="october backfill",
        ingested_at=datetime(2026, 10, 20, 12, tzinfo=UTC),
    )
    # Run 1: the closed month, tied to the ledger and to its manifest.
    first = export_period(MONTH, str(lake), config=world.config)
    manifest = check_files(lake, first)
    check_ties(world, lake, manifest)
    con = duckdb.connect()
    part = lake / f"period={MONTH}"
    ((n, cut, size),) = con.execute(
        "SELECT count(*), max(octet_length(encode(raw_row))), max(raw_bytes) FROM read_parquet(?)",
        [str(part / manifest["tables"]["rejected_events"]["files"][0]["path"])],
    ).fetchall()
    assert n == 2 and cut <= RAW_LIMIT < size
    assert manifest["tables"]["credit_entries"]["rows"] == 0
    assert manifest["tables"]["reconcile_findings"]["rows"] == 0
    assert_merge_is_the_ledger(world, lake, first)

    # Nothing changed: nothing is written.
    again = export_period(MONTH, str(lake), config=world.config)
    assert (again.run, again.unchanged_since) == (None, first.run)
    assert len(manifests(lake)) == 1

    # A late event in the customer's October period, rolled up; the invoice voided: its
    # daily usage leaves the month (tombstones), its period is due without an invoice;
    # a grant taking effect at its start.
    at = max(datetime.fromisoformat(start), datetime(2026, 11, 1)) + timedelta(days=1, hours=3)
    ingest_resolution(
        world, "late-1", customer, at.replace(tzinfo=UTC), ingested_at=AS_OF + timedelta(hours=6)
    )
    rollup_day(at.date(), config=world.config)
    void_invoice(invoice_id, as_of=AS_OF + timedelta(days=1), config=world.config)
    # A credit for the voided period (a grant may pay periods not invoiced), in October.
    grant_one(
        {
            "grant_id": "goodwill",
            "customer_id": customer,
            "kind": "promotional",
            "currency": currency,
            "amount": "5",
            "effective_from": str(local_start),
            "reason": "goodwill",
        },
        by="ops",
        config=world.config,
    )

    voided = export_period(MONTH, str(lake), config=world.config)
    manifest = check_files(lake, voided)
    assert manifest["tables"]["daily_usage"]["deleted_rows"] > 0
    assert manifest["tables"]["reconcile_findings"]["rows"] >= 1  # due without an invoice
    check_ties(world, lake, manifest)
    assert_merge_is_the_ledger(world, lake, voided)

    # Closed again: the period is re-issued with the late event and the grant's credit.
    closed = close_periods(AS_OF + timedelta(days=1), config=world.config)
    assert closed.ok
    rerated = export_period(MONTH, str(lake), config=world.config)
    manifest = check_files(lake, rerated)
    assert manifest["previous_run"] == voided.run
    assert manifest["tables"]["reconcile_findings"]["deleted_rows"] >= 1
    kinds = {t["kind"] for t in manifest["tables"]["credit_entries"]["totals"]}
    assert kinds == {"grant", "consume"}
    check_ties(world, lake, manifest)
    assert_merge_is_the_ledger(world, lake, rerated)
    assert [m["run"] for m in manifests(lake)] == [first.run, voided.run, rerated.run]
    assert (first.run or 0) < (voided.run or 0) < (rerated.run or 0)

    # The command: the same export, unchanged; bad months and destinations.
    code, output = cli(world, "export", "--period", MONTH, "--to", str(lake))
    assert code == 0 and "unchanged since run" in output, output
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args, expected, fragment in (
        (["--period", "2001-01", "--to", str(lake)], 3, "no invoice and no billing period"),
        (["--period", "2026-11", "--to", str(lake)], 2, "is not closed"),
        (["--period", MONTH, "--to", str(blocker / "lake")], 2, "cannot write there"),
        (["--period", MONTH, "--to", "nosuchscheme://bucket/x"], 2, "no file system"),
    ):
        code, output = cli(world, "export", *args)
        errors = [ln for ln in output.splitlines() if "error:" in ln]
        assert code == expected and len(errors) == 1, output
        assert fragment in errors[0] and "Traceback" not in output, output
