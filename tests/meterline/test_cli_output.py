"""Text a person reads from the CLI, piece by piece: the rolled-back ingests rollup and
backfill print, stored descriptions without long trailing zeros, price bodies in words,
prose folded to the console's width. (tests/audit/test_cli_text.py runs the audit
commands' text on a closed month.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner

from meterline.cli import main
from meterline.cli.audit.text import folded, price_body_text
from meterline.jobs.rollup import RollupReport
from meterline.output import plain_numbers
from meterline.settings import settings

DAY = date(2026, 10, 2)


def report(day: date, rolled_back: list[str]) -> RollupReport:
    rebuilt = [{"day": day.isoformat(), "events": 12, "rollup_rows": 3}]
    return RollupReport(day=day, rebuilt=rebuilt, rolled_back_ingests=rolled_back)


@pytest.fixture
def fake_rollup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """rollup_day and backfill replaced by ones that report two interrupted ingests
    rolled back on the first day (the job itself is tested in tests/meters)."""
    import meterline.cli.pipeline as pipeline

    def rollup_day(day: date, **_: Any) -> RollupReport:
        return report(day, ["ing-dead-1", "ing-dead-2"])

    def backfill(first: date, last: date, on_day: Callable[[RollupReport], None]) -> list[Any]:
        reports = [report(first, ["ing-dead-1"]), report(last, [])]
        for one in reports:
            on_day(one)
        return reports

    monkeypatch.setattr(pipeline, "rollup_day", rollup_day)
    monkeypatch.setattr(pipeline, "backfill", backfill)
    settings.cache_clear()
    yield
    settings.cache_clear()


def test_rollup_prints_each_ingest_it_rolled_back(fake_rollup: None) -> None:
    result = CliRunner().invoke(main, ["rollup", "--day", DAY.isoformat(), "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "2026-10-02: 12 events -> 3 rollup rows"
    assert lines[1:] == [
        f"rolled back interrupted ingest {i}: its rows were removed; re-run that ingest"
        " (`meterline ingest` with its files)"
        for i in ("ing-dead-1", "ing-dead-2")
    ]


def test_backfill_prints_each_ingest_it_rolled_back(fake_rollup: None) -> None:
    result = CliRunner().invoke(
        main, ["backfill", "--from", "2026-10-01", "--to", "2026-10-02", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "rolled back interrupted ingest ing-dead-1: its rows were removed; re-run that ingest"
        " (`meterline ingest` with its files)"
    ]


def test_rollup_json_keeps_the_rolled_back_ingests(fake_rollup: None) -> None:
    import json

    result = CliRunner().invoke(main, ["rollup", "--day", DAY.isoformat(), "--json"])
    assert json.loads(result.output)["rolled_back_ingests"] == ["ing-dead-1", "ing-dead-2"]


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        (
            "quantity 1.000000000, per_unit: 1.000000000 × 0.99 = 0.99000000000 → USD 0.99"
            " (rounded half-up)",
            "quantity 1, per_unit: 1 × 0.99 = 0.99 → USD 0.99 (rounded half-up)",
        ),
        (
            "quantity 2,285.000000000, graduated: tier 2: 1,285.000000000 × 0.82 ="
            " 1,973.70000000000 → EUR 1,973.70",
            "quantity 2,285, graduated: tier 2: 1,285 × 0.82 = 1,973.7 → EUR 1,973.70",
        ),
        # Exact values keep every digit; money with its minor unit stays as written.
        ("5.991946309 × 79 = 473.363758411", "5.991946309 × 79 = 473.363758411"),
        ("USD 250.00, KWD 1.500, JPY 3,668", "USD 250.00, KWD 1.500, JPY 3,668"),
        # Not numbers: a version label, an id.
        ("v2026.0000, evt_1.0000", "v2026.0000, evt_1.0000"),
    ],
)
def test_stored_descriptions_lose_only_long_trailing_zeros(stored: str, shown: str) -> None:
    assert plain_numbers(stored) == shown


def test_a_price_body_in_words() -> None:
    body = {
        "currency": "EUR",
        "model": "graduated",
        "tiers": [
            {"up_to": "1000", "unit_amount": "0.92", "flat_amount": "0"},
            {"up_to": "10000", "unit_amount": "0.82", "flat_amount": "5"},
            {"unit_amount": "0.73", "flat_amount": "0"},
        ],
        "free_units": "0",
        "minimum_amount": Decimal("0"),
    }
    assert price_body_text(body, "EUR") == (
        "model graduated, tiers: up to 1,000 at EUR 0.92; up to 10,000 at EUR 0.82 + flat"
        " EUR 5.00; above at EUR 0.73, free_units 0, minimum_amount EUR 0.00"
    )
    assert "{" not in price_body_text({"model": "per_unit", "unit_amount": "79"}, "JPY")
    assert price_body_text({"model": "per_unit", "unit_amount": "79"}, "JPY") == (
        "model per_unit, unit_amount JPY 79"
    )


def test_prose_folds_at_the_width_and_keeps_long_words_whole() -> None:
    path = "/data/deliveries/2026-10-04/late/events-late-and-long-name.parquet"
    line = "  evt_1 ingested 2026-11-04T12:00Z from " + path + " and more words after it"
    parts = folded(line, 40)
    assert all(len(p) <= 40 or path in p for p in parts)
    assert path in parts[1] and parts[1].startswith("    ")
    assert " ".join(p.strip() for p in parts) == line.strip()
    assert folded("short", 40) == ["short"]
