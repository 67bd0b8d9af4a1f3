"""`meterline statement`: a self-contained HTML page, rendered by headless Chromium, that
shows a customer's invoice lines, daily usage charts, tier progress and the audit chain.

Needs Chromium (Debian package `chromium`, /usr/bin/chromium). Without it the test fails
and says so: it must not pass by skipping."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterline.audit.statement import write_statement
from tests.audit.conftest import World

# Injected by the test only (the statement itself has no script): what Chromium laid out.
# The audit on chDB only: its month is built once per worker for each backend (60-130 s
# each), and the server backend differs in transport only (the same engine runs the same
# SQL), proved by the warehouse tests (tests/meters, tests/production) on both.
pytestmark = pytest.mark.single_warehouse

PROBE = """
<script>
window.addEventListener("load", () => {
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const out = {
    text: document.body.innerText,
    title: document.title,
    lines: [...document.querySelectorAll("table.lines tr[data-line]")].map((tr) => ({
      id: Number(tr.dataset.line),
      status: tr.querySelector(".badge").innerText,
      visible: box(tr)[1] > 0,
    })),
    charts: [...document.querySelectorAll("svg.chart")].map((svg) => ({
      meter: svg.dataset.meter,
      billed: svg.dataset.billed,
      size: box(svg),
      bars: [...svg.querySelectorAll("rect")].map((r) => ({
        day: r.dataset.day, group: r.dataset.group, value: r.dataset.value,
        height: r.getBoundingClientRect().height,
      })),
    })),
    tiers: [...document.querySelectorAll("table.tiers tr[data-tier]")].map((tr) => ({
      tier: Number(tr.dataset.tier), used: tr.dataset.used,
      // Graduated tiers draw how far the period reached into them; volume tiers do not.
      filled: tr.querySelector(".bar") ? box(tr.querySelector(".bar > span"))[0] : null,
      track: tr.querySelector(".bar") ? box(tr.querySelector(".bar"))[0] : null,
    })),
    chains: [...document.querySelectorAll("details.chain")].map((d) => d.dataset.status),
    rows: [...document.querySelectorAll("table.lines tbody tr")].map((tr) => ({
      kind: tr.dataset.kind, price: tr.dataset.price,
      cells: [...tr.cells].map((c) => c.innerText.trim()),
    })),
    tier_rows: [...document.querySelectorAll("table.tiers tr[data-tier]")].map((tr) => ({
      tier: Number(tr.dataset.tier), applied: tr.dataset.applied,
      cells: [...tr.cells].map((c) => c.innerText.trim()),
    })),
    totals: Object.fromEntries([...document.querySelectorAll("[data-total]")].map(
      (td) => [td.dataset.total, td.innerText.trim()])),
    periods: [...document.querySelectorAll("p.period")].map((p) => ({
      first: p.dataset.firstDay, last: p.dataset.lastDay, text: p.innerText.trim(),
    })),
    external: [...document.querySelectorAll("[src],[href],link,script:not(#probe-script)")].length,
  };
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "the statement test renders the page in headless Chromium, which is not installed:"
        " install the Debian package `chromium` (apt-get install -y chromium)",
        pytrace=False,
    )


def render_in_chromium(page: Path, tmp: Path) -> dict[str, Any]:
    probed = tmp / "probed.html"
    probed.write_text(
        page.read_text().replace(
            "</body>", PROBE.replace("<script>", '<script id="probe-script">') + "</body>"
        )
    )
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1100,2400",
    ]
    dom = subprocess.run(
        [chromium(), *flags, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, dom[-2000:]
    shot = tmp / "statement.png"
    subprocess.run(
        [chromium(), *flags, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000, "the page painted (almost) nothing"
    result: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return result


def test_statement_renders_lines_charts_tiers_and_audit(month: World, tmp_path: Path) -> None:
    # The volume-plan customer: graduated tiers and a price change mid-November.
    ((customer, name),) = month.sql(
        "SELECT c.external_id, c.name FROM customers c JOIN subscriptions s ON s.customer_id = c.id"
        " WHERE s.plan_id = 'volume'"
    )
    out = write_statement(
        customer, "2026-11", tmp_path / "statement.html", view="internal", config=month.config
    )
    page = out.read_text()
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", page), "not self-contained"

    seen = render_in_chromium(out, tmp_path)
    text = seen["text"]
    assert f"Usage statement: {name}" in text and customer in text
    for part in ("Daily usage", "Tiers: fin_resolution", "Audit chain per line", "Total"):
        assert part in text, part

    lines = month.sql(
        "SELECT l.id, l.meter, l.kind, l.quantity FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
        " JOIN customers c ON c.id = i.customer_id WHERE c.external_id = ? ORDER BY l.id",
        customer,
    )
    assert seen["external"] == 0
    assert [ln["id"] for ln in seen["lines"]] == [ln[0] for ln in lines]
    assert all(ln["visible"] and ln["status"] == "agrees" for ln in seen["lines"])
    assert seen["chains"] == ["agrees"] * len(lines)

    charts = {c["meter"]: c for c in seen["charts"]}
    assert set(charts) == {"fin_resolution", "seats"}
    for chart in charts.values():
        width, height = chart["size"]
        assert width > 700 and height > 150
        assert chart["bars"] and all(bar["height"] > 0 for bar in chart["bars"])
    # Every resolution of the period is in the chart: the daily bars add up to the line.
    fin = charts["fin_resolution"]
    (fin_quantity,) = [
        Decimal(q) for _, meter, kind, q in lines if meter == "fin_resolution" and kind == "usage"
    ]
    assert (
        sum(Decimal(bar["value"]) for bar in fin["bars"]) == fin_quantity == Decimal(fin["billed"])
    )
    assert {bar["group"] for bar in fin["bars"]} <= {
        "channel=chat",
        "channel=email",
        "channel=phone",
        "channel=sms",
    }
    # Bars are drawn to scale: the day with the most resolutions is the tallest bar.
    per_day: dict[str, tuple[Decimal, float]] = {}
    for bar in fin["bars"]:
        value, height = per_day.get(bar["day"], (Decimal(0), 0.0))
        per_day[bar["day"]] = (value + Decimal(bar["value"]), height + bar["height"])
    busiest = max(per_day.values())
    assert busiest[1] == pytest.approx(max(h for _, h in per_day.values()))

    tiers = seen["tiers"]
    assert [t["tier"] for t in tiers] == [1, 2, 3]
    used = [Decimal(t["used"]) for t in tiers]
    assert sum(used) == fin_quantity
    # A tier filled completely shows a full bar, an untouched one an empty bar.
    for tier, amount in zip(tiers, used, strict=True):
        if tier["tier"] == 1 and amount == 1000:
            assert tier["filled"] == pytest.approx(tier["track"])
        if amount == 0:
            assert tier["filled"] == 0
