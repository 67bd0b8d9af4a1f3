"""The demo runs end to end (small) and what it reports is what the generator injected.

Every expected number is derived from the generated folder (manifest.json, the late
file, customers.jsonl) and the billing-period rule, never written down: the ingest
accounting per delivery and per rejection reason, the invoices the two closes finalize,
the adjustment lines the late file causes; and the audit's reconcile of the months the
closes touched finds nothing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from billing.catalog import read_catalog
from billing.db import create_ledger_engine, session_factory
from billing.models import Customer, Invoice, InvoiceLine
from billing.periods import Period, Terms, periods_ended_by, subscription_period_containing
from meterline.demo.run import DemoConfig, delivery_time
from meterline.demo.synthetic import Manifest, read_customers
from meterline.settings import DEMO_CATALOG
from rating import rate

CUSTOMERS = 30
GRACE = timedelta(hours=72)  # METERLINE_FINALIZE_GRACE_HOURS, set for the demo's process


@dataclass(frozen=True)
class DemoRun:
    folder: Path
    stdout: str
    env: dict[str, str]

    @property
    def data(self) -> Path:
        return self.folder / "data"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    # Its own process: the demo opens its own chDB folder, and a process may open one.
    folder = tmp_path_factory.mktemp("demo") / "demo"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["METERLINE_FINALIZE_GRACE_HOURS"] = str(int(GRACE.total_seconds() // 3600))
    out = subprocess.run(
        [sys.executable, "-m", "meterline.cli", "demo", "--customers", str(CUSTOMERS),
         "--dir", str(folder)],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    return DemoRun(folder, out.stdout, env)


def test_the_output_is_for_people(demo: DemoRun) -> None:
    # 80 columns (a pipe), no Python objects, money grouped with its currency's minor
    # unit, quantities without a tail of decimals.
    lines = demo.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    assert not re.search(r"[A-Za-z]+\([a-z_]+=|Decimal\(|\{'|\[\{|<[A-Za-z.]+ object", demo.stdout)
    amounts = re.findall(r"\b(USD|EUR|GBP) (-?[\d,]+(?:\.\d+)?)\b", demo.stdout)
    assert amounts and all(re.fullmatch(r"-?\d{1,3}(,\d{3})*\.\d\d", a) for _, a in amounts)
    assert not re.search(r"\d\.\d{5,}", demo.stdout)
    assert f"ran usage_rollup for {DemoConfig.days} days and billing_close" in demo.stdout
    statements = sorted((demo.folder / "statements").glob("*.html"))
    assert len(statements) == DemoConfig.top
    assert all("<svg" in p.read_text() for p in statements)


def test_the_ingest_accounting_is_what_the_generator_injected(demo: DemoRun) -> None:
    manifest = Manifest.read(demo.data)
    daily, late = manifest.daily, manifest.late
    assert accounting_row(demo.stdout, "daily files") == (
        daily.rows,
        daily.valid_events,
        daily.exact_duplicates,
        sum(daily.malformed.values()) + daily.conflicting_duplicates,
    )
    assert accounting_row(demo.stdout, "late file") == (
        late.rows,
        late.valid_events,
        late.exact_duplicates,
        sum(late.malformed.values()) + late.conflicting_duplicates,
    )
    injected = Counter(daily.malformed) + Counter(late.malformed)
    injected["conflicting_duplicate"] = daily.conflicting_duplicates + late.conflicting_duplicates
    assert rejected_by_reason(demo.stdout) == +injected
    # Every kind of mess was there to be counted.
    assert all(n > 0 for n in injected.values()) and late.valid_events > 0
    assert "counts match what the generator injected: yes" in demo.stdout


def test_finalized_invoices_and_adjustments_are_the_derived_ones(demo: DemoRun) -> None:
    manifest = Manifest.read(demo.data)
    config = DemoConfig(customers=CUSTOMERS)
    first_close = datetime.combine(config.start + timedelta(days=config.days), time(0), UTC) + GRACE
    second_close = first_close + timedelta(days=1)  # after the late file
    assert f"billing_close as of {first_close.isoformat()}" in demo.stdout
    customers = {c["customer_id"]: c for c in read_customers(demo.data)}
    go_live = datetime.combine(config.start, time(0), UTC)

    def finalized(as_of: datetime) -> dict[str, list[Period]]:
        return {cid: billed_periods(c, as_of, go_live) for cid, c in customers.items()}

    # The invoice table is printed after the first close; the ledger holds both closes.
    first = finalized(first_close)
    per_currency: Counter[str] = Counter()
    for cid, periods in first.items():
        per_currency[customers[cid]["currency"]] += len(periods)
    assert printed_finalized(demo.stdout) == +per_currency
    expected_finalized = sum(len(p) for p in finalized(second_close).values())

    ledger = Ledger(demo.folder / "ledger.db")
    assert ledger.finalized_invoices() == expected_finalized > sum(per_currency.values()) > 0

    # Late events inside a period the first close finalized are adjusted by the second.
    late = late_usage(demo.data, manifest, customers, first)
    assert late, "the demo's late file reaches no finalized period: nothing to adjust"
    adjustments = ledger.adjustments()
    expected = expected_adjustments(late, customers, ledger.finalized_lines())
    assert Counter(a.key for a in adjustments) == expected
    for a in adjustments:
        if a.adjusted_kind == "usage" and a.price_id == "fin_resolution":
            assert a.quantity == late[a.customer, a.period_start, a.price_id]  # one each
    shown = re.search(r"([\d,]+) adjustment lines", demo.stdout)
    assert shown and int(shown.group(1).replace(",", "")) == len(adjustments) == expected.total()

    # Stripe (the stand-in) got every invoice of the first close with an item per line,
    # and every adjustment line as an item of the next invoice's draft.
    sent = re.search(
        r"delivered ([\d,]+) invoices \(([\d,]+) items\) to Stripe; Stripe totals = ledger"
        r" totals",
        demo.stdout,
    )
    assert sent, demo.stdout
    assert int(sent.group(1).replace(",", "")) == sum(per_currency.values())
    assert int(sent.group(2).replace(",", "")) == ledger.lines_finalized_at(first_close)
    adjusted = re.search(r"delivered ([\d,]+) adjustment lines to Stripe", demo.stdout)
    assert adjusted and int(adjusted.group(1).replace(",", "")) == len(adjustments)


def test_reconcile_finds_nothing(demo: DemoRun) -> None:
    manifest = Manifest.read(demo.data)
    config = DemoConfig(customers=CUSTOMERS)
    end = datetime.combine(config.start + timedelta(days=config.days), time(0), UTC)
    as_of = end + GRACE + timedelta(days=1)  # the demo's last close
    env = {
        **demo.env,
        "METERLINE_WAREHOUSE_URL": f"chdb://{(demo.folder / 'warehouse').resolve()}",
        "METERLINE_LEDGER_URL": f"sqlite:///{(demo.folder / 'ledger.db').resolve()}",
        "METERLINE_BILLING_GO_LIVE": config.start.isoformat(),
    }
    out = subprocess.run(
        [sys.executable, "-m", "meterline.cli", "audit", "reconcile", "--as-of",
         as_of.isoformat(), "--json"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    report = json.loads(out.stdout)
    assert report["ok"] and report["months"]
    for month in report["months"]:
        assert month["findings"] == [], month["findings"]
        assert month["counts"] == {"error": 0, "warning": 0, "acknowledged": 0}
        assert all(d["adjusted"] for d in month["drift"])
    # The intake of a month: the daily files delivered in it (the nightly delivery).
    october = next(m for m in report["months"] if m["period"] == "2026-10")
    delivered = [
        manifest.file_stats[name]
        for offset, name in enumerate(manifest.files)
        if delivery_time(config.start + timedelta(days=offset)).month == 10
    ]
    intake = october["intake"]
    assert (intake["received"], intake["accepted"], intake["duplicates"], intake["rejected"]) == (
        sum(f.rows for f in delivered),
        sum(f.valid_events for f in delivered),
        sum(f.exact_duplicates for f in delivered),
        sum(sum(f.malformed.values()) + f.conflicting_duplicates for f in delivered),
    )


# Serves the demo's folder as `meterline demo --serve` does after the demo (serve_demo),
# in a process of its own (chDB opens one folder per process), on any free port.
SERVE = """
import sys
from pathlib import Path
from rich.console import Console
from meterline.demo.run import DemoConfig
from meterline.demo.serve import serve_demo
serve_demo(DemoConfig(folder=Path(sys.argv[1])), Console(width=400), port=0)
"""


def test_serve_runs_the_console_on_the_demo_ledger(demo: DemoRun) -> None:
    """--serve's function on the demo's output: it prints the console's URL and a token
    that signs in and reads the demo's invoices; Ctrl-C (SIGINT) stops it."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(demo.folder)],
        env=demo.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines: list[str] = []
        while not any(line.startswith("Ctrl-C stops") for line in lines):
            line = server.stdout.readline()  # type: ignore[union-attr]
            assert line, f"the service stopped: {server.communicate()[1][-3000:]}"
            lines.append(line)
        printed = "".join(lines)
        console = re.search(r"the support console: (http://127\.0\.0\.1:\d+/console)", printed)
        token = re.search(r"created for the demo's ledger\): (\S+)", printed)
        assert console and token, printed
        base = console.group(1).removesuffix("/console")
        with httpx.Client(base_url=base, timeout=60) as client:
            signed = client.post("/console/login", data={"token": token.group(1)})
            assert signed.status_code == 303, signed.text
            assert client.get("/console").status_code == 200
            bearer = {"Authorization": f"Bearer {token.group(1)}"}
            # The demo's invoices, read with the printed key (the first customers billed).
            found = []
            for customer in list(read_customers(demo.data))[:5]:
                got = client.get(
                    f"/v1/customers/{customer['customer_id']}/invoices", headers=bearer
                )
                assert got.status_code == 200, got.text
                found += got.json()["invoices"]
            assert found
            first = client.get(f"/console/invoices/{found[0]['id']}")
            assert first.status_code == 200 and found[0]["currency"] in first.text
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    # uvicorn stops gracefully (the stores closed), then raises the signal it caught again:
    # the process ends as interrupted (the command line turns that into exit code 130).
    log = server.stderr.read()  # type: ignore[union-attr]
    # uvicorn handles SIGINT itself: a clean shutdown exits 0 (or by the signal)
    assert server.returncode in (0, -signal.SIGINT), log[-3000:]
    assert "meterline service stopped" in log, log[-3000:]
    assert "meterline service stopped" in log, log[-3000:]


def test_delivery_is_the_next_night() -> None:
    assert delivery_time(date(2026, 10, 31)).isoformat() == "2026-11-01T00:30:00+00:00"
    assert DemoConfig().days == 31


# --- what the demo printed ------------------------------------------------------------------


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def accounting_row(stdout: str, delivery: str) -> tuple[int, ...]:
    """received, accepted, duplicates, rejected of one row of the accounting table."""
    match = re.search(rf"^{delivery}\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s*$", stdout, re.M)
    assert match, f"no accounting row {delivery!r}"
    return tuple(_count(g) for g in match.groups())


def rejected_by_reason(stdout: str) -> Counter[str]:
    text = stdout[stdout.index("rejected by reason:") : stdout.index("counts match")]
    return Counter({r: _count(n) for r, n in re.findall(r"([a-z_]+) ([\d,]+)", text)})


def printed_finalized(stdout: str) -> Counter[str]:
    rows = re.findall(r"^(USD|EUR|GBP)\s+finalized\s+([\d,]+)\s", stdout, re.M)
    return Counter({currency: _count(n) for currency, n in rows})


# --- what the data says should happen --------------------------------------------------------


def terms(customer: dict[str, Any]) -> Terms:
    return Terms(
        customer["billing_anchor_day"], customer["timezone"], date.fromisoformat(customer["start"])
    )


def billed_periods(customer: dict[str, Any], as_of: datetime, go_live: datetime) -> list[Period]:
    """The periods a close as of `as_of` finalizes: ended the grace period before it, and
    ending after the go-live (README: METERLINE_FINALIZE_GRACE_HOURS, _BILLING_GO_LIVE)."""
    return [p for p in periods_ended_by(terms(customer), as_of - GRACE) if p.end > go_live]


LateKey = tuple[str, datetime, str]  # customer, period start (UTC), price id
LineKey = tuple[str, datetime, str, str]  # customer, period start (UTC), price id, line kind


def late_usage(
    data: Path,
    manifest: Manifest,
    customers: dict[str, dict[str, Any]],
    finalized: dict[str, list[Period]],
) -> Counter[LateKey]:
    """Late events (first seen in the late file) inside a period already finalized, by
    customer, period and price: the price of the customer's plan and currency whose meter
    and filter the event matches."""
    prices = read_catalog(DEMO_CATALOG).versions
    daily_ids: set[str] = set()
    for name in manifest.files:
        daily_ids.update(pq.read_table(data / name, columns=["event_id"])["event_id"].to_pylist())
    found: Counter[LateKey] = Counter()
    for row in late_rows(data, manifest):
        if row["event_id"] in daily_ids:
            continue  # a re-sent copy: a duplicate, not usage
        customer = customers[row["customer_id"]]
        moment = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
        period = subscription_period_containing(terms(customer), moment)
        if period not in finalized[row["customer_id"]]:
            continue
        properties = json.loads(row["properties"])
        matches = {
            v.price_id
            for v in prices
            if v.plan_id == customer["plan"]
            and v.currency == customer["currency"]
            and v.meter == row["meter"]
            and all(properties.get(k) == value for k, value in (v.filter or {}).items())
        }
        assert len(matches) == 1, (row, matches)
        found[(row["customer_id"], period.start, matches.pop())] += 1
    return found


def late_rows(data: Path, manifest: Manifest) -> Iterator[dict[str, Any]]:
    for name in manifest.late_files:
        yield from pq.read_table(data / name).to_pylist()


def usage_amounts(
    customer: dict[str, Any], period_start: datetime, price_id: str, quantities: list[Decimal]
) -> list[Decimal]:
    """What the price in effect at the period's start charges for each quantity (the
    rating engine, with the demo catalog's version of that day)."""
    local_day = period_start.astimezone(ZoneInfo(customer["timezone"])).date()
    version = max(
        (
            v
            for v in read_catalog(DEMO_CATALOG).versions
            if (v.plan_id, v.price_id, v.currency) == (customer["plan"], price_id, customer["currency"])
            and v.effective_from <= local_day
        ),
        key=lambda v: v.effective_from,
    )
    return [Decimal(rate(version.checked_price(), q).amount) for q in quantities]


def expected_adjustments(
    late: Counter[LateKey],
    customers: dict[str, dict[str, Any]],
    billed: dict[LineKey, tuple[Decimal, Decimal]],
) -> Counter[tuple[str, str, str]]:
    """(customer, price id, kind of the line it adjusts) of each adjustment line the late
    usage causes (billing.adjustments: one line per key whose quantity or amount changes).

    The usage line of each price with late events (its quantity changes); when its amount
    changes too (past any free units): a percent-off discount on the price, an amount-off
    one whose cap the usage was below, and a minimum true-up that was billed. `billed`:
    (quantity, amount) of the finalized lines."""
    expected: Counter[tuple[str, str, str]] = Counter()
    for (customer_id, start, price_id), events in late.items():
        customer = customers[customer_id]
        expected[(customer_id, price_id, "usage")] += 1
        quantity, _ = billed[(customer_id, start, price_id, "usage")]
        if price_id == "fin_resolution":
            before, after = usage_amounts(customer, start, price_id, [quantity, quantity + events])
        else:  # seats: a time-weighted gauge, priced per unit; any change changes the amount
            before, after = Decimal(0), Decimal(1)
        if before == after:
            continue
        for discount in customer["discounts"]:
            if discount["price"] == price_id and (
                discount["percent_off"] is not None or before < Decimal(discount["amount_off"])
            ):
                expected[(customer_id, price_id, "discount")] += 1
        for (cid, period, minimum, kind), (_, amount) in billed.items():
            if (cid, period, kind) == (customer_id, start, "minimum_true_up") and amount > 0:
                expected[(customer_id, minimum, kind)] += 1
    return expected


# --- what the ledger holds --------------------------------------------------------------------


@dataclass(frozen=True)
class Adjustment:
    customer: str
    period_start: datetime  # of the period it corrects
    price_id: str
    adjusted_kind: str
    quantity: Decimal

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.customer, self.price_id, self.adjusted_kind)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Ledger:
    """Reads of the demo's SQLite ledger, straight from its tables."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path}"

    def _rows(self, statement: Any) -> list[Any]:
        engine = create_ledger_engine(self.url)
        try:
            with session_factory(engine)() as session:
                return [tuple(row) for row in session.execute(statement).all()]
        finally:
            engine.dispose()

    def finalized_invoices(self) -> int:
        return len(self._rows(select(Invoice.id).where(Invoice.status == "finalized")))

    def lines_finalized_at(self, as_of: datetime) -> int:
        """Lines of the invoices a close as of ``as_of`` finalized."""
        return len(self._rows(
            select(InvoiceLine.id).join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(Invoice.finalized_at == as_of)
        ))  # fmt: skip

    def finalized_lines(self) -> dict[LineKey, tuple[Decimal, Decimal]]:
        """(quantity, amount in major units) of the finalized invoices' own lines."""
        rows = self._rows(
            select(Customer.external_id, InvoiceLine.service_period_start, InvoiceLine.price_id,
                   InvoiceLine.kind, InvoiceLine.quantity, InvoiceLine.amount_precise)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .join(Customer, Customer.id == Invoice.customer_id)
            .where(Invoice.status == "finalized", InvoiceLine.kind != "adjustment")
        )  # fmt: skip
        lines: dict[LineKey, tuple[Decimal, Decimal]] = {}
        for customer, start, price_id, kind, quantity, amount in rows:
            key = (customer, _utc(start), price_id, kind)
            assert key not in lines, key
            lines[key] = (quantity, amount)
        return lines

    def adjustments(self) -> list[Adjustment]:
        adjusted = InvoiceLine.__table__.alias("adjusted")
        rows = self._rows(
            select(Customer.external_id, InvoiceLine.service_period_start, InvoiceLine.price_id,
                   adjusted.c.kind, InvoiceLine.quantity)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .join(Customer, Customer.id == Invoice.customer_id)
            .join(adjusted, adjusted.c.id == InvoiceLine.adjusts_line_id)
            .where(InvoiceLine.kind == "adjustment")
        )  # fmt: skip
        every = self._rows(select(InvoiceLine.id).where(InvoiceLine.kind == "adjustment"))
        assert len(rows) == len(every), "an adjustment that points at no finalized line"
        return [
            Adjustment(customer, _utc(start), price_id, kind, quantity)
            for customer, start, price_id, kind, quantity in rows
        ]
