"""The simulated worlds' catalog: three meters and three plans, with a price change
mid-month. One function builds it as the catalog file's data (docs/catalog.md); the
pipeline reads it from that file, the model from the same data.

Amounts are decimal strings in major units, scaled per currency from a list price in
"units" (world.SCALE), so every currency bills the same shape of invoice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from meterline.simulation.world import CHANNELS, SCALE, World

EPOCH = "2026-01-01"


def _money(units: str, currency: str) -> str:
    return format(Decimal(units) * SCALE[currency], "f")


def _per_currency(body: Any) -> dict[str, Any]:
    """{currency: body(currency)} for every currency a world uses."""
    return {cur: body(cur) for cur in SCALE}


def _per_unit(units: str) -> Any:
    return lambda cur: {"model": "per_unit", "unit_amount": _money(units, cur)}


def _tiers(model: str, first_up_to: int, first: str, rest: str) -> Any:
    return lambda cur: {
        "model": model,
        "tiers": [
            {"up_to": first_up_to, "unit_amount": _money(first, cur)},
            {"up_to": None, "unit_amount": _money(rest, cur)},
        ],
    }


def _price(price_id: str, meter: str | None, *versions: tuple[str, Any], **extra: Any) -> Any:
    entry: dict[str, Any] = {"id": price_id}
    if meter is not None:
        entry["meter"] = meter
    entry.update(extra)
    entry["versions"] = [
        {"effective_from": when, "prices": _per_currency(body)} for when, body in versions
    ]
    return entry


def catalog_data(worlds: Iterable[World]) -> dict[str, Any]:
    """The catalog of worlds played side by side: the meters, and each world's plans."""
    return {
        "rounding_mode": "half_up",
        "meters": [
            {
                "name": "resolution",
                "aggregation": "count",
                "unit": "resolution",
                "properties": {"channel": list(CHANNELS)},
                "dimensions": ["channel"],
            },
            {"name": "seats", "aggregation": "time_weighted", "unit": "seat"},
            {"name": "tokens", "aggregation": "sum", "unit": "token"},
        ],
        "plans": [plan for world in worlds for plan in plans(world.seed, world.price_change)],
    }


def plans(seed: int, price_change: date) -> list[dict[str, Any]]:
    """One world's plans (ids `s<seed>_...`); its `resolution` prices change on
    `price_change`."""
    change = price_change.isoformat()
    return [
        {
            "id": f"s{seed}_metered",
            "prices": [
                _price(
                    "resolution",
                    "resolution",
                    (EPOCH, _tiers("graduated", 40, "1.00", "0.80")),
                    (change, _tiers("graduated", 40, "0.90", "0.60")),
                ),
                _price("seats", "seats", (EPOCH, _per_unit("10"))),
                _price("tokens", "tokens", (EPOCH, _per_unit("0.000002"))),
            ],
        },
        {
            "id": f"s{seed}_committed",
            "minimum_commitment": {cur: _money("150", cur) for cur in SCALE},
            "prices": [
                _price(
                    "platform",
                    None,
                    (EPOCH, lambda cur: {"model": "flat", "amount": _money("50", cur)}),
                ),
                _price(
                    "resolution_chat",
                    "resolution",
                    (EPOCH, _per_unit("1.00")),
                    filter={"channel": "chat"},
                ),
                _price(
                    "resolution_email",
                    "resolution",
                    (EPOCH, _per_unit("0.25")),
                    filter={"channel": "email"},
                ),
                _price("seats", "seats", (EPOCH, _per_unit("12"))),
            ],
        },
        {
            "id": f"s{seed}_volume",
            "prices": [
                _price(
                    "resolution",
                    "resolution",
                    (EPOCH, _tiers("volume", 30, "1.10", "0.70")),
                    (change, _tiers("volume", 30, "1.00", "0.65")),
                ),
                _price("seats", "seats", (EPOCH, _per_unit("9"))),
                _price("tokens", "tokens", (EPOCH, _per_unit("0.000001"))),
            ],
        },
    ]
