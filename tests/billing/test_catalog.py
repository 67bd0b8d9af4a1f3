"""Catalog loading: the whole file validated with path names, stored as a catalog version,
idempotent however numbers are written, price versions versioned by content."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

import billing
from billing.catalog import (
    CatalogChangeRefused,
    CatalogNotLoaded,
    current_catalog,
    parse_catalog,
    read_catalog,
)
from billing.models import CatalogVersion, Plan, PriceVersion
from tests.billing.conftest import Ledger
from tests.billing.factories import CATALOG, period_of, standard_charges, usage, versions


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


# --- the whole catalog is validated at load ---------------------------------------------


def _demo() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(CATALOG.read_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["meters"][0].update(aggregation="summ"),
            r"meters\[0\] \(fin_resolution\)\.aggregation: 'summ' is not an aggregation"
            r" \(one of: sum, count, max, unique_count, latest, time_weighted\)",
        ),
        (
            lambda d: d["meters"][1].update(dimensions=["seat_type", "region"]),
            r"meters\[1\] \(seats\)\.dimensions: 'region' is not one of the meter's properties"
            r" \(seat_type\)",
        ),
        (
            lambda d: d["meters"][0].update(filter={"region": "eu"}),
            r"meters\[0\] \(fin_resolution\)\.filter: 'region' is not one of the meter's"
            r" properties \(channel\)",
        ),
        (
            lambda d: d["meters"][0].update(colour="red"),
            r"meters\[0\] \(fin_resolution\)\.colour: unknown field",
        ),
        (
            lambda d: d["meters"].append(dict(d["meters"][0])),
            r"meters\[2\] \(fin_resolution\)\.name: meter fin_resolution is defined twice",
        ),
        (
            lambda d: d["plans"][0]["prices"][3].update(meter="fin_resolutions"),
            r"plans\[0\] \(standard\)\.prices\[3\] \(fin_resolution\)\.meter: 'fin_resolutions'"
            r" is not a meter of this catalog \(fin_resolution, seats\)",
        ),
        (
            lambda d: d["plans"][0]["prices"][0].update(filter={"seat_tier": "essential"}),
            r"plans\[0\] \(standard\)\.prices\[0\] \(seat_essential\)\.filter\.seat_tier:"
            r" 'seat_tier' is not a dimension of meter seats \(dimensions: seat_type\)",
        ),
        (
            lambda d: d["plans"][0]["prices"][0].update(filter={"seat_type": "platinum"}),
            r"prices\[0\] \(seat_essential\)\.filter\.seat_type: 'platinum' is not an allowed"
            r" value of seat_type \(essential, advanced, expert\)",
        ),
        (
            lambda d: d["plans"][2]["prices"][0].update(filter={"seat_type": "expert"}),
            r"plans\[2\] \(committed\)\.prices\[0\] \(platform_fee\)\.filter: a price without a"
            r" meter \(a flat fee\) has no filter",
        ),
        (lambda d: d.update(meter=[]), r"catalog\.meter: unknown field"),
        (lambda d: d.pop("meters"), r"meters: must be a non-empty list of meters"),
        (
            lambda d: d.update(rounding_mode="half_even"),
            r"rounding_mode: half_even: close rounds every line half_up today",
        ),
        (
            lambda d: d["plans"][0]["prices"][0]["versions"][0].update(effective="2026-02-01"),
            r"prices\[0\] \(seat_essential\)\.versions\[0\]\.effective: unknown field",
        ),
    ],
)
def test_the_whole_catalog_is_checked_naming_entry_and_field(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = _demo()
    mutate(data)
    with pytest.raises(billing.LoadError, match=message):
        parse_catalog(data, "catalog.yaml")


def test_every_problem_is_reported_at_once() -> None:
    data = _demo()
    data["meters"][0]["aggregation"] = "summ"
    data["plans"][1]["prices"][0]["versions"][0]["prices"]["USD"]["unit_amount"] = "-85"
    with pytest.raises(billing.LoadError) as info:
        parse_catalog(data, "catalog.yaml")
    assert info.value.problems == [
        "meters[0] (fin_resolution).aggregation: 'summ' is not an aggregation (one of: sum,"
        " count, max, unique_count, latest, time_weighted)",
        "plans[1] (volume).prices[0] (seat_advanced).versions[0].prices.USD: price"
        " 'volume/seat_advanced/USD': unit_amount must not be negative, got -85",
    ]


def test_a_price_on_a_misspelt_meter_is_named_even_when_a_meter_is_invalid() -> None:
    data = _demo()
    data["meters"][1]["aggregation"] = "time_weighed"
    data["plans"][0]["prices"][3]["meter"] = "fin_resolutions"
    with pytest.raises(billing.LoadError) as info:
        parse_catalog(data, "catalog.yaml")
    # The seats prices are not reported again; the misspelt meter is, with what exists.
    assert info.value.problems == [
        "meters[1] (seats).aggregation: 'time_weighed' is not an aggregation (one of: sum,"
        " count, max, unique_count, latest, time_weighted)",
        "plans[0] (standard).prices[3] (fin_resolution).meter: 'fin_resolutions' is not a"
        " meter of this catalog (fin_resolution, seats)",
    ]


def test_an_alias_bomb_is_refused_within_a_second(tmp_path: Path) -> None:
    lines = ['lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("meters: *i")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(
        billing.LoadError, match=r"line 1, column 6: YAML anchor &a is not accepted"
    ):
        read_catalog(path)
    assert time.perf_counter() - started < 1.0


# --- the catalog the ledger holds ------------------------------------------------------


def test_nothing_is_read_before_a_catalog_is_loaded(ledger: Ledger) -> None:
    with ledger.Session() as session, pytest.raises(CatalogNotLoaded) as info:
        current_catalog(session)
    assert str(info.value) == (
        "no catalog is loaded in the ledger: run `meterline catalog load FILE` first"
        " (the meters, plans and prices every command reads)"
    )


def test_a_load_is_a_catalog_version_read_back_typed(ledger: Ledger) -> None:
    with ledger.Session.begin() as session:
        first = billing.load_catalog(session, CATALOG)
    assert (first.catalog_version, first.catalog_version_created) == (1, True)
    with ledger.Session() as session:
        current = current_catalog(session)
    assert current.version == 1
    assert current.source == str(CATALOG)
    assert current.meters.get("seats").aggregation.value == "time_weighted"
    assert current.meters.get("fin_resolution").dimensions == ["channel"]
    assert [p.id for p in current.plans] == ["standard", "volume", "committed"]
    assert len(current.prices) == 33
    assert current.content_hash == read_catalog(CATALOG).content_hash
    # The same content again: no new catalog version.
    with ledger.Session.begin() as session:
        again = billing.load_catalog(session, CATALOG)
    assert (again.catalog_version, again.changed) == (1, False)


UNQUOTED = re.compile(r'(amount|unit_amount|free_units|USD|EUR|GBP): "([0-9.]+)"')


def test_quoted_and_unquoted_numbers_load_to_identical_prices(
    ledger: Ledger, tmp_path: Path
) -> None:
    text = CATALOG.read_text()
    unquoted = UNQUOTED.sub(r"\1: \2", text)
    assert unquoted.count('"0.99"') == 0 and "unit_amount: 0.99" in unquoted
    path = tmp_path / "unquoted.yaml"
    path.write_text(unquoted)
    quoted, plain = read_catalog(CATALOG), read_catalog(path)
    assert [(v.slot, v.price) for v in quoted.versions] == [
        (v.slot, v.price) for v in plain.versions
    ]
    assert quoted.content_hash == plain.content_hash
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
    with ledger.Session.begin() as session:
        result = billing.load_catalog(session, path)
    assert not result.changed and result.versions_unchanged == 33


def test_numbers_are_read_exactly(tmp_path: Path) -> None:
    text = (
        CATALOG.read_text()
        .replace(
            'USD: {model: per_unit, unit_amount: "0.99"}',
            "USD: {model: per_unit, unit_amount: 12345678901234567.123456789}",
        )
        .replace(
            'EUR: {model: per_unit, unit_amount: "0.92"}',
            "EUR: {model: per_unit, unit_amount: 1e-2}",
        )
    )
    path = tmp_path / "exact.yaml"
    path.write_text(text)
    fin = {
        (v.currency): v
        for v in read_catalog(path).versions
        if (v.plan_id, v.price_id) == ("standard", "fin_resolution")
    }
    assert fin["USD"].price is not None and fin["EUR"].price is not None
    assert fin["USD"].price.unit_amount == Decimal("12345678901234567.123456789")
    assert fin["USD"].body["unit_amount"] == "12345678901234567.123456789"
    assert fin["EUR"].price.unit_amount == Decimal("0.01")
    assert fin["EUR"].body["unit_amount"] == "0.01"


# --- the edit rule: a price that priced a finalized invoice never changes in place ------

MARCH = period_of("sub_00001", 2026, 3)  # standard, USD, America/New_York: Mar 1 - Apr 1
GRACE = timedelta(days=3)


def _finalize(ledger: Ledger, sub: str, period: billing.Period, charges) -> int:  # type: ignore[no-untyped-def]
    with ledger.Session.begin() as session:
        result = billing.post_charges(session, sub, period, charges(session))
    (invoice_id,) = result.invoice_ids.values()
    with ledger.Session.begin() as session:
        billing.finalize(session, invoice_id, as_of=period.end + GRACE, grace=GRACE)
    return invoice_id


@pytest.fixture
def march(loaded: Ledger) -> int:
    """sub_00001's March invoice, finalized, priced by the demo catalog."""
    return _finalize(loaded, "sub_00001", MARCH, standard_charges)


def _write(tmp_path: Path, data: dict, name: str = "edited.yaml") -> Path:  # type: ignore[type-arg]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _fin(data: dict) -> dict:  # type: ignore[type-arg]
    """The demo catalog's plan standard, price fin_resolution."""
    return data["plans"][0]["prices"][3]


def _load(ledger: Ledger, path: Path, **kw: object) -> billing.CatalogLoadResult:
    with ledger.Session.begin() as session:
        return billing.load_catalog(session, path, **kw)  # type: ignore[arg-type]


def _state(ledger: Ledger) -> list[tuple[object, ...]]:
    with ledger.Session() as session:
        versions = session.execute(
            select(PriceVersion.id, PriceVersion.version, PriceVersion.is_current).order_by(
                PriceVersion.id
            )
        ).all()
        catalogs = session.scalars(select(CatalogVersion.id)).all()
    return [*versions, tuple(catalogs)]


def test_editing_a_price_that_priced_a_finalized_invoice_is_refused(
    loaded: Ledger, march: int, tmp_path: Path
) -> None:
    with loaded.Session() as session:
        label = versions(session, "standard", "USD")["fin_resolution"]
    before = _state(loaded)
    data = _demo()
    _fin(data)["versions"][0]["prices"]["USD"]["unit_amount"] = "0.95"
    with pytest.raises(CatalogChangeRefused) as info:
        _load(loaded, _write(tmp_path, data))
    assert info.value.invoices == [march]
    assert info.value.problems == [
        f"price standard/fin_resolution USD: this catalog changes what 1 finalized invoice(s)"
        f" ({march}) were charged; version(s) {label} priced them. A price version that priced"
        " a finalized invoice never changes in place: give the new price a version of its own"
        " with effective_from 2026-04-01 or later, or load with --reprice to re-price those"
        " invoices with adjustment lines on the next open invoices"
    ]
    assert _state(loaded) == before  # nothing stored


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        # A version of its own from the day after March (New York): accepted.
        (lambda d: _fin(d)["versions"].append(_new_version("2026-04-01")), None),
        # A version starting inside March would re-price it.
        (lambda d: _fin(d)["versions"].append(_new_version("2026-03-15")), "fin_resolution USD"),
        # Removing the version that priced March (the EUR and GBP ones priced nothing).
        (lambda d: _fin(d)["versions"][0]["prices"].pop("EUR"), None),
        (lambda d: _fin(d)["versions"][0]["prices"].pop("USD"), "fin_resolution USD"),
        # The price moved to another meter filter: every version's content changes.
        (lambda d: _fin(d).update(filter={"channel": "chat"}), "fin_resolution USD"),
        # A price added to the plan from before March would charge March too.
        (
            lambda d: d["plans"][0]["prices"].append(
                {"id": "support", "versions": [_flat("2026-01-01")]}
            ),
            "standard/support USD",
        ),
        (
            lambda d: d["plans"][0]["prices"].append(
                {"id": "support", "versions": [_flat("2026-04-01")]}
            ),
            None,
        ),
        # Another plan's price: March is not on it.
        (lambda d: d["plans"][1]["prices"][2]["versions"].pop(1), None),
    ],
)
def test_which_changes_touch_a_finalized_invoice(
    loaded: Ledger,
    march: int,
    tmp_path: Path,
    change,
    refused: str | None,  # type: ignore[no-untyped-def]
) -> None:
    data = _demo()
    change(data)
    path = _write(tmp_path, data)
    if refused is None:
        assert _load(loaded, path).changed
    else:
        with pytest.raises(CatalogChangeRefused, match=refused) as info:
            _load(loaded, path)
        assert info.value.invoices == [march]


def _new_version(effective: str) -> dict:  # type: ignore[type-arg]
    return {
        "effective_from": effective,
        "prices": {
            "USD": {"model": "per_unit", "unit_amount": "0.95"},
            "EUR": {"model": "per_unit", "unit_amount": "0.90"},
            "GBP": {"model": "per_unit", "unit_amount": "0.75"},
        },
    }


def _flat(effective: str) -> dict:  # type: ignore[type-arg]
    return {
        "effective_from": effective,
        "prices": {c: {"model": "flat", "amount": "10"} for c in ("USD", "EUR", "GBP")},
    }


def test_a_draft_invoice_does_not_hold_a_price(loaded: Ledger, tmp_path: Path) -> None:
    with loaded.Session.begin() as session:
        billing.post_charges(session, "sub_00001", MARCH, standard_charges(session))
    data = _demo()
    _fin(data)["versions"][0]["prices"]["USD"]["unit_amount"] = "0.95"
    result = _load(loaded, _write(tmp_path, data))
    assert (result.versions_created, result.versions_superseded, result.repriced) == (1, 1, ())


def test_a_minimum_commitment_that_trued_up_a_finalized_invoice_is_refused(
    loaded: Ledger, tmp_path: Path
) -> None:
    period = period_of("sub_00003", 2026, 3)
    committed = _finalize(
        loaded,
        "sub_00003",
        period,
        lambda s: [
            usage(
                "platform_fee",
                versions(s, "committed", "USD")["platform_fee"],
                1,
                "250",
                meter=None,
                kind="flat",
            )
        ],
    )
    data = _demo()
    data["plans"][2]["minimum_commitment"]["USD"] = "2500"
    with pytest.raises(CatalogChangeRefused) as info:
        _load(loaded, _write(tmp_path, data))
    assert info.value.problems[0].startswith(
        f"plan committed minimum_commitment USD: this catalog changes the minimum that 1"
        f" finalized invoice(s) ({committed}) were trued up to"
    )
    # The same amount written another way is no change.
    data["plans"][2]["minimum_commitment"]["USD"] = "2000.00"
    assert not _load(loaded, _write(tmp_path, data, "same.yaml")).changed


def test_reprice_stores_the_change_and_names_the_periods_to_correct(
    loaded: Ledger, march: int, tmp_path: Path
) -> None:
    data = _demo()
    _fin(data)["versions"][0]["prices"]["USD"]["unit_amount"] = "0.95"
    result = _load(loaded, _write(tmp_path, data), reprice=True)
    assert (result.versions_created, result.versions_superseded) == (1, 1)
    assert [(p.invoice_id, p.subscription, p.period) for p in result.repriced] == [
        (march, "sub_00001", MARCH)
    ]
    with loaded.Session() as session:
        current = versions(session, "standard", "USD")["fin_resolution"]
        summary = session.scalars(
            select(CatalogVersion.summary).order_by(CatalogVersion.id.desc())
        ).first()
    (edited,) = [
        v.version
        for v in read_catalog(_write(tmp_path, data)).versions
        if v.slot == ("standard", "fin_resolution", "USD", date(2026, 1, 1))
    ]
    assert current == edited
    assert summary is not None and summary["repriced_invoices"] == [march]


def test_a_meter_that_counted_a_finalized_invoice_never_changes_how_it_counts(
    loaded: Ledger, march: int, tmp_path: Path
) -> None:
    data = _demo()
    data["meters"][0]["aggregation"] = "sum"
    with pytest.raises(
        CatalogChangeRefused, match=r"meter fin_resolution: this catalog changes how it counts"
    ):
        _load(loaded, _write(tmp_path, data), reprice=True)
    # Describing it better changes nothing it counted.
    data = _demo()
    data["meters"][0]["description"] = "One resolution."
    data["meters"][0]["properties"]["channel"].append("whatsapp")
    result = _load(loaded, _write(tmp_path, data, "described.yaml"))
    assert result.catalog_version_created and result.versions_created == 0


def test_a_subscription_keeps_its_plan_and_currency(loaded: Ledger, tmp_path: Path) -> None:
    data = _demo()
    data["plans"] = [p for p in data["plans"] if p["id"] != "volume"]
    for price in data["plans"][0]["prices"]:
        for version in price["versions"]:
            version["prices"].pop("USD")
    with pytest.raises(billing.LoadError) as info:
        _load(loaded, _write(tmp_path, data))
    assert info.value.problems == [
        "plan standard: no price in USD in this catalog, but subscription(s) sub_00001 are on"
        " it in USD: keep it",
        "plan volume: no such plan in this catalog, but subscription(s) sub_00002 are on it in"
        " EUR: keep it",
    ]
