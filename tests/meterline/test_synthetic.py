"""The synthetic usage generator: determinism, exact manifest, realistic shape, CLI.

The manifest is checked against an independent re-reading of the files: every row is
classified here (malformed reason, first copy, exact or conflicting re-send) without
using the generator's own bookkeeping.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from meterline.cli.generate import generate as generate_command
from meterline.demo.synthetic import (
    EVENT_COLUMNS,
    MALFORMED_REASONS,
    GeneratorConfig,
    Manifest,
    generate,
    read_customers,
)

ROOT = Path(__file__).resolve().parents[2]
CATALOG = yaml.safe_load((ROOT / "catalog" / "intercom.yaml").read_text())
ALLOWED_PROPERTIES = {m["name"]: m["properties"] for m in CATALOG["meters"]}
PLAN_SEAT_TYPES = {
    plan["id"]: {p["filter"]["seat_type"] for p in plan["prices"] if p.get("meter") == "seats"}
    for plan in CATALOG["plans"]
}
START = date(2026, 10, 1)
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _config(out: Path, **overrides: Any) -> GeneratorConfig:
    values: dict[str, Any] = {"customers": 120, "start": START, "days": 4, "seed": 11, "out": out}
    values.update(overrides)
    return GeneratorConfig(**values)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        assert table.schema.names == list(EVENT_COLUMNS)
        assert all(str(t) == "string" for t in table.schema.types)
        return table.to_pylist()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _parse_ts(text: Any) -> datetime | None:
    if not isinstance(text, str) or not TS_RE.match(text):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _properties(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return raw


def _classify(row: dict[str, Any], customers: set[str], days: int) -> str | None:
    """The rejection reason of a row, judged independently of the generator; None if valid."""
    event_id, customer, meter = row.get("event_id"), row.get("customer_id"), row.get("meter")
    if not event_id or not customer or not meter:
        return "missing_field"
    if len(event_id) > 128 or not event_id.isprintable():
        return "bad_event_id"
    moment = _parse_ts(row.get("timestamp"))
    if moment is None:
        return "bad_timestamp"
    range_start = datetime.combine(START, datetime.min.time(), UTC)
    if moment < range_start - timedelta(days=60):
        return "timestamp_too_old"
    if moment > range_start + timedelta(days=days + 60):
        return "timestamp_in_future"
    if meter not in ALLOWED_PROPERTIES:
        return "unknown_meter"
    try:
        value = Decimal(row.get("value"))  # type: ignore[arg-type]
    except (InvalidOperation, TypeError):
        return "non_numeric_value"
    if value < 0:
        return "negative_value"
    props = _properties(row.get("properties"))
    allowed = ALLOWED_PROPERTIES[meter]
    if not isinstance(props, dict) or any(
        key not in allowed or val not in allowed[key] for key, val in props.items()
    ):
        return "bad_properties"
    assert customer in customers, row
    return None


def _content(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["customer_id"],
        row["meter"],
        row["timestamp"],
        row["value"],
        json.dumps(_properties(row["properties"]), sort_keys=True),
    )


def _recount(out: Path, manifest: Manifest) -> dict[str, Any]:
    """Counts of the daily and late files, read in file order."""
    customers = {c["customer_id"] for c in read_customers(out)}
    first: dict[str, tuple[Any, ...]] = {}
    first_file: dict[str, str] = {}
    per_file: dict[str, dict[str, Any]] = {}
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for rel in manifest.files:
        stats: dict[str, Any] = {"rows": 0, "valid": 0, "exact": 0, "conflict": 0}
        malformed: Counter[str] = Counter()
        day = date.fromisoformat(Path(rel).stem)
        for row in _read_rows(out / rel):
            stats["rows"] += 1
            reason = _classify(row, customers, manifest.days)
            if reason:
                malformed[reason] += 1
                continue
            event_id = row["event_id"]
            if event_id in first:
                stats["exact" if first[event_id] == _content(row) else "conflict"] += 1
                continue
            first[event_id] = _content(row)
            first_file[event_id] = rel
            stats["valid"] += 1
            # A first copy lies inside its file's UTC day.
            assert _parse_ts(row["timestamp"]).date() == day, (rel, row)  # type: ignore[union-attr]
            total = totals[(row["customer_id"], row["meter"])]
            total[0] += 1
            total[1] += int(row["value"])
        stats["malformed"] = malformed
        per_file[rel] = stats

    late: dict[str, Any] = {"rows": 0, "valid": 0, "exact": 0, "conflict": 0}
    late_malformed: Counter[str] = Counter()
    for rel in manifest.late_files:
        for row in _read_rows(out / rel):
            late["rows"] += 1
            reason = _classify(row, customers, manifest.days)
            if reason:
                late_malformed[reason] += 1
                continue
            if row["event_id"] in first:
                same = first[row["event_id"]] == _content(row)
                late["exact" if same else "conflict"] += 1
                continue
            first[row["event_id"]] = _content(row)
            late["valid"] += 1
            total = totals[(row["customer_id"], row["meter"])]
            total[2] += 1
            total[3] += int(row["value"])
    late["malformed"] = late_malformed
    return {"files": per_file, "late": late, "totals": totals, "first_file": first_file}


def _assert_counts(
    section: Any, rows: int, valid: int, exact: int, conflict: int, bad: Counter[str]
) -> None:
    assert section.rows == rows
    assert section.valid_events == valid
    assert section.exact_duplicates == exact
    assert section.conflicting_duplicates == conflict
    assert section.malformed == {r: bad.get(r, 0) for r in MALFORMED_REASONS}


@pytest.mark.parametrize("file_format", ["parquet", "jsonl"])
def test_manifest_matches_the_files_exactly(tmp_path: Path, file_format: str) -> None:
    cfg = _config(tmp_path, duplicates=0.05, late=0.04, malformed=0.01, format=file_format, days=5)
    returned = generate(cfg)
    manifest = Manifest.read(tmp_path)
    assert manifest.to_dict() == returned.to_dict()
    ext = "parquet" if file_format == "parquet" else "jsonl"
    assert manifest.files == [f"events/{START + timedelta(days=d)}.{ext}" for d in range(cfg.days)]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "events").iterdir()) == (
        manifest.files
    )
    assert manifest.late_files == [f"late/events-late.{ext}"]

    found = _recount(tmp_path, manifest)
    all_bad: Counter[str] = Counter()
    rows = valid = exact = conflict = 0
    for rel, stats in found["files"].items():
        _assert_counts(
            manifest.file_stats[rel],
            stats["rows"],
            stats["valid"],
            stats["exact"],
            stats["conflict"],
            stats["malformed"],
        )
        rows += stats["rows"]
        valid += stats["valid"]
        exact += stats["exact"]
        conflict += stats["conflict"]
        all_bad += stats["malformed"]
    _assert_counts(manifest.daily, rows, valid, exact, conflict, all_bad)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert (doc["rows_written"], doc["valid_events"]) == (rows, valid)
    assert (doc["exact_duplicates"], doc["conflicting_duplicates"]) == (exact, conflict)

    late = found["late"]
    _assert_counts(
        manifest.late, late["rows"], late["valid"], late["exact"], late["conflict"],
        late["malformed"],
    )  # fmt: skip

    # The messiness actually happened, in the proportions asked for.
    assert exact > 0 and conflict > 0 and late["valid"] > 0 and late["exact"] > 0
    assert conflict == max(1, round(exact / 10))
    total_valid = valid + late["valid"]
    assert abs(exact - 0.05 * total_valid) <= 1
    assert abs(late["valid"] - 0.04 * total_valid) <= 1

    # Totals by meter and per customer (truth.parquet).
    by_meter: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (_, meter), t in found["totals"].items():
        by_meter[meter] = [a + b for a, b in zip(by_meter[meter], t, strict=True)]
    for meter, total in manifest.daily.totals_by_meter.items():
        assert [total.events, total.value_sum] == by_meter[meter][:2]
    for meter, total in manifest.late.totals_by_meter.items():
        assert [total.events, total.value_sum] == by_meter[meter][2:]
    assert set(doc["totals_by_meter"]) == {"fin_resolution", "seats"}
    assert doc["totals_by_meter"]["fin_resolution"]["value_sum"] == str(
        by_meter["fin_resolution"][1]
    )
    truth = {
        (r["customer_id"], r["meter"]): [
            r["events"],
            int(r["value_sum"]),
            r["late_events"],
            int(r["late_value_sum"]),
        ]
        for r in pq.read_table(tmp_path / manifest.truth_file).to_pylist()
    }
    assert truth == dict(found["totals"])


def test_every_malformed_reason_appears_with_one_defect_each(tmp_path: Path) -> None:
    manifest = generate(_config(tmp_path, customers=20, days=2, malformed=0.0001))
    counts = manifest.daily.malformed
    assert set(counts) == set(MALFORMED_REASONS)
    assert all(n >= 1 for n in counts.values())
    assert max(counts.values()) - min(counts.values()) <= 1  # spread evenly
    found = _recount(tmp_path, manifest)
    recounted: Counter[str] = Counter()
    for stats in found["files"].values():
        recounted += stats["malformed"]
    assert dict(recounted) == counts

    # Malformed ids are unique and not used by any valid event.
    ids = [
        row.get("event_id")
        for rel in manifest.files
        for row in _read_rows(tmp_path / rel)
        if _classify(row, {c["customer_id"] for c in read_customers(tmp_path)}, 2)
    ]
    present = [i for i in ids if i]
    assert len(present) == len(set(present))
    assert not set(present) & set(found["first_file"])


def test_no_messiness_by_default(tmp_path: Path) -> None:
    manifest = generate(_config(tmp_path, days=2))
    assert manifest.late_files == []
    assert manifest.daily.rows == manifest.daily.valid_events > 0
    assert manifest.daily.exact_duplicates == manifest.daily.conflicting_duplicates == 0
    assert sum(manifest.daily.malformed.values()) == 0
    assert not (tmp_path / "late").exists()


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    def files(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    kwargs: dict[str, Any] = {"duplicates": 0.03, "late": 0.02, "malformed": 0.01}
    generate(_config(tmp_path / "a", **kwargs))
    generate(_config(tmp_path / "b", **kwargs))
    generate(_config(tmp_path / "c", seed=12, **kwargs))
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert a == b
    assert set(a) == set(c)
    for rel in a:
        if rel.startswith(("events/", "late/")) or rel == "customers.jsonl":
            assert a[rel] != c[rel], rel


def test_messiness_does_not_change_the_valid_events(tmp_path: Path) -> None:
    clean = generate(_config(tmp_path / "clean"))
    messy = generate(_config(tmp_path / "messy", duplicates=0.05, malformed=0.02))
    assert clean.daily.totals_by_meter == messy.daily.totals_by_meter
    assert (tmp_path / "clean" / "customers.jsonl").read_bytes() == (
        tmp_path / "messy" / "customers.jsonl"
    ).read_bytes()


def test_late_events_are_absent_from_daily_files(tmp_path: Path) -> None:
    manifest = generate(_config(tmp_path, late=0.1))
    daily = {row["event_id"]: row for rel in manifest.files for row in _read_rows(tmp_path / rel)}
    late_rows = _read_rows(tmp_path / manifest.late_files[0])
    moved = [r for r in late_rows if r["event_id"] not in daily]
    resent = [r for r in late_rows if r["event_id"] in daily]
    assert len(moved) == manifest.late.valid_events > 0
    assert len(resent) == manifest.late.exact_duplicates > 0
    assert all(_content(daily[r["event_id"]]) == _content(r) for r in resent)
    start = datetime.combine(START, datetime.min.time(), UTC)
    for row in late_rows:
        moment = _parse_ts(row["timestamp"])
        assert moment is not None and start <= moment < start + timedelta(days=manifest.days)
    # Nothing was lost: daily + moved = the events of a run without late arrivals.
    full = generate(_config(tmp_path / "full"))
    assert manifest.daily.valid_events + manifest.late.valid_events == full.daily.valid_events


def test_duplicates_come_after_their_original_some_in_the_next_file(tmp_path: Path) -> None:
    manifest = generate(_config(tmp_path, duplicates=0.1))
    seen_in: dict[str, int] = {}
    same_file = next_file = 0
    for index, rel in enumerate(manifest.files):
        for row in _read_rows(tmp_path / rel):
            if row["event_id"] in seen_in:
                if seen_in[row["event_id"]] == index:
                    same_file += 1
                else:
                    assert seen_in[row["event_id"]] == index - 1
                    next_file += 1
            else:
                seen_in[row["event_id"]] = index
    assert same_file > 0 and next_file > 0
    assert same_file + next_file == (
        manifest.daily.exact_duplicates + manifest.daily.conflicting_duplicates
    )


def test_timestamps_are_iso_with_milliseconds_inside_their_day(tmp_path: Path) -> None:
    manifest = generate(_config(tmp_path, days=3))
    for rel in manifest.files:
        day = date.fromisoformat(Path(rel).stem)
        rows = _read_rows(tmp_path / rel)
        assert rows
        stamps = [r["timestamp"] for r in rows]
        assert all(TS_RE.match(s) for s in stamps)
        assert all(s.startswith(day.isoformat()) for s in stamps)
        assert stamps == sorted(stamps)  # a clean file is in time order
        ids = [r["event_id"] for r in rows]
        assert len(ids) == len(set(ids))
        assert all(re.fullmatch(r"evt_11_\d+", i) for i in ids)


def test_heavy_tail_of_resolutions(tmp_path: Path) -> None:
    generate(_config(tmp_path, customers=500, days=3))
    per_customer = sorted(
        (
            r["events"]
            for r in pq.read_table(tmp_path / "truth.parquet").to_pylist()
            if r["meter"] == "fin_resolution"
        ),
        reverse=True,
    )
    total = sum(per_customer)
    top_share = sum(per_customer[:5]) / total  # top 1% of 500 customers
    assert top_share > 0.2
    median = per_customer[len(per_customer) // 2]
    assert median * 50 < per_customer[0]  # most customers are small, a few are huge


def test_weekends_are_quieter(tmp_path: Path) -> None:
    manifest = generate(_config(tmp_path, customers=300, days=14, start=date(2026, 10, 5)))
    per_day = {}
    for rel in manifest.files:
        day = date.fromisoformat(Path(rel).stem)
        per_day[day] = sum(1 for r in _read_rows(tmp_path / rel) if r["meter"] == "fin_resolution")
    weekend = [n for d, n in per_day.items() if d.weekday() >= 5]
    weekday = [n for d, n in per_day.items() if d.weekday() < 5]
    ratio = (sum(weekend) / len(weekend)) / (sum(weekday) / len(weekday))
    assert 0.3 < ratio < 0.65


def test_daytime_rhythm_in_customer_timezone(tmp_path: Path) -> None:
    generate(_config(tmp_path, customers=300, days=2))
    zones = {c["customer_id"]: c["timezone"] for c in read_customers(tmp_path)}
    hours: Counter[int] = Counter()
    for path in sorted((tmp_path / "events").iterdir()):
        for row in _read_rows(path):
            if row["meter"] == "fin_resolution":
                moment = _parse_ts(row["timestamp"])
                assert moment is not None
                hours[moment.astimezone(ZoneInfo(zones[row["customer_id"]])).hour] += 1
    office = sum(hours[h] for h in range(9, 17))
    night = sum(hours[h] for h in range(0, 8))
    assert office > 3 * night


def test_customers_and_seats(tmp_path: Path) -> None:
    manifest = generate(_config(tmp_path, customers=400, days=10))
    customers = read_customers(tmp_path)
    assert [c["customer_id"] for c in customers] == [f"cus_{i:05d}" for i in range(1, 401)]
    assert all(list(c) == [
        "customer_id", "name", "currency", "timezone", "subscription_id", "plan",
        "billing_anchor_day", "start", "end", "discounts",
    ] for c in customers)  # fmt: skip
    currencies = Counter(c["currency"] for c in customers)
    assert currencies["USD"] > currencies["EUR"] > currencies["GBP"] > 0
    assert all(c["timezone"] == "Europe/London" for c in customers if c["currency"] == "GBP")
    plans = Counter(c["plan"] for c in customers)
    assert plans["standard"] > plans["committed"] > 0 and plans["volume"] > 0
    anchors = Counter(c["billing_anchor_day"] for c in customers)
    assert anchors[1] > len(customers) / 2 and anchors[31] > 0
    assert all(1 <= a <= 28 or a == 31 for a in anchors)
    starts = [date.fromisoformat(c["start"]) for c in customers]
    mid_range = sum(START < s < START + timedelta(days=10) for s in starts)
    assert 0 < mid_range < len(customers) / 5
    discounts = [d for c in customers for d in c["discounts"]]
    assert any(d["percent_off"] == "10" and d["amount_off"] is None for d in discounts)
    assert any(d["amount_off"] == "50" and d["percent_off"] is None for d in discounts)
    assert 0.05 < len(discounts) / len(customers) < 0.2

    # Volume accounts are the largest resolution users.
    fin = {
        r["customer_id"]: r["events"]
        for r in pq.read_table(tmp_path / "truth.parquet").to_pylist()
        if r["meter"] == "fin_resolution"
    }
    volume = [fin.get(c["customer_id"], 0) for c in customers if c["plan"] == "volume"]
    standard = sorted(fin.get(c["customer_id"], 0) for c in customers if c["plan"] == "standard")
    assert min(volume) >= standard[len(standard) // 2]

    # One gauge reading per priced seat type at the start of the range (or of the subscription).
    first_reading: dict[tuple[str, str], str] = {}
    changes: Counter[str] = Counter()
    for rel in manifest.files:
        for row in _read_rows(tmp_path / rel):
            if row["meter"] != "seats":
                continue
            seat_type = json.loads(row["properties"])["seat_type"]
            assert 1 <= int(row["value"]) <= 50
            key = (row["customer_id"], seat_type)
            if key in first_reading:
                changes[row["customer_id"]] += 1
            else:
                first_reading[key] = row["timestamp"]
    by_customer = {c["customer_id"]: c for c in customers}
    for c in customers:
        got = {t for (cus, t) in first_reading if cus == c["customer_id"]}
        assert got == PLAN_SEAT_TYPES[c["plan"]], c
    for (cus, _), stamp in first_reading.items():
        if date.fromisoformat(by_customer[cus]["start"]) <= START:
            assert stamp == "2026-10-01T00:00:00.000Z"
    assert 0.08 < len(changes) / len(customers) < 0.25

    # A customer that starts mid-range has no usage before its first local day.
    for rel in manifest.files:
        for row in _read_rows(tmp_path / rel):
            c = by_customer[row["customer_id"]]
            moment = _parse_ts(row["timestamp"])
            assert moment is not None
            local_day = moment.astimezone(ZoneInfo(c["timezone"])).date()
            assert local_day >= date.fromisoformat(c["start"]), (c, row)


def test_progress_reports_every_row(tmp_path: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    manifest = generate(
        _config(tmp_path, late=0.05, malformed=0.01),
        progress=lambda done, total, current: calls.append((done, total, current)),
    )
    total = manifest.daily.rows + manifest.late.rows
    assert calls[-1][:2] == (total, total)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert {c[2] for c in calls} == {*manifest.files, *manifest.late_files}


def test_events_per_day_scales_the_volume(tmp_path: Path) -> None:
    manifest = generate(_config(tmp_path, customers=50, days=2, events_per_day=30_000))
    fin = manifest.daily.totals_by_meter["fin_resolution"].events
    assert abs(fin - 60_000) < 0.03 * 60_000


def test_refuses_to_mix_with_earlier_output(tmp_path: Path) -> None:
    generate(_config(tmp_path, days=3))
    with pytest.raises(FileExistsError):
        generate(_config(tmp_path, days=2))
    manifest = generate(_config(tmp_path, days=2, overwrite=True))
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [
        Path(f).name for f in manifest.files
    ]


@pytest.mark.parametrize(
    "overrides",
    [{"customers": 0}, {"days": 0}, {"late": 1.5}, {"duplicates": -0.1}, {"format": "csv"}],
)
def test_config_validation(tmp_path: Path, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _config(tmp_path, **overrides)


def test_too_much_messiness_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distinct events"):
        generate(_config(tmp_path, customers=5, days=1, late=0.9, duplicates=0.9))


def test_cli_generate(tmp_path: Path) -> None:
    out = tmp_path / "data"
    args = [
        "--customers", "40", "--start", "2026-10-01", "--days", "3", "--seed", "5",
        "--out", str(out), "--duplicates", "0.02", "--late", "0.02", "--malformed", "0.01",
        "--format", "jsonl", "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(generate_command, args)
    assert result.exit_code == 0, result.output
    manifest = Manifest.read(out)
    assert manifest.seed == 5 and manifest.customers == 40 and manifest.format == "jsonl"
    assert manifest.files == [f"events/2026-10-0{d}.jsonl" for d in (1, 2, 3)]
    assert f"{manifest.daily.rows + manifest.late.rows:,} rows" in result.output
    # JSONL: properties is a JSON object, every other field a string.
    row = json.loads((out / manifest.files[0]).read_text().splitlines()[0])
    assert isinstance(row["properties"], dict)
    assert all(isinstance(row[k], str) for k in EVENT_COLUMNS if k != "properties")

    again = CliRunner().invoke(generate_command, args)
    assert again.exit_code == 1 and "already holds generated data" in again.output
    assert CliRunner().invoke(generate_command, [*args, "--overwrite"]).exit_code == 0

    bad = CliRunner().invoke(generate_command, [*args[:-2], "--late", "2"])
    assert bad.exit_code == 2
