"""The demo runs end to end (small) and its accounting matches the generator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

from meterline.demo.run import DemoConfig, delivery_time


def test_demo_runs_in_its_own_process(tmp_path: Path) -> None:
    # Its own process: the demo opens its own chDB folder, and a process may open one.
    folder = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "meterline.cli", "demo", "--customers", "30", "--dir", str(folder)],
        capture_output=True, text=True, timeout=900,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
    )
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    assert "counts match what the generator injected: yes" in out.stdout
    # Output a person can read: 80 columns (a pipe), no Python objects, money grouped with
    # its currency's minor unit, quantities without a tail of decimals.
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    assert not re.search(r"[A-Za-z]+\([a-z_]+=|Decimal\(|\{'|\[\{|<[A-Za-z.]+ object", out.stdout)
    amounts = re.findall(r"\b(USD|EUR|GBP) (-?[\d,]+(?:\.\d+)?)\b", out.stdout)
    assert amounts and all(re.fullmatch(r"-?\d{1,3}(,\d{3})*\.\d\d", a) for _, a in amounts)
    assert not re.search(r"\d\.\d{5,}", out.stdout)
    assert (folder / "warehouse").is_dir() and (folder / "data" / "manifest.json").is_file()
    # The real DAGs ran, invoices were finalized, and late usage became adjustments.
    assert "ran usage_rollup for 31 days and billing_close" in out.stdout
    assert "finalized" in out.stdout
    assert "adjustment lines" in out.stdout
    statements = sorted((folder / "statements").glob("*.html"))
    assert statements, "the demo wrote no usage statement"
    assert all("<svg" in p.read_text() for p in statements)


def test_delivery_is_the_next_night() -> None:
    assert delivery_time(date(2026, 10, 31)).isoformat() == "2026-11-01T00:30:00+00:00"
    assert DemoConfig().days == 31
