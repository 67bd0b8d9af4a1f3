"""The data-lake sink without a ledger or warehouse (docs/export.md): row versions,
tombstones and the latest-version merge; the manifest; the files written atomically to
a local folder and to another fsspec file system; refused destinations; the closed-month
rule; local days; and the Redshift SQL in docs/export.md being the code's own."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from meterline.jobs.export import ExportReport
from meterline.jobs.export.closed import Expected, MonthInvoice, open_periods
from meterline.jobs.export.usage import UsagePeriod, local_days
from meterline.output import json_text
from meterline.sinks.lake import manifest as mf
from meterline.sinks.lake import redshift
from meterline.sinks.lake.store import (
    LakeUnwritable,
    latest_manifest,
    loaded_rows,
    open_destination,
    part_runs,
    write_run,
)
from meterline.sinks.lake.tables import DAILY_USAGE, INVOICES, TABLES
from meterline.sinks.lake.versions import content_sha256, latest, tombstones, versioned

ROOT = Path(__file__).resolve().parents[2]
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def invoices(*rows: tuple[int, str, int]) -> pa.Table:
    """Invoices (id, status, total_minor) in USD with every other column null."""
    data = {c.name: pa.nulls(len(rows), c.type) for c in INVOICES.columns}
    data["invoice_id"] = pa.array([r[0] for r in rows], pa.int64())
    data["status"] = pa.array([r[1] for r in rows], pa.string())
    data["total_minor"] = pa.array([r[2] for r in rows], pa.int64())
    data["currency"] = pa.array(["USD"] * len(rows), pa.string())
    return pa.table(data)


def state(t: pa.Table) -> set[tuple[object, ...]]:
    return {(r["invoice_id"], r["status"], r["total_minor"]) for r in t.to_pylist()}


def test_versions_tombstones_and_the_latest_version_merge() -> None:
    run1 = versioned(INVOICES, invoices((1, "finalized", 100), (2, "finalized", 200)), "2026-10", 1)
    assert run1.schema == INVOICES.schema
    assert run1.column("row_version").to_pylist() == [1, 1]
    # Run 2: invoice 1 voided, invoice 2 gone (a key the month no longer has), 3 new.
    rows2 = versioned(INVOICES, invoices((1, "void", 100), (3, "finalized", 300)), "2026-10", 2)
    alive = latest(INVOICES, [run1])
    gone = tombstones(INVOICES, alive, rows2, "2026-10", 2)
    assert gone.column("invoice_id").to_pylist() == [2]
    assert gone.column("deleted").to_pylist() == [True]
    assert gone.column("total_minor").null_count == 1
    run2 = pa.concat_tables([rows2, gone])
    merged = {(1, "void", 100), (3, "finalized", 300)}
    assert state(latest(INVOICES, [run1, run2])) == merged
    assert state(latest(INVOICES, [run2, run1])) == merged  # order does not matter
    # A deleted key stays deleted; one that comes back is alive again.
    rows3 = versioned(INVOICES, invoices((2, "finalized", 250)), "2026-10", 3)
    run3 = pa.concat_tables(
        [rows3, tombstones(INVOICES, latest(INVOICES, [run1, run2]), rows3, "2026-10", 3)]
    )
    assert state(latest(INVOICES, [run1, run2, run3])) == {(2, "finalized", 250)}
    # The content digest ignores the version; a key twice is a bug.
    again = versioned(INVOICES, invoices((1, "void", 100), (3, "finalized", 300)), "2026-10", 9)
    assert content_sha256(INVOICES, again) == content_sha256(INVOICES, rows2)
    assert content_sha256(INVOICES, run1) != content_sha256(INVOICES, rows2)
    with pytest.raises(ValueError, match="share a key"):
        versioned(INVOICES, invoices((1, "void", 1), (1, "void", 2)), "2026-10", 1)


def test_money_a_column_cannot_hold_exactly_fails() -> None:
    rows = {c.name: pa.nulls(1, c.type) for c in DAILY_USAGE.columns}
    rows.update(
        subscription_id=pa.array(["s"]),
        day=pa.array([date(2026, 11, 1)]),
        meter=pa.array(["m"]),
        dimensions=pa.array(["{}"]),
    )
    fine = pa.table({**rows, "quantity": pa.array([Decimal("0.123456789")])})
    assert versioned(DAILY_USAGE, fine, "2026-11", 1).column("quantity")[0].as_py() == Decimal(
        "0.123456789"
    )
    finer = pa.table({**rows, "quantity": pa.array([Decimal("0.1234567891")])})
    with pytest.raises(pa.ArrowInvalid):
        versioned(DAILY_USAGE, finer, "2026-11", 1)


@pytest.mark.parametrize("url", ["{tmp}/lake", "memory://meterline-test-lake"])
def test_a_run_is_written_whole_and_a_dead_run_is_ignored(tmp_path: Path, url: str) -> None:
    dest = open_destination(url.format(tmp=tmp_path))
    rows = versioned(INVOICES, invoices((1, "finalized", 100)), "2026-10", 1)

    def manifest_of(written: dict[str, mf.WrittenFile]) -> dict[str, object]:
        return mf.build(
            period="2026-10",
            run=1,
            previous_run=None,
            exported_at="2026-12-05T00:00:00Z",
            as_of=None,
            tables={"invoices": mf.table_entry(INVOICES, rows, [written["invoices"]], "x")},
        )

    manifest, digest = write_run(dest, "2026-10", 1, {"invoices": rows}, manifest_of)
    assert latest_manifest(dest, "2026-10") == manifest
    assert manifest["tables"]["invoices"]["totals"] == [
        {
            "currency": "USD",
            "status": "finalized",
            "subtotal_minor": 0,
            "discount_minor": 0,
            "adjustment_minor": 0,
            "total_minor": 100,
        }
    ]
    folder = dest.period_dir("2026-10")
    names = sorted(p.removeprefix(folder + "/") for p in dest.fs.find(folder))
    assert names == ["invoices/part-000000001.parquet", "manifest-000000001.json"]
    assert len(digest) == 64

    # Run 2 dies after its files are in place, before its manifest: readers still see
    # run 1; the next run counts run 2's rows as loaded (a loader may have seen them).
    def dies(written: dict[str, mf.WrittenFile]) -> dict[str, object]:
        raise RuntimeError("killed")

    rows2 = versioned(INVOICES, invoices((2, "finalized", 5)), "2026-10", 2)
    with pytest.raises(RuntimeError):
        write_run(dest, "2026-10", 2, {"invoices": rows2}, dies)
    assert latest_manifest(dest, "2026-10") == manifest
    assert part_runs(dest, "2026-10", INVOICES) == [1, 2]
    loaded = latest(INVOICES, loaded_rows(dest, "2026-10", INVOICES, since_run=1))
    assert sorted(loaded.column("invoice_id").to_pylist()) == [1, 2]


def test_destinations_that_cannot_be_written_are_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for url, fragment in (
        (str(blocker), "it is a file, not a folder"),
        (str(blocker / "lake"), "cannot write there"),
        ("nosuchscheme://bucket/lake", "no file system for nosuchscheme://"),
        ("  ", "empty URL"),
    ):
        with pytest.raises(LakeUnwritable, match=fragment):
            open_destination(url)


def test_a_manifest_of_another_layout_is_refused() -> None:
    doc = mf.build(
        period="2026-10", run=1, previous_run=None, exported_at="", as_of=None, tables={}
    )
    assert mf.loads(mf.dumps(doc)) == doc
    with pytest.raises(ValueError, match="schema version 2"):
        mf.loads(json.dumps({**doc, "schema_version": 2}).encode())
    with pytest.raises(ValueError, match="not a meterline export manifest"):
        mf.loads(b"{}")


def test_a_month_is_closed_when_no_period_of_it_is_open() -> None:
    grace = timedelta(hours=72)
    end = NOV + timedelta(days=30)

    def expected(n: int) -> Expected:
        return Expected(n, f"sub_{n}", f"cus_{n}", NOV, end)

    def invoice(n: int, status: str) -> MonthInvoice:
        return MonthInvoice(10 + n, n, f"sub_{n}", f"cus_{n}", NOV, end, status)

    subs = [expected(1), expected(2), expected(3)]
    finalized = [invoice(1, "finalized"), invoice(2, "finalized"), invoice(3, "finalized")]
    assert open_periods(subs, finalized, end + grace, grace) == []
    # A draft holds it open, whatever the time.
    held = open_periods(subs, [*finalized[:2], invoice(3, "draft")], end + grace, grace)
    assert [(o.subscription, o.why) for o in held] == [("sub_3", "invoice 13 is a draft")]
    # A period without an invoice: open until it was due at the latest close; after, close
    # could not bill it (reconcile reports it) and the month is closed without it.
    voided = [*finalized[:2], invoice(3, "void")]
    (held_open,) = open_periods(subs, voided, end + grace - timedelta(hours=1), grace)
    assert held_open.why == "not closed yet (due 2026-12-04T00:00:00Z)"
    assert held_open.text() == (
        "sub_3 of cus_3, 2026-11-01T00:00:00Z..2026-12-01T00:00:00Z:"
        " not closed yet (due 2026-12-04T00:00:00Z)"
    )
    assert open_periods(subs, voided, end + grace, grace) == []
    assert len(open_periods(subs, [], None, grace)) == 3


def test_local_days_follow_the_timezone_and_the_period() -> None:
    # New York leaves daylight saving time on 2026-11-01: that day has 25 hours.
    ny = UsagePeriod(
        1, "s", "c", "America/New_York", NOV + timedelta(hours=4), NOV + timedelta(days=3, hours=5)
    )
    days = list(local_days(ny))
    assert [d for d, _, _ in days] == [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]
    assert [(e - s).total_seconds() / 3600 for _, s, e in days] == [25, 24, 24]
    # A period that starts mid-day (a subscription's start) is cut.
    cut = UsagePeriod(1, "s", "c", "UTC", NOV + timedelta(hours=12), NOV + timedelta(days=1))
    assert [(d, s.hour) for d, s, _ in local_days(cut)] == [(date(2026, 11, 1), 12)]


REDSHIFT_RESERVED = {
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "between", "binary",
    "both", "case", "cast", "check", "column", "constraint", "create", "current_date",
    "current_time", "current_timestamp", "current_user", "default", "delta", "desc",
    "distinct", "do", "else", "end", "except", "false", "for", "foreign", "from", "full",
    "grant", "group", "having", "identity", "ignore", "in", "inner", "intersect", "interval",
    "into", "is", "join", "leading", "left", "like", "limit", "new", "not", "null", "nulls",
    "off", "offset", "old", "on", "only", "open", "or", "order", "outer", "partition",
    "percent", "primary", "raw", "references", "right", "select", "similar", "some",
    "system", "table", "tag", "then", "timestamp", "to", "top", "trailing", "true", "union",
    "unique", "user", "using", "when", "where", "with", "without",
}  # fmt: skip


def test_every_column_loads_into_redshift_as_written() -> None:
    for t in TABLES:
        names = [c.name for c in t.frame]
        assert len(names) == len(set(names)), t.name
        assert not set(names) & REDSHIFT_RESERVED, t.name
        assert [f.name for f in t.schema] == names
        assert set(t.key) <= set(names) and set(t.money) <= set(names)
        assert t.key[0] == "period" and names[: len(t.key)] == list(t.key)


def test_the_redshift_sql_in_the_docs_is_the_codes() -> None:
    doc = (ROOT / "docs" / "export.md").read_text()
    for t in TABLES:
        assert redshift.ddl(t) in doc, f"docs/export.md: the DDL of {t.name}"
        assert redshift.merge(t) in doc, f"docs/export.md: the merge of {t.name}"


def test_the_export_report_is_json_for_the_command_line() -> None:
    """`meterline export --json` prints the report through the reports' JSON writer, which
    refuses floats: the run's seconds are decimal text (was an internal error, exit 5)."""
    tables = {"invoices": {"rows": 2, "deleted_rows": 0, "bytes": 10}}
    wrote = ExportReport("2026-10", "lake", 3, None, "lake/m.json", 2.93149, tables)
    assert json.loads(json_text(wrote.to_json()))["seconds"] == "2.931"
    unchanged = ExportReport("2026-10", "lake", None, 3, None, 0.5, {})
    assert json.loads(json_text(unchanged.to_json()))["unchanged_since"] == 3
