"""`meterline audit explain` recomputes every line of a generated month from the raw
events and agrees with what was posted, to the cent and to 1e-9 of a unit."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import select

from billing.db import create_ledger_engine, session_factory
from billing.models import Invoice
from billing.periods import Period
from meterline.audit.gather import AuditError, explain_line, explain_lines, rate_periods
from meterline.connections import open_warehouse
from meterline.jobs.close import Due, Rater
from rating import RoundingMode
from tests.audit.conftest import World


def test_explain_agrees_on_every_line_of_the_month(month: World) -> None:
    ids = month.line_ids()
    docs = explain_lines(ids, config=month.config)
    assert [d["line"]["id"] for d in docs] == ids

    not_agreeing = [
        (d["line"]["id"], d["status"], d["difference"], d["notes"])
        for d in docs
        if d["status"] != "agrees"
    ]
    assert not_agreeing == []
    for doc in docs:
        line = doc["line"]
        assert doc["difference"] == {
            "quantity": "0",
            "amount": doc["difference"]["amount"],
            "amount_minor": 0,
            "amount_precise": "0",
        }
        assert Decimal(doc["difference"]["amount"]) == 0
        assert doc["net"]["difference"]["amount_minor"] == 0
        assert doc["recomputed"]["key"] == line["idempotency_key"]
        assert doc["recomputed"]["amount_minor"] == line["amount_minor"]
        assert doc["late_events"]["count"] == 0
        period = doc["invoice"]["period"]
        assert period["start_utc"].endswith("Z") and period["timezone"]
        if line["kind"] != "usage":
            continue
        chain = doc["quantity"]
        # The rollup holds exactly the raw events of the window, and gives the same quantity.
        assert chain["raw_vs_rollup"] == {"events": 0, "value_sum": "0"}
        for window in chain["windows"]:
            assert window["raw_quantity"] == window["rollup_quantity"]
        windowed = sum(Decimal(w["raw_quantity"]) for w in chain["windows"])
        # A third opinion straight from the events, by the meter's own rule.
        if chain["aggregation"] == "count":
            assert Decimal(chain["from_events"]) == Decimal(line["quantity"]) == windowed
            assert (
                chain["raw_events"]["events"]
                == chain["rollup"]["events"]
                == int(Decimal(line["quantity"]))
            )
        if chain["aggregation"] == "time_weighted":
            assert Decimal(chain["from_events"]) == Decimal(line["quantity"])
            held = sum(Decimal(lv["share_of_cycle"]) for lv in chain["levels"])
            assert abs(held - Decimal(line["quantity"])) <= Decimal("1e-9") * len(chain["levels"])
        if chain["raw_events"]["events"]:
            assert doc["sample_events"], line

    # The month exercised every kind of line and a price change inside a period.
    kinds = Counter(d["line"]["kind"] for d in docs)
    assert {"usage", "flat", "discount", "minimum_true_up"} <= set(kinds), kinds
    assert any(len(d.get("quantity", {}).get("windows", [])) == 2 for d in docs), (
        "no line spans two price versions"
    )
    assert any(d["invoice"]["period"]["timezone"] != "UTC" for d in docs)
    seats = [d for d in docs if d["line"]["meter"] == "seats" and d["line"]["kind"] == "usage"]
    assert seats and all(d["quantity"]["levels"] for d in seats if Decimal(d["line"]["quantity"]))

    # Seats: each level with the hours it was held, as a share of the billing cycle.
    changed = [d for d in seats if len(d["quantity"]["levels"]) > 1]
    assert changed, "no seat count changed during the month"
    for doc in changed:
        cycle_hours = Decimal(doc["invoice"]["billing_cycle"]["hours"])
        for level in doc["quantity"]["levels"]:
            expected = Decimal(level["value"]) * level["held_ms"] / (cycle_hours * 3_600_000)
            assert Decimal(level["share_of_cycle"]) == expected.quantize(Decimal("1e-9"))
            assert level["events"]


def test_rate_periods_from_the_rollup_is_what_close_rates(month: World) -> None:
    """The audit re-rates with close's own rate_periods: from the rollup it gives exactly
    the lines close posted, key by key and content by content."""
    engine = create_ledger_engine(month.config.ledger_url)
    try:
        with session_factory(engine)() as session, open_warehouse(month.config) as wh:
            invoices = session.scalars(select(Invoice).where(Invoice.status == "finalized")).all()
            due = {
                i.id: Due(
                    i.subscription, i.customer.external_id, Period(i.period_start, i.period_end)
                )
                for i in invoices
            }
            rater = Rater(session, wh, month.meters, RoundingMode.HALF_UP)
            got = rate_periods(rater, list(due.values()))
            assert due and not any(r.error for r in got.values())
            for inv in invoices:
                posted = {
                    ln.idempotency_key: ln.content_hash
                    for ln in inv.lines
                    if ln.kind != "adjustment"
                }
                rated = {k: c.content_hash() for k, c in got[due[inv.id]].charges.items()}
                assert rated == posted, inv.id
    finally:
        engine.dispose()


def test_explain_an_unknown_line(month: World) -> None:
    with pytest.raises(AuditError, match="no invoice line 999999"):
        explain_line(999999, config=month.config)
