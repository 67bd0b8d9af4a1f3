"""Catalog loading: idempotent, versioned by content, validated with path names."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

import billing
from billing.catalog import parse_catalog, read_catalog
from billing.models import Plan, PriceVersion
from tests.billing.conftest import Ledger
from tests.billing.factories import CATALOG


def _versions(ledger: Ledger) -> int:
    with ledger.Session() as session:
        return int(session.scalar(select(func.count()).select_from(PriceVersion)) or 0)


def test_demo_catalog_loads_once(ledger: Ledger) -> None:
    with ledger.Session.begin() as session:
        first = billing.load_catalog(session, CATALOG)
    assert (first.plans_created, first.versions_created) == (3, 33)
    with ledger.Session.begin() as session:
        again = billing.load_catalog(session, CATALOG)
    assert not again.changed
    assert again.versions_unchanged == 33
    assert _versions(ledger) == 33
    with ledger.Session() as session:
        committed = session.get(Plan, "committed")
        assert committed is not None
        assert committed.minimum_commitment == {"USD": "2000", "EUR": "1850", "GBP": "1600"}
        body = session.scalars(
            select(PriceVersion.body).where(
                PriceVersion.plan_id == "volume",
                PriceVersion.price_id == "fin_resolution",
                PriceVersion.currency == "USD",
                PriceVersion.effective_from == date(2026, 11, 15),
            )
        ).one()
        assert body["tiers"][1] == {"up_to": 10000, "unit_amount": "0.85"}


def test_editing_one_body_adds_one_version_and_keeps_the_old(
    ledger: Ledger, tmp_path: Path
) -> None:
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
    data = yaml.safe_load(CATALOG.read_text())
    data["plans"][0]["prices"][3]["versions"][0]["prices"]["EUR"]["unit_amount"] = "0.95"
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(data))
    with ledger.Session.begin() as session:
        result = billing.load_catalog(session, edited)
    assert (result.versions_created, result.versions_superseded) == (1, 1)
    assert _versions(ledger) == 34
    with ledger.Session() as session:
        rows = session.scalars(
            select(PriceVersion)
            .where(
                PriceVersion.plan_id == "standard",
                PriceVersion.price_id == "fin_resolution",
                PriceVersion.currency == "EUR",
            )
            .order_by(PriceVersion.id)
        ).all()
        assert [(r.body["unit_amount"], r.is_current) for r in rows] == [
            ("0.92", False),
            ("0.95", True),
        ]
        assert rows[0].effective_from == rows[1].effective_from
        assert rows[0].version != rows[1].version
        in_effect = {
            v.price_id: v.version
            for v in billing.price_versions_in_effect(session, "standard", "EUR", date(2026, 3, 1))
        }
        assert in_effect["fin_resolution"] == rows[1].version
    # Loading the edited file again is a no-op; going back to the original restores it.
    with ledger.Session.begin() as session:
        assert not billing.load_catalog(session, edited).changed
    with ledger.Session.begin() as session:
        back = billing.load_catalog(session, CATALOG)
    assert (back.versions_created, back.versions_restored, back.versions_superseded) == (0, 1, 1)
    assert _versions(ledger) == 34


def test_version_labels_come_from_content(ledger: Ledger) -> None:
    parsed = read_catalog(CATALOG)
    with ledger.Session.begin() as session:
        billing.load_catalog(session, parsed)
    with ledger.Session() as session:
        stored = {
            (v.plan_id, v.price_id, v.currency, v.effective_from): v.version
            for v in session.scalars(select(PriceVersion))
        }
    for v in parsed.versions:
        assert stored[(v.plan_id, v.price_id, v.currency, v.effective_from)] == v.version
        assert v.version.startswith(v.effective_from.isoformat() + "#")


def test_price_in_effect_follows_effective_from(ledger: Ledger) -> None:
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
    with ledger.Session() as session:
        before = billing.price_versions_in_effect(session, "volume", "USD", date(2026, 11, 14))
        after = billing.price_versions_in_effect(session, "volume", "USD", date(2026, 11, 15))
        none = billing.price_versions_in_effect(session, "volume", "USD", date(2025, 12, 31))
    fin = {v.price_id: v for v in before}["fin_resolution"]
    assert fin.effective_from == date(2026, 1, 1)
    assert {v.price_id: v for v in after}["fin_resolution"].effective_from == date(2026, 11, 15)
    assert none == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["plans"][0].pop("prices"),
            r"plans\[0\] \(standard\)\.prices: must be a non-empty",
        ),
        (
            lambda d: d["plans"][1].update(id="standard"),
            r"plans\[1\] \(standard\)\.id: duplicate plan",
        ),
        (
            lambda d: d["plans"][0]["prices"][1].update(id=d["plans"][0]["prices"][0]["id"]),
            r"plans\[0\] \(standard\)\.prices\[1\] \(seat_essential\)\.id: duplicate price id "
            r"in plan standard",
        ),
        (
            lambda d: d["plans"][0]["prices"].append("seat"),
            r"plans\[0\] \(standard\)\.prices\[\d+\]: must be a mapping",
        ),
        (lambda d: d["plans"][1].update(id=" "), r"plans\[1\]\.id: must be a non-empty string"),
        (
            lambda d: d["plans"][0]["prices"][0]["versions"][0].update(effective_from="2026-13-01"),
            r"prices\[0\] \(seat_essential\)\.versions\[0\]\.effective_from: must be a date",
        ),
        (
            lambda d: d["plans"][0]["prices"][0]["versions"][0]["prices"].update(
                XYZ={"model": "flat"}
            ),
            r"versions\[0\]\.prices\.XYZ: unknown ISO 4217 currency",
        ),
        (
            lambda d: d["plans"][0]["prices"][0]["versions"][0]["prices"]["USD"].pop("model"),
            r"prices\.USD: must be a price body with a `model`",
        ),
    ],
)
def test_invalid_catalogs_name_the_path(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(CATALOG.read_text())
    mutate(data)
    with pytest.raises(billing.LoadError, match=message):
        parse_catalog(data, "catalog.yaml")


def test_rating_engine_validates_bodies() -> None:
    data = yaml.safe_load(CATALOG.read_text())
    data["plans"][0]["prices"][0]["versions"][0]["prices"]["USD"] = {"model": "per_unit"}
    with pytest.raises(billing.LoadError, match=r"versions\[0\]\.prices\.USD: "):
        parse_catalog(data, "catalog.yaml")


def test_yaml_floats_are_read_as_exact_decimals(tmp_path: Path) -> None:
    text = CATALOG.read_text().replace('unit_amount: "0.99"}', "unit_amount: 0.99}", 1)
    assert "unit_amount: 0.99}" in text
    path = tmp_path / "floats.yaml"
    path.write_text(text)
    parsed = read_catalog(path)
    quoted = read_catalog(CATALOG)
    # 0.99 unquoted is the decimal 0.99, not a binary float: same body, same version.
    assert [v.version for v in parsed.versions] == [v.version for v in quoted.versions]
