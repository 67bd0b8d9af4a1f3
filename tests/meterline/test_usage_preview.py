"""Usage so far and the invoice preview (issue 17; meterline/jobs/usage.py and preview.py,
docs/usage-preview.md), on the real warehouse and both ledger databases (SQLite, and
PostgreSQL when METERLINE_TEST_POSTGRES_URL is set). Prices: tests/scenarios/catalog.yaml
(basic: resolutions graduated 1.00 for the first 100 of a period, 0.50 above, seats 30.00
time-weighted; committed: platform fee 100.00, seats 30.00, resolutions 1.00, at least
500.00 a period).

- As of a period's end, with no late events, the preview equals the invoice the real
  close finalizes, line for line (key, kind, price, version, quantity, amounts): fixed
  fees, proration of a partial first period, a discount, the minimum true-up, a credit
  grant drawn down, a plan change, a timezone other than UTC.
- Mid-period, usage and preview against hand-computed values, including the hour in
  progress (events before the instant asked count, later ones do not).
- Events ingested and not rolled up count; rolled up, the same answer; a late event of a
  rolled-up day makes that day raw for its customer only.
- A subscription not started, one ended, one in its last (partial) period; an unknown
  customer; the commands and their exit codes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from billing.plan_changes import ChangeRequest
from meterline.cli import main
from meterline.jobs.credits import grant_one
from meterline.jobs.plan_change import change
from meterline.jobs.preview import CustomerPreview, InvoicePreview, customer_preview
from meterline.jobs.usage import CustomerUsage, UnknownCustomer, customer_usage
from meterline.settings import settings
from meters.warehouse.base import Warehouse
from tests.billing.conftest import ledger_url  # noqa: F401  (SQLite, and PostgreSQL when set)
from tests.scenarios.harness import CATALOG, Sub, World, day, event, resolutions, utc
from tests.scenarios.ledgers import load

# The rules under test are the jobs' and rating's; the warehouse side is close's own
# queries, which run on both backends in tests/meters and tests/scenarios.
pytestmark = pytest.mark.single_warehouse

ZERO = Decimal(0)


@pytest.fixture
def world(
    warehouse: Warehouse,
    chdb_folder: Path,
    tmp_path: Path,
    ledger_url: str,  # noqa: F811
) -> World:
    """One pipeline: its own warehouse database, and its ledger on the running variant."""
    built = World(warehouse, chdb_folder, tmp_path / "world")
    built.config = built.config.model_copy(update={"ledger_url": ledger_url})
    return built


@pytest.fixture
def sqlite_world(warehouse: Warehouse, chdb_folder: Path, tmp_path: Path) -> World:
    """A pipeline on SQLite alone, for what the ledger database does not change (the
    warehouse side, the commands)."""
    return World(warehouse, chdb_folder, tmp_path / "world")


@dataclass(frozen=True)
class OtherSub(Sub):
    """A second subscription of a customer: its own subscription id."""

    name: str = ""

    @property
    def subscription_id(self) -> str:
        return self.name


def usage(world: World, customer: str, as_of: str) -> CustomerUsage:
    return customer_usage(customer, utc(as_of), config=world.config)


def preview(world: World, customer: str, as_of: str) -> CustomerPreview:
    return customer_preview(customer, utc(as_of), config=world.config)


def one_invoice(result: CustomerPreview) -> InvoicePreview:
    (invoice,) = result.invoices
    assert invoice.error is None, invoice.error
    return invoice


def amounts(invoice: InvoicePreview) -> dict[tuple[str, str], Decimal]:
    """(price, kind) -> amount of each line."""
    out: dict[tuple[str, str], Decimal] = {
        (ln.price_id, ln.kind): ln.amount for ln in invoice.lines
    }
    assert len(out) == len(invoice.lines)
    return out


# --- the invariant ------------------------------------------------------------------------

CUSTOMERS = [
    # full month, 20% off the platform fee, seats 5 then 7, a credit grant, a true-up
    Sub(
        "pa",
        "committed",
        start="2026-11-01",
        discounts=({"price": "platform_fee", "percent_off": "20", "valid_from": "2026-11-01"},),
    ),
    # starts mid-cycle: the platform fee and the minimum prorated to 15 of 30 days
    Sub("pc", "committed", start="2026-11-16"),
    # basic, then committed from Nov 15 (tiers continue)
    Sub("pd", "basic", start="2026-11-01"),
    # Berlin: the period is 2026-10-31 23:00 .. 2026-11-30 23:00 UTC
    Sub("pe", "basic", start="2026-11-01", timezone="Europe/Berlin"),
]
EVENTS = [
    event("pa-s1", "pa", "seats", "2026-11-01 00:00", value=5),
    event("pa-s2", "pa", "seats", "2026-11-10 12:00", value=7),
    *resolutions("pa", "pa-r", 60, "2026-11-02 00:00", 20, channel="chat"),
    *resolutions("pa", "pa-q", 60, "2026-11-17 00:00", 20, channel="email"),
    event("pc-s", "pc", "seats", "2026-11-16 00:00", value=2),
    *resolutions("pc", "pc-r", 40, "2026-11-20 00:00", 10, channel="phone"),
    event("pd-s", "pd", "seats", "2026-11-01 00:00", value=1),
    *resolutions("pd", "pd-r", 90, "2026-11-05 00:00", 10, channel="chat"),
    *resolutions("pd", "pd-q", 90, "2026-11-20 00:00", 10, channel="chat"),
    event("pe-s", "pe", "seats", "2026-11-02 00:00", value=4),
    *resolutions("pe", "pe-r", 130, "2026-11-30 12:00", 5, channel="email"),
]
EVENT_DAYS = [
    day(d)
    for d in (
        "2026-11-01",
        "2026-11-02",
        "2026-11-05",
        "2026-11-10",
        "2026-11-16",
        "2026-11-17",
        "2026-11-20",
        "2026-11-30",
    )
]
PERIOD_END = {"pa": "2026-12-01 00:00", "pc": "2026-12-01 00:00", "pd": "2026-12-01 00:00"}
PERIOD_END["pe"] = "2026-11-30 23:00"


def posted(world: World, customer: str) -> dict[str, Any]:
    """The customer's one invoice in the ledger."""
    (invoice,) = [i for i in world.invoices() if i["customer"] == customer]
    return invoice


def line_facts(lines: list[Any]) -> dict[str, tuple[Any, ...]]:
    """key -> (kind, price, version, group, quantity, amount minor, precise amount)."""
    return {
        key: (kind, price, version, group, Decimal(str(qty)), int(minor), Decimal(str(precise)))
        for key, kind, price, version, group, qty, minor, precise in lines
    }


def test_the_preview_at_period_end_is_the_invoice_close_finalizes(world: World) -> None:
    load(world, CUSTOMERS)
    grant_one(
        {
            "grant_id": "promo-pa",
            "customer_id": "pa",
            "kind": "promotional",
            "currency": "USD",
            "amount": "50.00",
            "effective_from": "2026-11-01",
            "reason": "welcome",
        },
        by="tests",
        config=world.config,
    )
    change(
        ChangeRequest("sub_pd", utc("2026-11-15 00:00"), "committed", "continue", "upgrade", "t"),
        config=world.config,
    )
    world.deliver(EVENTS)
    world.nightly(*EVENT_DAYS)

    previews = {
        c.customer_id: preview(world, c.customer_id, PERIOD_END[c.customer_id]) for c in CUSTOMERS
    }
    report = world.close(utc("2026-12-04 00:00"))
    assert report.ok and report.periods_closed == len(CUSTOMERS), report
    for customer, result in previews.items():
        invoice = one_invoice(result)
        assert result.computed_through == utc(PERIOD_END[customer])
        # Berlin's period ends at 23:00 UTC: that day's hours before it are read raw.
        raw = (date(2026, 11, 30),) if customer == "pe" else ()
        assert (customer, result.raw_days) == (customer, raw)
        final = posted(world, customer)
        assert final["status"] == "finalized"
        have = line_facts(
            [
                (
                    ln.key,
                    ln.kind,
                    ln.price_id,
                    ln.price_version,
                    ln.group,
                    ln.quantity,
                    ln.amount_minor,
                    ln.amount_precise,
                )
                for ln in invoice.lines
            ]
        )
        want = line_facts(
            [
                (
                    ln["idempotency_key"],
                    ln["kind"],
                    ln["price_id"],
                    ln["price_version"],
                    ln["group"],
                    ln["quantity"],
                    ln["amount_minor"],
                    ln["amount_precise"],
                )
                for ln in final["lines"]
            ]
        )
        assert (customer, have) == (customer, want)
        assert (customer, invoice.period_start, invoice.period_end) == (
            customer,
            datetime.fromisoformat(final["period_start"]),
            datetime.fromisoformat(final["period_end"]),
        )
        for name, field in (
            ("subtotal", "subtotal"),
            ("discounts", "discounts"),
            ("adjustments", "adjustments"),
            ("total", "total"),
        ):
            shown = (customer, name, getattr(invoice, field))
            assert shown == (customer, name, Decimal(final[name]))
        assert (customer, invoice.total_minor) == (customer, final["total_minor"])
    # What each case exercised, as the invoices show it.
    kinds = {c: {ln.kind for ln in one_invoice(p).lines} for c, p in previews.items()}
    assert {"flat", "discount", "credit", "minimum_true_up"} <= kinds["pa"]
    assert "minimum_true_up" in kinds["pc"] and "flat" in kinds["pd"]
    pc_fee = amounts(one_invoice(previews["pc"]))[("platform_fee", "flat")]
    assert pc_fee == Decimal("50.00")  # 100.00 x 15 of 30 days
    assert one_invoice(previews["pe"]).period_start == utc("2026-10-31 23:00")

    # After the close, the period is finalized and the preview as of its end the same.
    again = one_invoice(preview(world, "pa", PERIOD_END["pa"]))
    assert again.lines == one_invoice(previews["pa"]).lines


# --- mid-period, by hand ------------------------------------------------------------------


def test_mid_period_usage_and_preview_by_hand(world: World) -> None:
    load(world, [Sub("m1", "basic", start="2026-11-01")])
    world.deliver(
        [
            event("m1-s", "m1", "seats", "2026-11-01 00:00", value=3),
            # 130 resolutions from Nov 2, one an hour (to Nov 7 09:00)
            *resolutions("m1", "m1-r", 130, "2026-11-02 00:00", 60, channel="chat"),
            # the hour in progress on Nov 16: one before 10:30, one after
            event("m1-a", "m1", "resolution", "2026-11-16 10:15", ingested_at="2026-11-16 10:50"),
            event("m1-b", "m1", "resolution", "2026-11-16 10:45", ingested_at="2026-11-16 10:50"),
        ]
    )
    world.nightly(*(day(f"2026-11-0{d}") for d in range(1, 8)))
    world.ingest_until(utc("2026-11-16 10:50"))

    # As of Nov 16 00:00, half of the 30-day month: 130 resolutions = 100 x 1.00 + 30 x
    # 0.50 = 115.00; 3 seats held 15 of 30 days = 1.5 seats x 30.00 = 45.00.
    so_far = usage(world, "m1", "2026-11-16 00:00")
    (sub,) = so_far.subscriptions
    assert sub.status == "current" and sub.error is None
    assert (sub.period_start, sub.period_end) == (utc("2026-11-01 00:00"), utc("2026-12-01 00:00"))
    assert sub.usage_end == utc("2026-11-16 00:00")
    prices = {p.price_id: (p.quantity, p.amount, p.amount_minor) for p in sub.prices}
    assert prices == {
        "resolution": (Decimal(130), Decimal("115.00"), 11500),
        "seat": (Decimal("1.5"), Decimal("45.00"), 4500),
    }
    assert (sub.amount, sub.amount_minor) == (Decimal("160.00"), 16000)
    assert {(m.meter, m.quantity, m.events) for m in sub.meters} == {
        ("resolution", Decimal(130), 130),
        ("seats", Decimal("1.5"), 1),
    }
    assert so_far.computed_through == utc("2026-11-16 00:00")

    # The invoice if nothing more arrived: the seats held to the period's end, 3 x 30.00.
    whole = one_invoice(preview(world, "m1", "2026-11-16 00:00"))
    assert amounts(whole) == {
        ("resolution", "usage"): Decimal("115.00"),
        ("seat", "usage"): Decimal("90.00"),
    }
    assert (whole.total, whole.total_minor, whole.subtotal_minor) == (
        Decimal("205.00"),
        20500,
        20500,
    )
    assert whole.lines[0].key.startswith("sub_m1|2026-11-01T00:00:00Z|")

    # As of 10:30 on Nov 16: the 10:15 resolution counts, the 10:45 one does not (it is
    # stored, but after the instant asked): 131 = 100 x 1.00 + 31 x 0.50 = 115.50. Seats
    # are rated to the end of the hour (the rollup's grain): 3 x 371 h / 720 h =
    # 1.545833333 (to 9 places) x 30.00 = 46.37499999 -> 46.37.
    at_1030 = usage(world, "m1", "2026-11-16 10:30")
    (sub,) = at_1030.subscriptions
    assert sub.usage_end == utc("2026-11-16 11:00")
    shown = {p.price_id: (p.quantity, p.amount) for p in sub.prices}
    assert shown == {
        "resolution": (Decimal(131), Decimal("115.50")),
        "seat": (Decimal("1.545833333"), Decimal("46.37")),
    }
    # Nov 16 is read from the raw events (never rolled up, and the day in progress).
    assert at_1030.raw_days == (date(2026, 11, 16),)
    assert at_1030.rolled_up_through == utc("2026-11-16 00:00")
    assert at_1030.computed_through == utc("2026-11-16 10:30")


# --- raw events not rolled up -------------------------------------------------------------


def test_events_not_rolled_up_count_and_the_rollup_changes_nothing(sqlite_world: World) -> None:
    world = sqlite_world
    load(world, [Sub("r1", "basic", start="2026-11-01"), Sub("r2", "basic", start="2026-11-01")])
    world.deliver(
        [
            *resolutions("r1", "r1-a", 50, "2026-11-03 08:00", channel="chat"),
            *resolutions("r2", "r2-a", 10, "2026-11-03 08:00", channel="chat"),
            *resolutions("r1", "r1-b", 70, "2026-11-04 08:00", channel="email"),
        ]
    )
    world.nightly(day("2026-11-03"))  # Nov 3 rolled up; Nov 4 (delivered Nov 5) is not
    world.ingest_until(utc("2026-11-05 00:30"))

    def resolution(result: CustomerUsage) -> tuple[Decimal, Decimal]:
        (sub,) = result.subscriptions
        (line,) = [p for p in sub.prices if p.price_id == "resolution"]
        return line.quantity, line.amount

    before = usage(world, "r1", "2026-11-06 00:00")
    # 50 + 70 = 120 = 100 x 1.00 + 20 x 0.50
    assert resolution(before) == (Decimal(120), Decimal("110.00"))
    assert before.raw_days == (date(2026, 11, 4),)
    assert before.rolled_up_through == utc("2026-11-04 00:00")
    preview_before = one_invoice(preview(world, "r1", "2026-11-06 00:00"))

    world.rollup(day("2026-11-04"))
    after = usage(world, "r1", "2026-11-06 00:00")
    assert resolution(after) == resolution(before)
    assert after.raw_days == () and after.rolled_up_through == utc("2026-11-06 00:00")
    assert one_invoice(preview(world, "r1", "2026-11-06 00:00")).lines == preview_before.lines

    # A late resolution of the rolled-up Nov 3: that day is read raw again, for r1 only.
    world.deliver(
        [event("r1-late", "r1", "resolution", "2026-11-03 23:00", ingested_at="2026-11-05 12:00")]
    )
    world.ingest_until(utc("2026-11-05 12:00"))
    late = usage(world, "r1", "2026-11-06 00:00")
    assert resolution(late) == (Decimal(121), Decimal("110.50"))
    assert late.raw_days == (date(2026, 11, 3),)
    other = usage(world, "r2", "2026-11-06 00:00")
    assert resolution(other) == (Decimal(10), Decimal("10.00")) and other.raw_days == ()


# --- subscriptions with no current period, unknown customers, the commands ---------------


def test_not_started_ended_and_last_period(world: World) -> None:
    load(
        world,
        [
            Sub("st", "basic", start="2026-12-01"),
            OtherSub("st", "basic", start="2026-10-01", end="2026-11-01", name="sub_st_old"),
            OtherSub("st", "basic", start="2026-11-01", end="2026-11-20", name="sub_st_last"),
        ],
    )
    world.deliver(
        [
            event("st-s", "st", "seats", "2026-11-01 00:00", value=2),
            *resolutions("st", "st-r", 10, "2026-11-12 00:00", channel="chat"),
        ]
    )
    world.nightly(day("2026-11-01"), day("2026-11-12"))
    result = usage(world, "st", "2026-11-16 00:00")
    by_id = {s.subscription: s for s in result.subscriptions}
    assert by_id["sub_st"].status == "not_started"
    assert by_id["sub_st"].starts_at == utc("2026-12-01 00:00") and by_id["sub_st"].prices == ()
    assert by_id["sub_st_old"].status == "ended"
    assert by_id["sub_st_old"].ended_at == utc("2026-11-01 00:00")
    last = by_id["sub_st_last"]
    # canceled from Nov 20: its last period is Nov 1 .. Nov 20
    assert last.status == "current" and last.period_end == utc("2026-11-20 00:00")
    assert result.ok
    assert {p.price_id: p.quantity for p in last.prices}["resolution"] == 10

    previewed = {i.subscription: i for i in preview(world, "st", "2026-11-16 00:00").invoices}
    assert previewed["sub_st"].lines == () and previewed["sub_st_old"].lines == ()
    # seats: 2 held to the period's end, Nov 20: 2 x 19 of 30 days = 1.266666667 x 30.00
    assert amounts(previewed["sub_st_last"]) == {
        ("resolution", "usage"): Decimal("10.00"),
        ("seat", "usage"): Decimal("38.00"),
    }

    # A subscription's current period as of its start: none yet; as of its end: the last.
    assert usage(world, "st", "2026-12-01 00:00").subscriptions[0].status == "not_started"
    ended = {s.subscription: s for s in usage(world, "st", "2026-11-20 00:00").subscriptions}
    assert ended["sub_st_last"].status == "current"

    # Before any subscription started: nothing to rate, a clear answer.
    early = usage(world, "st", "2026-09-15 00:00")
    assert {s.status for s in early.subscriptions} == {"not_started"} and early.ok
    assert early.computed_through == utc("2026-09-15 00:00") and early.raw_days == ()
    assert all(i.lines == () for i in preview(world, "st", "2026-09-15 00:00").invoices)

    with pytest.raises(UnknownCustomer, match="no customer 'nobody'"):
        usage(world, "nobody", "2026-11-16 00:00")
    with pytest.raises(UnknownCustomer):
        preview(world, "nobody", "2026-11-16 00:00")


def _cli(world: World, *args: str) -> tuple[int, str]:
    env = {
        "METERLINE_WAREHOUSE_URL": world.config.warehouse_url,
        "METERLINE_LEDGER_URL": world.config.ledger_url,
        "METERLINE_CATALOG_PATH": str(CATALOG),
        "COLUMNS": "100",
    }
    settings.cache_clear()
    try:
        result = CliRunner().invoke(main, list(args), env=env)
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


def test_the_commands(sqlite_world: World) -> None:
    world = sqlite_world
    load(world, [Sub("c1", "basic", start="2026-11-01")])
    world.deliver(
        [
            event("c1-s", "c1", "seats", "2026-11-01 00:00", value=3),
            *resolutions("c1", "c1-r", 130, "2026-11-02 00:00", 60, channel="chat"),
        ]
    )
    world.nightly(*(day(f"2026-11-0{d}") for d in range(1, 8)))

    code, out = _cli(world, "usage", "c1", "--as-of", "2026-11-16T00:00:00Z", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["customer"] == "c1" and doc["as_of"].startswith("2026-11-16T00:00:00")
    (sub,) = doc["subscriptions"]
    assert (sub["amount"], sub["amount_minor"]) == ("160.00", 16000)

    code, out = _cli(world, "usage", "c1", "--as-of", "2026-11-16")
    assert code == 0, out
    assert "usage of c1 as of 2026-11-16T00:00:00Z" in out
    assert "USD 115.00" in out and "total so far USD 160.00" in out

    code, out = _cli(world, "preview", "c1", "--as-of", "2026-11-16T09:00:00+09:00")
    assert code == 0, out
    assert "total USD 205.00" in " ".join(out.split())
    assert "sub_c1" in out and "graduated" in out

    code, out = _cli(world, "preview", "c1", "--as-of", "2026-11-16", "--json")
    assert code == 0 and json.loads(out)["invoices"][0]["total_minor"] == 20500

    code, out = _cli(world, "usage", "nobody", "--as-of", "2026-11-16")
    assert code == 3 and "meterline: error: no customer 'nobody'" in out
    code, out = _cli(world, "preview", "c1", "--as-of", "2026-11-16T00:00")
    assert code == 2 and "has no UTC offset" in out
