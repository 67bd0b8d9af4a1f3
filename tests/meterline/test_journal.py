"""The journal's settings and file formats (docs/revrec.md, "The journal"): the account
mapping read from the environment, NetSuite's CSV layout, and the chart's refusal when it
cannot be drawn. No stores: the entries are built from values."""

from __future__ import annotations

import csv
import io
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from billing.revrec import JournalEntry, JournalLine, Waterfall
from meterline.jobs.journal import CSV_COLUMNS, Journal, accounts_of, journal_csv, journal_doc
from meterline.jobs.revrec_report import (
    PALETTE,
    ChartUnavailable,
    billing_colours,
    waterfall_csv,
    waterfall_png,
)
from meterline.settings import SettingsError, load_settings


def test_the_account_mapping_overrides_defaults_and_refuses_unknown_roles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "METERLINE_JOURNAL_ACCOUNTS", '{"revenue": "40000 Revenue", "discounts": ""}'
    )
    monkeypatch.setenv("METERLINE_JOURNAL_REVENUE_ACCOUNTS", '{"fin_resolution": "40100"}')
    accounts = accounts_of(load_settings())
    assert accounts.revenue == "40000 Revenue" and accounts.discounts is None
    assert accounts.accounts_receivable == "1200"  # a default
    assert accounts.revenue_of("fin_resolution") == "40100"
    assert accounts.revenue_of("seat_advanced") == "40000 Revenue"
    monkeypatch.setenv("METERLINE_JOURNAL_ACCOUNTS", '{"revenu": "4000"}')
    with pytest.raises(SettingsError, match="METERLINE_JOURNAL_ACCOUNTS: unknown role"):
        load_settings()
    monkeypatch.setenv("METERLINE_JOURNAL_ACCOUNTS", '{"credits": " 4910"}')
    with pytest.raises(SettingsError, match="credits"):
        load_settings()


def test_netsuite_csv_repeats_the_entry_on_each_line_in_the_currencys_decimals() -> None:
    entry = JournalEntry(
        "meterline-2026-10-JPY-invoices",
        "invoices",
        "2026-10",
        "JPY",
        date(2026, 10, 31),
        "meterline invoices finalized in 2026-10 (JPY, 1 invoice(s))",
        (
            JournalLine("1200", "accounts_receivable", 1935, 0, "invoices"),
            JournalLine("1210", "unbilled_receivables", 0, 1935, "invoices"),
        ),
    )
    found = Journal("2026-10", [entry], subsidiary="Parent : JP")
    table = list(csv.reader(io.StringIO(journal_csv(found))))
    assert table == [
        list(CSV_COLUMNS),
        [
            entry.external_id,
            "2026-10-31",
            "Parent : JP",
            "JPY",
            entry.memo,
            "1200",
            "1935",
            "",
            "invoices",
            "",
        ],
        [
            entry.external_id,
            "2026-10-31",
            "Parent : JP",
            "JPY",
            entry.memo,
            "1210",
            "",
            "1935",
            "invoices",
            "",
        ],
    ]
    doc = journal_doc(found)
    assert doc["ok"] and doc["entries"][0]["debits"] == "1935" and doc["entries"][0]["balanced"]


def test_the_chart_is_refused_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found = Waterfall(["2026-10"], {"USD": {("2026-10", "2026-10"): 12345}})
    assert waterfall_csv(found).splitlines() == [
        "currency,billed,2026-10,total",
        "USD,2026-10,123.45,123.45",
        "USD,total,123.45,123.45",
    ]
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ChartUnavailable, match="matplotlib"):
        waterfall_png(found, tmp_path / "w.png")
    assert not (tmp_path / "w.png").exists()


def test_the_chart_gives_a_billing_month_one_colour_in_every_currency() -> None:
    # EUR was first billed a month after USD: its first bars took USD's first colour, so
    # the same colour meant two billing months on one chart.
    found = Waterfall(
        ["2026-10", "2026-11"],
        {
            "EUR": {("2026-11", "2026-10"): 100, ("unbilled", "2026-11"): 5},
            "USD": {("2026-10", "2026-10"): 100, ("2026-11", "2026-11"): 100},
        },
    )
    colours = billing_colours(found)
    assert colours == {"2026-10": PALETTE[0], "2026-11": PALETTE[1], "unbilled": "#999999"}
    assert len(set(PALETTE)) == len(PALETTE) and "#999999" not in PALETTE


def test_the_chart_of_nothing_recognized_says_so(tmp_path: Path) -> None:
    """An empty range draws its months and says nothing was recognized (was an axis of
    0.0..1.0 titled '(-)')."""
    import matplotlib.pyplot as plt

    drawn: list[str] = []
    real_savefig = plt.Figure.savefig

    def savefig(fig: Any, *args: Any, **kw: Any) -> None:
        drawn.extend(ax.get_title() for ax in fig.axes)
        drawn.extend(t.get_text() for ax in fig.axes for t in ax.get_xticklabels())
        real_savefig(fig, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt.Figure, "savefig", savefig)
        waterfall_png(Waterfall(["2020-01", "2020-02"]), tmp_path / "w.png")
    assert drawn == [
        "Revenue recognized by month: nothing in 2020-01..2020-02",
        "2020-01",
        "2020-02",
    ]
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"
