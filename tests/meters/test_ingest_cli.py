"""`meterline ingest` and `meterline rejected` as a person or a nightly job runs them
(click's CliRunner, configured by the environment): exit codes from the README's table,
the summary always printed, never a traceback (issue 11 items 8 and 10)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

import meterline.connections
from meterline.cli import main
from meterline.settings import load_settings, settings
from meters.catalog import MeterCatalog
from meters.warehouse.base import Warehouse
from tests.conftest import warehouse_url

AS_OF = "2026-11-25T00:00:00Z"
TS = "2026-11-20T10:00:00Z"
Run = Callable[..., Result]


@pytest.fixture
def run(
    warehouse: Warehouse,
    catalog: MeterCatalog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Run]:
    """Run `meterline ARGS` on the test's warehouse, with settings from `env`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METERLINE_WAREHOUSE_URL", warehouse_url(warehouse))
    monkeypatch.setenv("METERLINE_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    # The meters ingest validates against: the demo catalog's.
    monkeypatch.setattr(meterline.connections, "meter_catalog", lambda config=None: catalog)

    def invoke(*args: str, **env: str) -> Result:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings.cache_clear()
        result = CliRunner().invoke(main, list(args))
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result
        return result

    yield invoke
    settings.cache_clear()


def events(path: Path, good: int, bad: int) -> Path:
    """`good` valid events, then `bad` with an unknown meter, as JSON lines."""
    lines = [
        json.dumps(
            {
                "event_id": f"{path.stem}-{i}",
                "customer_id": "c1",
                "meter": "fin_resolution" if i < good else "fin_resolutoin",
                "timestamp": TS,
            }
        )
        for i in range(good + bad)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("good", "bad", "share", "code", "message"),
    [
        (19, 1, None, 0, None),  # 5% is the default limit: not above it
        (18, 2, None, 1, "2 of 20 rows were rejected (10.0%), more than "),
        (18, 2, "0.1", 0, None),
        (18, 2, "0.05", 1, "METERLINE_INGEST_MAX_REJECTED_SHARE allows (0.05)"),
        (20, 0, "0", 0, None),
        (19, 1, "0", 1, "1 of 20 rows were rejected (5.0%)"),
        (0, 366, "1", 1, "every row was rejected (366 of 366)"),
        (0, 0, None, 0, None),
    ],
)
def test_ingest_exit_code_follows_the_rejected_share(
    run: Run,
    tmp_path: Path,
    good: int,
    bad: int,
    share: str | None,
    code: int,
    message: str | None,
) -> None:
    path = events(tmp_path / "day.jsonl", good, bad)
    env = {"METERLINE_INGEST_MAX_REJECTED_SHARE": share} if share else {}
    result = run("ingest", "--as-of", AS_OF, str(path), **env)
    assert result.exit_code == code, result.output
    # The summary is printed whatever the verdict.
    total = good + bad
    assert f"received {total:,} = accepted {good:,} + duplicates 0 + rejected {bad:,}" in (
        result.stdout
    )
    if message:
        # One error line, as every error (README: exit codes and errors).
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("meterline: error: ") and message in line, line
        assert "meterline rejected --ingest " in line
    else:
        assert result.stderr == ""


def test_a_resent_file_is_all_duplicates_and_exits_0(run: Run, tmp_path: Path) -> None:
    path = events(tmp_path / "day.jsonl", 5, 0)
    assert run("ingest", "--as-of", AS_OF, str(path)).exit_code == 0
    again = run("ingest", "--as-of", AS_OF, str(path))
    assert again.exit_code == 0 and "duplicates 5" in again.stdout


def test_events_too_old_explain_the_limit_and_exit_1(run: Run, tmp_path: Path) -> None:
    path = events(tmp_path / "old.jsonl", 2, 0)
    result = run("ingest", "--as-of", "2027-06-01T00:00:00Z", str(path))
    assert result.exit_code == 1 and "every row was rejected (2 of 2)" in result.stderr
    shown = run("rejected", "--json")
    detail = json.loads(shown.stdout.splitlines()[0])["detail"]
    assert "METERLINE_MAX_EVENT_AGE_DAYS" in detail and "--as-of" in detail
    assert "events from 2027-04-17 00:00:00.000 UTC on" in detail


def test_unreadable_files_exit_2_after_the_others_are_ingested(
    run: Run, tmp_path: Path, warehouse: Warehouse
) -> None:
    first = events(tmp_path / "first.jsonl", 3, 0)
    missing = tmp_path / "missing.jsonl"
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 not really")
    duplicate_column = tmp_path / "two_ids.csv"
    duplicate_column.write_text(f"event_id,customer_id,meter,timestamp,event_id\nx,c1,m,{TS},y\n")
    last = events(tmp_path / "last.jsonl", 2, 0)
    args = [str(p) for p in (first, missing, corrupt, duplicate_column, last)]
    result = run("ingest", "--as-of", AS_OF, *args)
    assert result.exit_code == 2, result.output
    assert "received 5 = accepted 5 + duplicates 0 + rejected 0: balanced" in result.stdout
    errors = result.stderr.splitlines()
    assert len(errors) == 3
    assert errors[0] == f"meterline: error: {missing}: no such file"
    assert errors[1].startswith(f"meterline: error: {corrupt}: not a readable Parquet file (")
    assert errors[2] == (
        f"meterline: error: {duplicate_column}: column event_id appears twice in the header "
        "(line 1) (columns 1 and 5); keep one"
    )
    ((stored,),) = warehouse.query_rows("SELECT count() FROM usage_events")
    assert stored == 5
    # The same as JSON: every file named, with its error.
    doc = json.loads(run("ingest", "--as-of", AS_OF, "--json", *args).stdout)
    assert set(doc["file_errors"]) == {str(missing), str(corrupt), str(duplicate_column)}
    assert doc["duplicates"] == 5


def test_a_folder_without_usage_files_is_refused(run: Run, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing")
    result = run("ingest", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert result.stderr.startswith("meterline: error: ")
    assert "the folder holds no usage files" in result.stderr


def test_rejected_shows_a_broken_csv_line_with_its_line_and_text(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "day.csv"
    lines = ["event_id,customer_id,meter,timestamp"]
    lines += [f"e{i},c1,fin_resolution,{TS}" for i in range(1, 363)]
    lines += ["", 'e363,c1,"fin_resolution,' + TS, f"e364,c1,fin_resolution,{TS}"]
    path.write_text("\n".join(lines) + "\n")
    result = run("ingest", "--as-of", AS_OF, "--json", str(path))
    summary = json.loads(result.stdout)
    assert result.exit_code == 0 and summary["rejected"] == 1 and summary["accepted"] == 363
    shown = run("rejected", "--ingest", summary["ingest_id"], "--json")
    (row,) = [json.loads(line) for line in shown.stdout.splitlines()]
    assert row["line"] == 365 and row["reason"] == "malformed_row"
    assert row["raw"] == 'e363,c1,"fin_resolution,' + TS
    table = run("rejected", "--ingest", summary["ingest_id"])
    assert table.exit_code == 0 and "365" in table.stdout and "malformed_row" in table.stdout


def test_rejected_with_an_unknown_ingest_or_reason(run: Run) -> None:
    unknown = run("rejected", "--ingest", "0123456789abcdef")
    assert unknown.exit_code == 3
    assert unknown.stderr.startswith("meterline: error: no ingest '0123456789abcdef'")
    reason = run("rejected", "--reason", "too_big")
    assert reason.exit_code == 2 and "'too_big' is not a rejection reason" in reason.stderr


def test_rejected_raw_text_with_markup_and_control_characters(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text('[bold]not json[/] \x1b[31m\n["a", "list"]\n')
    run("ingest", "--as-of", AS_OF, str(path))
    # Wide enough that no cell wraps: the point is that markup prints as text.
    table = run("rejected", COLUMNS="200")
    assert table.exit_code == 0
    assert "[bold]not json[/]" in table.stdout and "\\u001b[31m" in table.stdout


def test_the_rejected_share_setting_is_read_exactly() -> None:
    assert load_settings().ingest_max_rejected_share == Decimal("0.05")
    assert load_settings(ingest_max_rejected_share="0.1").ingest_max_rejected_share == Decimal(
        "0.1"
    )
    for bad in ("1.01", "-0.01", "nan", "lots"):
        with pytest.raises(ValueError, match="METERLINE_INGEST_MAX_REJECTED_SHARE"):
            load_settings(ingest_max_rejected_share=bad)


def test_a_parquet_day_with_a_damaged_twin(run: Run, tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(
        pa.table(
            {
                "event_id": ["a", "b"],
                "customer_id": ["c1", "c1"],
                "meter": ["fin_resolution"] * 2,
                "timestamp": [TS, TS],
            }
        ),
        good,
    )
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[:-20])
    result = run("ingest", "--as-of", AS_OF, str(good), str(truncated))
    assert result.exit_code == 2
    assert "accepted 2" in result.stdout
    assert f"meterline: error: {truncated}: not a readable Parquet file" in result.stderr
