"""The ingest job behind `meterline ingest` and the usage_ingest DAG: a day's delivery
found through METERLINE_DELIVERY_PATH (a folder, a file or a glob; a local path or a
file:// URL), event ages judged against the day's end, and the same verdicts whether it
runs as a command or a task."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import meterline.connections
from meterline.cli import main
from meterline.jobs.ingest import DeliveryNotFound, IngestReport, ingest_delivery
from meterline.settings import settings
from meters.catalog import MeterCatalog
from meters.warehouse.base import Warehouse
from tests.conftest import warehouse_url

DAY = date(2026, 10, 1)
Run = Callable[..., Result]


@pytest.fixture
def run(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Run]:
    """`meterline ARGS` on the test's warehouse with the demo catalog's meters."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METERLINE_WAREHOUSE_URL", warehouse_url(warehouse))
    monkeypatch.setenv("METERLINE_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setattr(meterline.connections, "meter_catalog", lambda config=None: catalog)

    def invoke(*args: str, **env: str) -> Result:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings.cache_clear()
        result = CliRunner().invoke(main, list(args))
        assert "Traceback" not in result.output, result.output
        return result

    yield invoke
    settings.cache_clear()


def event(event_id: str, timestamp: str) -> str:
    return json.dumps(
        {"event_id": event_id, "customer_id": "c1", "meter": "fin_resolution", "timestamp": timestamp}
    ) + "\n"


def stored_ids(wh: Warehouse) -> list[str]:
    return [r[0] for r in wh.query_rows("SELECT event_id FROM usage_events FINAL ORDER BY event_id")]


def test_a_delivery_folder_is_read_recursively_and_judged_against_the_days_end(
    run: Run, warehouse: Warehouse, tmp_path: Path
) -> None:
    folder = tmp_path / "deliveries" / "2026-10-01"
    (folder / "b").mkdir(parents=True)
    # The window is [day's end - 45 days, day's end + 5 minutes]: 2026-08-18 .. 2026-10-02T00:05.
    (folder / "a.jsonl").write_text(
        event("in-1", "2026-10-01T12:00:00Z")
        + event("old-ok", "2026-08-18T00:00:01Z")
        + event("too-old", "2026-08-17T23:59:59Z")
    )
    (folder / "b" / "c.jsonl").write_text(
        event("late-ok", "2026-10-02T00:04:59Z") + event("future", "2026-10-02T00:05:01Z")
    )
    (folder / "notes.txt").write_text("not usage")
    result = run("ingest", "--delivery", "2026-10-01", "--json",
                 METERLINE_DELIVERY_PATH=f"{tmp_path}/deliveries/{{date}}",
                 METERLINE_INGEST_MAX_REJECTED_SHARE="0.5")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["day"], doc["location"]) == ("2026-10-01", f"{tmp_path}/deliveries/2026-10-01")
    assert doc["accepted_window"] == ["2026-08-18T00:00:00+00:00", "2026-10-02T00:05:00+00:00"]
    assert sorted(doc["sources"]) == [str(folder / "a.jsonl"), str(folder / "b" / "c.jsonl")]
    assert doc["rejected_by_reason"] == {"timestamp_in_future": 1, "timestamp_too_old": 1}
    assert stored_ids(warehouse) == ["in-1", "late-ok", "old-ok"]


@pytest.mark.parametrize(
    ("template", "files", "read"),
    [
        ("file://{tmp}/d/{date}.jsonl", ["2026-10-01.jsonl", "2026-10-02.jsonl"], ["2026-10-01.jsonl"]),
        ("{tmp}/d/{year}/{month}/{day}/*.jsonl", ["2026/10/01/x.jsonl", "2026/10/01/y.csv", "2026/10/02/z.jsonl"],
         ["2026/10/01/x.jsonl"]),
        ("file://{tmp}/d/{date}", ["2026-10-01/p.jsonl", "2026-10-01/q/r.jsonl", "2026-10-02/s.jsonl"],
         ["2026-10-01/p.jsonl", "2026-10-01/q/r.jsonl"]),
    ],
    ids=["file-url", "glob", "folder-url"],
)
def test_a_delivery_is_a_file_a_glob_or_a_folder(
    run: Run, warehouse: Warehouse, tmp_path: Path, template: str, files: list[str], read: list[str]
) -> None:
    for name in files:
        path = tmp_path / "d" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".csv":
            path.write_text(f"event_id,customer_id,meter,timestamp\n{name},c1,fin_resolution,2026-10-01T01:00:00Z\n")
        else:
            path.write_text(event(name, "2026-10-01T01:00:00Z"))
    settings.cache_clear()
    config = settings().model_copy(update={"delivery_path": template.format(tmp=tmp_path, date="{date}",
                                                                           year="{year}", month="{month}", day="{day}")})
    report = ingest_delivery(DAY, config=config)
    assert isinstance(report, IngestReport) and report.failure() is None
    assert sorted(report.summary.sources) == [str(tmp_path / "d" / name) for name in read]
    assert stored_ids(warehouse) == sorted(read)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "no delivery there (yet)"),
        (lambda root: (root / "2026-10-01").mkdir(parents=True), "the delivery holds no usage files"),
    ],
    ids=["missing", "empty"],
)
def test_a_delivery_that_is_not_there_is_refused(
    run: Run, warehouse: Warehouse, tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    make(tmp_path / "deliveries")
    env = {"METERLINE_DELIVERY_PATH": f"{tmp_path}/deliveries/{{date}}"}
    result = run("ingest", "--delivery", "2026-10-01", **env)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"meterline: error: {tmp_path}/deliveries/2026-10-01: {message}")
    with pytest.raises(DeliveryNotFound):
        ingest_delivery(DAY)
    assert stored_ids(warehouse) == []


def test_paths_or_a_delivery_not_both(run: Run, tmp_path: Path) -> None:
    for args in (["ingest"], ["ingest", str(tmp_path), "--delivery", "2026-10-01"]):
        result = run(*args)
        assert result.exit_code == 2 and "give PATHS or --delivery DAY" in result.stderr


def test_the_verdicts_are_the_commands_exit_codes(run: Run, warehouse: Warehouse, tmp_path: Path) -> None:
    """What fails a scheduled run (report.failure) is what makes the command exit 1 or 2."""
    folder = tmp_path / "deliveries" / "2026-10-01"
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text(event("x", "2026-10-01T01:00:00Z") + '{"not": "an event"}\n')
    env = {"METERLINE_DELIVERY_PATH": f"{tmp_path}/deliveries/{{date}}"}
    result = run("ingest", "--delivery", "2026-10-01", **env)
    assert result.exit_code == 1 and "1 of 2 rows were rejected (50.0%)" in result.stderr
    report = ingest_delivery(DAY)
    failure = report.failure()
    assert failure is not None and failure.startswith("1 of 2 rows were rejected (50.0%), more than")
    assert failure.endswith(f"see them with: meterline rejected --ingest {report.ingest_id}")

    (folder / "broken.parquet").write_bytes(b"PAR1 not really")
    result = run("ingest", "--delivery", "2026-10-01", METERLINE_INGEST_MAX_REJECTED_SHARE="1")
    assert result.exit_code == 2 and f"{folder / 'broken.parquet'}: not a readable Parquet file" in result.stderr
    settings.cache_clear()
    failure = ingest_delivery(DAY).failure()
    assert failure is not None and failure.startswith(f"{folder / 'broken.parquet'}: not a readable Parquet file")
