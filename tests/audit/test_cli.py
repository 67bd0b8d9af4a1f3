"""The audit commands through `meterline` itself (click's CliRunner), configured by the
environment as a person or a DAG task would run them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from meterline.cli import main
from meterline.settings import settings
from tests.audit.conftest import AS_OF, START, World

# The audit on chDB only: its month is built once per worker for each backend (60-130 s
# each), and the server backend differs in transport only (the same engine runs the same
# SQL), proved by the warehouse tests (tests/meters, tests/production) on both.
pytestmark = pytest.mark.single_warehouse


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def point_at(world: World) -> World:
        monkeypatch.setenv("METERLINE_WAREHOUSE_URL", world.config.warehouse_url)
        monkeypatch.setenv("METERLINE_LEDGER_URL", world.config.ledger_url)
        monkeypatch.setenv("METERLINE_BILLING_GO_LIVE", START.isoformat())
        settings.cache_clear()
        return world

    yield point_at
    settings.cache_clear()


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_explain_reconcile_rerate(month: World, use, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    use(month)
    ((line_id,),) = month.sql(
        "SELECT id FROM invoice_lines WHERE kind = 'usage' AND meter = 'seats'"
        " AND CAST(quantity AS REAL) > 0 ORDER BY id LIMIT 1"
    )
    text = run("audit", "explain", str(line_id))
    assert text.exit_code == 0, text.output
    for part in (
        "time_weighted of seats",
        "level seat_type=",
        "raw events (usage_events FINAL)",
        "rollup:",
        "recomputed from raw events",
        "->  AGREES",
        "sample events: ",
    ):
        assert part in text.output, part
    doc = json.loads(run("audit", "explain", str(line_id), "--json").output)
    assert doc["line"]["id"] == line_id and doc["status"] == "agrees"

    ok = run("audit", "reconcile", "--period", "2026-11")
    assert ok.exit_code == 0 and "RECONCILED" in ok.output and "NOT" not in ok.output
    assert "raw events -> rollup -> rated -> posted" in ok.output
    after_close = json.loads(
        run("audit", "reconcile", "--as-of", AS_OF.isoformat(), "--json").output
    )
    assert after_close["ok"] and [m["period"] for m in after_close["months"]] == [
        "2026-10",
        "2026-11",
    ]

    dry = run("audit", "rerate", "--period", "2026-11")
    assert dry.exit_code == 0 and "0 differ" in dry.output and "dry run" in dry.output

    ((customer,),) = month.sql("SELECT external_id FROM customers ORDER BY id LIMIT 1")
    page = tmp_path / "statement.html"
    wrote = run("statement", "--customer", customer, "--period", "2026-11", "--out", str(page))
    assert wrote.exit_code == 0 and page.read_text().startswith("<!DOCTYPE html>")

    missing = CliRunner().invoke(main, ["audit", "explain", "999999"])
    assert missing.exit_code == 3 and "no invoice line 999999" in missing.output
    bad = CliRunner().invoke(main, ["audit", "reconcile", "--period", "2026-13"])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output


def test_reconcile_exits_1_when_the_books_do_not_balance(  # type: ignore[no-untyped-def]
    copy_of_month: World, use, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = use(copy_of_month)
    world.warehouse.command(
        "ALTER TABLE usage_rollup UPDATE value_sum = value_sum + 1"
        " WHERE meter = 'fin_resolution' AND customer_id = (SELECT min(customer_id) FROM usage_rollup"
        " WHERE meter = 'fin_resolution') SETTINGS mutations_sync = 2"
    )
    result = run("audit", "reconcile", "--period", "2026-11")
    assert result.exit_code == 1
    assert "NOT RECONCILED" in result.output
    doc = json.loads(run("audit", "reconcile", "--period", "2026-11", "--json").output)
    failing = [f for f in doc["findings"] if f["fails"]]
    assert failing and {f["check"] for f in failing} <= {
        "rollup_vs_raw",
        "quantity_rollup_vs_raw",
    }
    assert all(f["severity"] == "error" and f["acknowledged"] is None for f in failing)
    # The table lists each finding by its whole id, within 80 columns off a terminal...
    for f in failing:
        (row,) = [ln for ln in result.output.splitlines() if f["id"] in ln]
        assert len(row) <= 80 and "FAILS" in row
    # ...and on a wide one, one line each: id, severity, status, check, where, detail.
    monkeypatch.setenv("COLUMNS", "250")
    wide = run("audit", "reconcile", "--period", "2026-11").output
    for f in failing:
        row = next(ln for ln in wide.splitlines() if f["id"] in ln)
        assert row.split()[:4] == [f["id"], "error", "FAILS", f["check"]]
        assert f["detail"] in row
    monkeypatch.delenv("COLUMNS")

    # A person acknowledges them: listed as acknowledged, and the run passes.
    for f in failing:
        ack = run(
            "audit",
            "acknowledge",
            f["id"],
            "--period",
            "2026-11",
            "--reason",
            "rollup test",
            "--by",
            "auditor",
        )
        assert ack.exit_code == 0 and f"acknowledged {f['id']} (error {f['check']}" in ack.output
        assert "by auditor" in ack.output
    monkeypatch.setenv("COLUMNS", "250")
    again = run("audit", "reconcile", "--period", "2026-11")
    assert again.exit_code == 0 and "RECONCILED" in again.output and "NOT" not in again.output
    assert again.output.count("acknowledged by auditor") == len(failing)
    monkeypatch.delenv("COLUMNS")
    doc = json.loads(run("audit", "reconcile", "--period", "2026-11", "--json").output)
    assert doc["counts"]["acknowledged"] == len(failing)
    assert [f["acknowledged"]["reason"] for f in doc["findings"] if f["acknowledged"]] == [
        "rollup test"
    ] * len(failing)

    bad = CliRunner().invoke(main, ["audit", "acknowledge", "f-xyz", "--reason", "x"])
    assert bad.exit_code == 2 and "is not a finding id" in bad.output
    empty = CliRunner().invoke(main, ["audit", "acknowledge", failing[0]["id"], "--reason", " "])
    assert empty.exit_code == 2 and "must say why" in empty.output
    # An id this month's reconcile does not list is not found, and nothing is recorded.
    unknown = CliRunner().invoke(
        main, ["audit", "acknowledge", "f-0123456789ab", "--period", "2026-11", "--reason", "x"]
    )
    assert unknown.exit_code == 3 and "no finding f-0123456789ab in the reconcile of 2026-11" in (
        unknown.output
    )
    unscoped = CliRunner().invoke(main, ["audit", "acknowledge", failing[0]["id"], "--reason", "x"])
    assert unscoped.exit_code == 2 and "give --period YYYY-MM or --as-of TIME" in unscoped.output
