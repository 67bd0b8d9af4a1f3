"""Ingestion accounting on messy generated data: counts match what the generator injected."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from meterline.demo.synthetic import GeneratorConfig, Manifest, generate
from meters.catalog import MeterCatalog
from meters.ingest.ingestor import IngestSummary, ingest_files
from meters.warehouse.base import Warehouse
from tests.conftest import fresh_warehouse

START = date(2026, 10, 1)
DAYS = 10
AS_OF = datetime(2026, 10, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module", params=["parquet", "jsonl"])
def generated(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    chdb_folder: Path,
    catalog: MeterCatalog,
) -> Iterator[tuple[Path, Manifest, Warehouse, IngestSummary, IngestSummary]]:
    out = tmp_path_factory.mktemp(f"gen_{request.param}")
    manifest = generate(
        GeneratorConfig(
            customers=60, start=START, days=DAYS, seed=11, out=out,
            duplicates=0.02, late=0.01, malformed=0.01, format=request.param,
        )
    )
    with fresh_warehouse(chdb_folder) as wh:
        daily = ingest_files(wh, catalog, [out / f for f in manifest.files], ingested_at=AS_OF)
        late = ingest_files(
            wh, catalog, [out / f for f in manifest.late_files], ingested_at=AS_OF + timedelta(days=2)
        )
        yield out, manifest, wh, daily, late


def test_daily_files_accounting_matches_the_generator(generated) -> None:  # type: ignore[no-untyped-def]
    _out, manifest, _wh, daily, _late = generated
    d = manifest.daily
    total = daily.total
    assert total.received == d.rows
    assert total.accepted == d.valid_events
    assert total.duplicates == d.exact_duplicates
    assert total.rejected == sum(d.malformed.values()) + d.conflicting_duplicates
    expected_reasons = {r: n for r, n in d.malformed.items() if n}
    expected_reasons["conflicting_duplicate"] = d.conflicting_duplicates
    assert total.rejected_by_reason == expected_reasons
    assert total.balanced
    assert d.conflicting_duplicates > 0 and d.exact_duplicates > 0 and all(d.malformed.values())


def test_late_file_accounting(generated) -> None:  # type: ignore[no-untyped-def]
    _out, manifest, _wh, _daily, late = generated
    total = late.total
    assert total.received == manifest.late.rows
    assert total.accepted == manifest.late.valid_events
    assert total.duplicates == manifest.late.exact_duplicates
    assert total.balanced


def test_stored_events_equal_the_truth_per_customer(generated) -> None:  # type: ignore[no-untyped-def]
    out, _manifest, wh, _daily, _late = generated
    truth = pq.read_table(out / "truth.parquet").to_pylist()
    stored = {
        (c, m): (int(n), Decimal(s))
        for c, m, n, s in wh.query_rows(
            "SELECT customer_id, meter, count(), toString(sum(value)) FROM usage_events FINAL GROUP BY customer_id, meter"
        )
    }
    expected = {
        (t["customer_id"], t["meter"]): (
            t["events"] + t["late_events"],
            Decimal(t["value_sum"]) + Decimal(t["late_value_sum"]),
        )
        for t in truth
    }
    assert stored == expected


def test_warehouse_tables_agree_with_the_summary(generated) -> None:  # type: ignore[no-untyped-def]
    _out, _manifest, wh, daily, late = generated
    accepted = daily.total.accepted + late.total.accepted
    rejected = daily.total.rejected + late.total.rejected
    assert wh.query_rows("SELECT count() FROM usage_events")[0][0] == accepted
    assert wh.query_rows("SELECT uniqExact(event_id) FROM usage_event_ids")[0][0] == accepted
    assert wh.query_rows("SELECT count() FROM usage_events_rejected")[0][0] == rejected
