"""The catalog's per-price `proration` option (docs/catalog.md, docs/rating.md
"Proration of fixed fees"): `prorate` (the default) or `full`, only on a fixed fee (a flat
price, or a price on a `latest` meter); anything else is one problem naming its path,
and `catalog load` exits 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import billing
from billing.catalog import parse_catalog
from meterline.cli import main
from meterline.cli.exits import ExitCode
from meterline.settings import settings


def _catalog(**bodies: dict[str, Any]) -> dict[str, Any]:
    """A catalog with a flat fee, a price on a `latest` meter, a time-weighted seat price
    and a count price; `bodies` adds fields to the USD body of the price named."""
    usd = {
        "fee": {"model": "flat", "amount": "100"},
        "licence": {"model": "per_unit", "unit_amount": "20"},
        "seat": {"model": "per_unit", "unit_amount": "30"},
        "call": {"model": "per_unit", "unit_amount": "1"},
    }
    meters = {"licence": "licences", "seat": "seats", "call": "calls"}
    prices = []
    for price_id, body in usd.items():
        price: dict[str, Any] = {
            "id": price_id,
            "versions": [
                {
                    "effective_from": "2026-01-01",
                    "prices": {"USD": {**body, **bodies.get(price_id, {})}},
                }
            ],
        }
        if price_id in meters:
            price["meter"] = meters[price_id]
        prices.append(price)
    return {
        "meters": [
            {"name": "licences", "aggregation": "latest"},
            {"name": "seats", "aggregation": "time_weighted"},
            {"name": "calls", "aggregation": "count"},
        ],
        "plans": [{"id": "p", "prices": prices}],
    }


def test_a_fixed_fee_may_be_billed_in_full_and_the_option_is_part_of_its_content() -> None:
    plain = parse_catalog(_catalog())
    full = parse_catalog(_catalog(fee={"proration": "full"}, licence={"proration": "full"}))
    written = parse_catalog(_catalog(fee={"proration": "prorate"}))

    def of(parsed: Any, price_id: str) -> Any:
        (version,) = [v for v in parsed.versions if v.price_id == price_id]
        return version

    assert of(full, "fee").checked_price().proration == "full"
    assert of(full, "licence").checked_price().proration == "full"
    assert of(plain, "fee").checked_price().proration is None
    # Billing in full changes what the price charges: a new version label, another
    # catalog; `prorate` written out is the default, the same terms as leaving it out.
    assert of(full, "fee").version != of(plain, "fee").version
    assert full.content_hash != plain.content_hash
    assert of(written, "fee").terms() == of(plain, "fee").terms()
    assert written.content_hash == plain.content_hash


@pytest.mark.parametrize(
    ("price_id", "message"),
    [
        (
            "seat",
            r"plans\[0\] \(p\)\.prices\[2\] \(seat\)\.versions\[0\]\.prices\.USD\.proration: only"
            r" a fixed fee .* this price's meter is time_weighted: its quantity is already"
            r" divided by the whole billing cycle",
        ),
        (
            "call",
            r"prices\[3\] \(call\)\.versions\[0\]\.prices\.USD\.proration: only a fixed fee .*"
            r" meter is count: usage is billed as measured",
        ),
    ],
)
def test_proration_on_a_usage_or_time_weighted_price_is_refused(
    price_id: str, message: str
) -> None:
    with pytest.raises(billing.LoadError, match=message) as info:
        parse_catalog(_catalog(**{price_id: {"proration": "full"}}), "catalog.yaml")
    assert len(info.value.problems) == 1


def test_a_bad_value_is_one_problem_and_catalog_load_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(_catalog(fee={"proration": "daily"})))
    settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main,
            ["catalog", "load", str(path)],
            env={"METERLINE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}"},
        )
    finally:
        settings.cache_clear()
    assert result.exit_code == ExitCode.REFUSED, result.output
    assert "Traceback" not in result.output
    (problem,) = [ln for ln in result.output.splitlines() if "proration" in ln]
    # The path names the field itself (tests/billing/test_proration_breaker.py).
    assert problem.strip().startswith(
        "plans[0] (p).prices[0] (fee).versions[0].prices.USD.proration:"
    )
    assert "must be prorate" in problem and "not 'daily'" in problem
