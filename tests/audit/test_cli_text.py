"""The audit commands' text and `invoices show` on a closed month, for a person: no
Python objects, no quantities with long trailing zeros, money through the one money
formatter, no line wider than the console (80 columns off a terminal) or 100 columns,
whatever the line (usage, seats, flat fees, discounts, minimums, adjustments)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from meterline.cli import main
from meterline.settings import settings
from tests.audit.conftest import START, World

# A number with 4 or more decimal places that ends in 0: a stored quantity shown raw.
LONG_ZEROS = re.compile(r"(?<![\w.])\d[\d,]*\.\d{3,}0(?![\d\w])")
# Python's own spellings of objects: a dict or list repr, a Decimal, None.
PYTHON = re.compile(r"\{'|\['|Decimal\(|\bNone\b")
# Money in a line's amount: a currency code, then grouped digits.
UNGROUPED = re.compile(r"\b[A-Z]{3} -?\d{4,}(?![\d-])")

# What a person reads does not depend on the warehouse backend (test_reconcile runs the
# month on both).
pytestmark = pytest.mark.single_warehouse


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def point_at(world: World, columns: int = 80) -> World:
        monkeypatch.setenv("METERLINE_WAREHOUSE_URL", world.config.warehouse_url)
        monkeypatch.setenv("METERLINE_LEDGER_URL", world.config.ledger_url)
        monkeypatch.setenv("METERLINE_BILLING_GO_LIVE", START.isoformat())
        monkeypatch.setenv("COLUMNS", str(columns))
        settings.cache_clear()
        return world

    yield point_at
    settings.cache_clear()


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return result


def readable(text: str, width: int) -> None:
    """The rules of the module docstring, line by line. A line may exceed the width
    only by one word that is longer than the width itself (a file path, an id)."""
    for line in text.splitlines():
        assert not PYTHON.search(line), line
        assert not LONG_ZEROS.search(line), line
        assert not UNGROUPED.search(line), line
        if len(line) > width:
            longest = max(line.split(), key=len)
            assert len(longest) > width - 8, f"{len(line)} > {width}: {line}"


def kinds(world: World) -> dict[str, int]:
    """One line id per kind of line (and per meter for usage)."""
    rows = world.sql(
        "SELECT min(id), kind, coalesce(meter, '') FROM invoice_lines GROUP BY kind, meter"
    )
    return {f"{kind} {meter}".strip(): int(line_id) for line_id, kind, meter in rows}


@pytest.mark.parametrize("columns", [80, 250])
def test_explain_of_every_kind_of_line_is_readable(month: World, use, columns: int) -> None:  # type: ignore[no-untyped-def]
    use(month, columns)
    found = kinds(month)
    assert {"usage fin_resolution", "usage seats"} <= set(found), found
    for kind, line_id in found.items():
        text = run("audit", "explain", str(line_id)).output
        assert f"line {line_id}: " in text, kind
        readable(text, min(columns, 100))
    seats = run("audit", "explain", str(found["usage seats"])).output
    assert "× EUR" in seats or "× USD" in seats or "× GBP" in seats, seats


@pytest.mark.parametrize("columns", [80, 250])
def test_invoices_show_is_readable(month: World, use, columns: int) -> None:  # type: ignore[no-untyped-def]
    use(month, columns)
    invoices = [int(i) for (i,) in month.sql("SELECT id FROM invoices ORDER BY id")]
    assert invoices
    for invoice_id in invoices:
        text = run("invoices", "show", str(invoice_id)).output
        assert "total " in text and "how each line was computed:" in text
        readable(text, columns)
        # The version by its effective date, never its whole hash id.
        assert not re.search(r"@\d{4}-\d{2}-\d{2}#", text), text


def test_rerate_of_a_month_that_differs_is_readable(copy_of_month: World, use) -> None:  # type: ignore[no-untyped-def]
    world = use(copy_of_month)
    world.warehouse.command(
        "ALTER TABLE usage_events DELETE WHERE meter = 'fin_resolution' AND customer_id ="
        " (SELECT min(customer_id) FROM usage_events WHERE meter = 'fin_resolution')"
        " SETTINGS mutations_sync = 2"
    )
    text = run("audit", "rerate", "--period", "2026-11").output
    assert "dry run" in text and " 0 differ" not in text, text
    assert "the lines that differ: quantity and amount billed → re-rated" in text
    readable(text, 80)
    assert re.search(r"\d → \d", text), text  # quantities and amounts, billed → re-rated
