"""meterline.output: money, quantities and tables as people read them."""

from __future__ import annotations

import io
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from meterline.output import (
    Column,
    Tracker,
    format_minor,
    format_money,
    format_quantity,
    print_table,
    progress,
)

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "formatting.yaml").read_text())


@pytest.mark.parametrize(("amount", "currency", "text"), CASES["money"])
def test_money(amount: str, currency: str, text: str) -> None:
    assert format_money(Decimal(amount), currency) == text


@pytest.mark.parametrize(("minor", "currency", "text"), CASES["minor"])
def test_money_from_minor_units(minor: int, currency: str, text: str) -> None:
    assert format_minor(minor, currency) == text


@pytest.mark.parametrize(("value", "places", "text"), CASES["quantity"])
def test_quantity(value: str, places: int | None, text: str) -> None:
    assert format_quantity(Decimal(value), places) == text


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        format_money(0.1, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_quantity(0.1)  # type: ignore[arg-type]


def render(width: int, columns: list[Any], rows: list[tuple[str, ...]]) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False, color_system=None)
    print_table(console, columns, rows, title="t")
    return out.getvalue().splitlines()


COLUMNS = [
    Column("invoice", "number"),
    "customer",
    "description",
    Column("quantity", "number"),
    Column("amount", "money"),
    Column("precise", "money"),
]
ROWS = [
    (
        "1042",
        "cus_00017 Globex Corporation International",
        "fin_resolution x 12,226 (volume, tier 2 of 3) for the period 2026-10-01..2026-11-01",
        "12,226",
        "KWD 12,345,678.345",
        "KWD 12,345,678.3449999",
    ),
    ("7", "cus_2", "seats", "≈ 4.19", "JPY 3,668", "JPY 3,667.8"),
]


@pytest.mark.parametrize("width", [80, 100, 120])
def test_a_table_fits_the_width_and_never_cuts_money(width: int) -> None:
    lines = render(width, COLUMNS, ROWS)
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    for money in ("KWD 12,345,678.345", "KWD 12,345,678.3449999", "JPY 3,668", "JPY 3,667.8"):
        assert money in text
    # Text columns fold inside their cell: no word of the description is lost.
    assert "fin_resolution" in text and "International" in text and "2026-10-01.." in text


def test_a_table_too_wide_for_its_money_is_shown_as_blocks() -> None:
    lines = render(40, COLUMNS, ROWS)
    assert all(len(line) <= 40 for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    # One block per row, "header  value" lines; the money whole.
    assert re.search(r"^amount +KWD 12,345,678\.345 *$", text, re.MULTILINE), text
    assert re.search(r"^precise +KWD 12,345,678\.3449999 *$", text, re.MULTILINE), text
    assert re.search(r"^amount +JPY 3,668 *$", text, re.MULTILINE), text


def test_a_narrow_table_is_left_as_it_is() -> None:
    lines = render(80, ["a", Column("b", "money")], [("x", "USD 1.00")])
    assert [line.rstrip() for line in lines] == ["t", "a         b", "─" * 11, "x  USD 1.00"]


def test_progress_off_a_terminal_prints_a_plain_line_only_for_long_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with progress("close: periods", total=3, interactive=False, delay_s=60) as tick:
        tick.advance()
        tick(3, 3, "done")
    assert capsys.readouterr().err == ""  # short work: nothing
    monkeypatch.setattr("meterline.output.PLAIN_EVERY_S", 0.0)
    monkeypatch.setattr("meterline.output.PLAIN_AFTER_S", 0.0)
    with progress("close: periods", total=3, interactive=False, delay_s=0) as tick:
        tick.advance(detail="cus_1")
    err = capsys.readouterr().err
    assert err.startswith("meterline: close: periods: 1 of 3 (cus_1), ")


def test_a_tracker_is_the_callback_a_job_takes() -> None:
    tracker = Tracker("rollup", None)
    tracker(1, None)
    tracker(1, 4)
    tracker.advance(2, "2026-10-03")
    assert (tracker.done, tracker.total, tracker.detail) == (3, 4, "2026-10-03")


def test_json_text_writes_exact_decimals_and_refuses_floats() -> None:
    from dataclasses import dataclass
    from datetime import UTC, datetime

    from meterline.output import FloatInReport, json_text

    @dataclass
    class Line:
        amount: Decimal
        at: datetime

    doc = json_text({"line": Line(Decimal("12.345"), datetime(2026, 10, 1, tzinfo=UTC))})
    assert doc == '{"line": {"amount": "12.345", "at": "2026-10-01T00:00:00+00:00"}}'
    with pytest.raises(FloatInReport, match=r"0\.1"):
        json_text({"nested": [Decimal(1), 0.1]})


def test_a_folding_column_never_breaks_an_id_or_a_timestamp() -> None:
    """`subscriptions changes` broke "2026-10-15T00:00:00Z" after "2026-10-15" and
    `invoices show` "seat_type=advanced" after "adva": a text column is never narrower
    than its longest word (up to 32 cells); only between words does it wrap."""
    timestamps = ["at", "from", "to", "tiers", "direction", "by", "reason", "recorded"]
    change = (
        "2026-10-15T00:00:00Z",
        "starter",
        "pro",
        "restart",
        "downgrade",
        "ana@ops",
        "asked for it after the renewal call",
        "2026-12-01T03:51:37Z",
    )
    invoice = [
        Column("#", "number"),
        "kind",
        "price",
        Column("version", "number"),
        Column("quantity", "number"),
        Column("unit price", "money"),
        Column("amount", "money"),
    ]
    line = (
        "12",
        "usage",
        "fin_resolution [seat_type=advanced]",
        "2026-01-01",
        "12,226",
        "USD 1,234.5678",
        "USD 15,093,814.20",
    )
    for width in (60, 80, 100):
        for columns, row in ((timestamps, change), (invoice, line)):
            lines = render(width, columns, [row, row])
            text = "\n".join(lines)
            assert all(len(ln) <= width for ln in lines), text
            for word in " ".join(row).split():
                assert word in text, (width, word, text)
    # an ellipsized column still shrinks below its words, ending in "…"
    lines = render(30, [Column("name", ellipsis=True), Column("a", "money")], [("x" * 40, "1")])
    assert any("…" in ln for ln in lines)
