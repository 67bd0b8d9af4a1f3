"""Customers file: JSONL, YAML and CSV; idempotent re-load; errors name line and field."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

import billing
from billing.db import create_ledger_engine, session_factory
from billing.migrate import upgrade
from billing.models import Customer, Subscription, SubscriptionDiscount
from tests.billing.conftest import Ledger
from tests.billing.factories import CATALOG, CUSTOMERS, write_customers


@pytest.fixture
def ledger(ledger: Ledger) -> Ledger:
    """A migrated ledger with the demo catalog loaded: customers are checked against it
    (plans USD, EUR, GBP)."""
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
    return ledger


def write_yaml(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump(rows, sort_keys=False))
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "end": row["end"] or "",
                    "discounts": json.dumps(row["discounts"]) if row["discounts"] else "",
                }
            )
    return path


WRITERS = {"jsonl": write_customers, "yaml": write_yaml, "csv": write_csv}


def snapshot(ledger: Ledger) -> list[tuple[Any, ...]]:
    with ledger.Session() as session:
        rows = session.execute(
            select(
                Customer.external_id,
                Customer.name,
                Customer.currency,
                Customer.timezone,
                Subscription.external_id,
                Subscription.plan_id,
                Subscription.billing_anchor_day,
                Subscription.start_date,
                Subscription.end_date,
            )
            .join(Subscription.customer)
            .order_by(Subscription.external_id)
        ).all()
        discounts = session.execute(
            select(
                SubscriptionDiscount.price_id,
                SubscriptionDiscount.percent_off,
                SubscriptionDiscount.amount_off,
                SubscriptionDiscount.valid_from,
                SubscriptionDiscount.valid_to,
            )
        ).all()
    return [tuple(r) for r in rows] + [tuple(d) for d in discounts]


@pytest.mark.parametrize("fmt", ["jsonl", "yaml", "csv"])
def test_formats_load_the_same_rows(ledger: Ledger, tmp_path: Path, fmt: str) -> None:
    path = WRITERS[fmt](tmp_path / f"customers.{fmt}", CUSTOMERS)
    with ledger.Session.begin() as session:
        result = billing.load_customers_file(session, path)
    assert (result.customers_created, result.subscriptions_created) == (3, 3)
    state = snapshot(ledger)
    assert ("fin_resolution", Decimal("10"), None) == state[-1][:3]
    assert state[0][:5] == ("cus_00001", "Acme 1", "USD", "America/New_York", "sub_00001")
    with ledger.Session.begin() as session:
        again = billing.load_customers_file(session, path)
    assert not again.changed
    assert snapshot(ledger) == state


def test_reload_updates_in_place(ledger: Ledger, tmp_path: Path) -> None:
    path = write_customers(tmp_path / "c.jsonl")
    with ledger.Session.begin() as session:
        billing.load_customers_file(session, path)
    with ledger.Session() as session:
        ids = dict(session.execute(select(Subscription.external_id, Subscription.id)).all())
    rows = [dict(r) for r in CUSTOMERS]
    rows[0] = {**rows[0], "name": "Acme One", "plan": "volume", "discounts": []}
    rows[1] = {
        **rows[1],
        "discounts": [{"price": "seat_advanced", "amount_off": "5.50", "valid_from": "2026-02-01"}],
    }
    with ledger.Session.begin() as session:
        result = billing.load_customers_file(session, write_customers(tmp_path / "c2.jsonl", rows))
    assert (result.customers_created, result.customers_updated) == (0, 1)
    assert (result.subscriptions_created, result.subscriptions_updated) == (0, 1)
    assert result.discounts_replaced == 2
    with ledger.Session() as session:
        assert dict(session.execute(select(Subscription.external_id, Subscription.id)).all()) == ids
        acme = session.scalars(
            select(Subscription).where(Subscription.external_id == "sub_00001")
        ).one()
        assert (acme.customer.name, acme.plan_id, acme.discounts) == ("Acme One", "volume", [])
        globex = session.scalars(
            select(Subscription).where(Subscription.external_id == "sub_00002")
        ).one()
        assert [(d.price_id, d.amount_off, d.percent_off) for d in globex.discounts] == [
            ("seat_advanced", Decimal("5.50"), None)
        ]


def bad(tmp_path: Path, index: int, **changes: Any) -> Path:
    rows = [dict(r) for r in CUSTOMERS]
    rows[index] = {**rows[index], **changes}
    return write_customers(tmp_path / "bad.jsonl", rows)


@pytest.mark.parametrize(
    ("index", "changes", "message"),
    [
        (1, {"billing_anchor_day": 32}, "line 2: billing_anchor_day: must be between 1 and 31"),
        (0, {"currency": "usd"}, "line 1: currency: .*ISO 4217"),
        (2, {"timezone": "Mars/Base"}, "line 3: timezone: unknown IANA timezone"),
        (0, {"start": "2026-02-30"}, "line 1: start: "),
        (0, {"end": "2025-12-01"}, r"line 1: end: 2025-12-01 is not after start \(2026-01-01\)"),
        (1, {"plan": ""}, "line 2: plan: must not be empty"),
        (1, {"colour": "blue"}, "line 2: colour: unknown field"),
        (
            0,
            {"discounts": [{"price": "x", "valid_from": "2026-01-01"}]},
            "line 1: discounts.0: give exactly one of percent_off and amount_off",
        ),
        (
            0,
            {"discounts": [{"price": "x", "percent_off": "150", "valid_from": "2026-01-01"}]},
            "line 1: discounts.0.percent_off: must be above 0 and at most 100, got 150",
        ),
        (
            0,
            {"discounts": [{"price": "x", "amount_off": "1.234", "valid_from": "2026-01-01"}]},
            "line 1: discounts.0.amount_off: amount_off 1.234 has more than 2 decimal",
        ),
        (
            2,
            {"name": "Acme 1", "customer_id": "cus_00001"},
            "line 3: timezone: customer cus_00001 has 'America/New_York' on line 1",
        ),
        (
            2,
            {"subscription_id": "sub_00001"},
            "line 3: subscription_id: sub_00001 already on line 1",
        ),
    ],
)
def test_invalid_rows_name_line_and_field(
    ledger: Ledger, tmp_path: Path, index: int, changes: dict[str, Any], message: str
) -> None:
    with ledger.Session.begin() as session, pytest.raises(billing.LoadError, match=message):
        billing.load_customers_file(session, bad(tmp_path, index, **changes))
    assert snapshot(ledger) == []  # all or nothing


def test_every_problem_is_reported(tmp_path: Path) -> None:
    rows = [dict(r) for r in CUSTOMERS]
    rows[0]["billing_anchor_day"] = 0
    rows[2]["currency"] = "XXX1"
    path = write_customers(tmp_path / "c.jsonl", rows)
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(billing.LoadError) as info:
        billing.read_customers(path)
    problems = info.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 3", "line 4"]
    assert "invalid JSON" in problems[2]


def test_json_numbers_are_exact_and_floats_refused(tmp_path: Path) -> None:
    rows = [dict(r) for r in CUSTOMERS]
    rows[0]["discounts"] = [{"price": "x", "percent_off": 12.5, "valid_from": "2026-01-01"}]
    parsed = billing.read_customers(write_customers(tmp_path / "c.jsonl", rows))
    assert parsed[0][1].discounts[0].percent_off == Decimal("12.5")
    with pytest.raises(Exception, match="not a float"):
        billing.customers.DiscountRow(price="x", percent_off=12.5, valid_from="2026-01-01")  # type: ignore[arg-type]


def test_csv_and_yaml_errors_name_lines(tmp_path: Path) -> None:
    rows = [dict(r) for r in CUSTOMERS]
    rows[1]["billing_anchor_day"] = 40
    with pytest.raises(billing.LoadError, match="line 3: billing_anchor_day"):
        billing.read_customers(write_csv(tmp_path / "c.csv", rows))
    with pytest.raises(billing.LoadError, match=r"line \d+: billing_anchor_day"):
        billing.read_customers(write_yaml(tmp_path / "c.yaml", rows))
    with pytest.raises(billing.LoadError, match="unknown file type"):
        billing.read_customers(tmp_path / "c.txt")


def test_billed_subscription_keeps_its_terms(loaded: Ledger, tmp_path: Path) -> None:
    from tests.billing.factories import period_of, standard_charges

    with loaded.Session.begin() as session:
        billing.post_charges(
            session, "sub_00001", period_of("sub_00001", 2026, 3), standard_charges(session)
        )
    rows = [dict(r) for r in CUSTOMERS]
    rows[0]["billing_anchor_day"] = 15
    with (
        loaded.Session.begin() as session,
        pytest.raises(
            billing.LoadError,
            match="line 1: billing_anchor_day: subscription sub_00001 has draft invoice",
        ),
    ):
        billing.load_customers_file(session, write_customers(tmp_path / "c.jsonl", rows))


def test_unpriced_subscriptions_are_refused_with_what_exists(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Issue 11 item 4: a misspelt plan and a currency the plan has no price in were
    accepted, then billed 0.00. Each is refused, naming line, field and what exists."""
    rows = [dict(r) for r in CUSTOMERS]
    rows[0] = {**rows[0], "plan": "standrd"}
    rows[1] = {**rows[1], "currency": "JPY"}
    rows[2] = {
        **rows[2],
        "discounts": [{"price": "seat_essential", "percent_off": "10", "valid_from": "2026-01-01"}],
    }
    with ledger.Session.begin() as session, pytest.raises(billing.LoadError) as info:
        billing.load_customers_file(session, write_customers(tmp_path / "c.jsonl", rows))
    assert info.value.problems == [
        "line 1: plan: unknown plan 'standrd'; the catalog's plans are committed, standard, volume",
        "line 2: currency: plan volume has no price in JPY; it is priced in EUR, GBP, USD",
        "line 3: discounts.0.price: plan committed has no price 'seat_essential'; its prices"
        " are fin_resolution, platform_fee, seat_advanced",
    ]
    assert snapshot(ledger) == []  # all or nothing


def test_customers_need_a_loaded_catalog(ledger_url: str, tmp_path: Path) -> None:
    upgrade(ledger_url)
    engine = create_ledger_engine(ledger_url)
    try:
        with (
            session_factory(engine).begin() as session,
            pytest.raises(
                billing.LoadError, match="line 1: plan: 'standard', but no catalog is loaded"
            ),
        ):
            billing.load_customers_file(session, write_customers(tmp_path / "c.jsonl"))
    finally:
        engine.dispose()
