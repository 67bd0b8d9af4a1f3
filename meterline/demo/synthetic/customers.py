"""Customers: the catalog shape the generator needs, the population (ids, plans,
currencies, timezones, billing anchors, starts, discounts, resolution rates) and the
customers file (`customers.jsonl`) that `meterline customers load` reads."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from meterline.demo.synthetic.config import (
    FIN,
    METERS,
    S_CUSTOMERS,
    SEATS,
    GeneratorConfig,
    IntArray,
    epoch_day,
    from_epoch_day,
    stream,
)

# Customer mix.
_CURRENCIES = ("USD", "EUR", "GBP")
_CURRENCY_P = (0.70, 0.20, 0.10)
_TIMEZONES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "USD": (
        ("America/New_York", "America/Los_Angeles", "America/Chicago", "UTC"),
        (0.40, 0.25, 0.20, 0.15),
    ),
    "EUR": (("Europe/Dublin", "Europe/Berlin", "Europe/Paris"), (0.30, 0.40, 0.30)),
    "GBP": (("Europe/London",), (1.0,)),
}
# Daily resolution rate: lognormal, median ~3.6/day, mean ~27/day, a few accounts at thousands.
_RATE_MEDIAN = 3.6
_RATE_SIGMA = 2.0
_RATE_MAX = 20_000.0
_VOLUME_SHARE = 0.03  # the largest accounts are on the volume plan
_COMMITTED_SHARE = 0.05  # mid-size accounts on a minimum commitment
_MID_RANGE_START_SHARE = 0.08
_PERCENT_OFF_SHARE = 0.09
_AMOUNT_OFF_SHARE = 0.02

_NAME_FIRST = (
    "Acme", "Blue", "Bright", "Cedar", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Harbor",
    "Indigo", "Juniper", "Kite", "Lumen", "Maple", "Nimbus", "Orbit", "Pine", "Quartz", "River",
    "Summit", "Tidal", "Umber", "Vertex", "Willow", "Zephyr",
)  # fmt: skip
_NAME_SECOND = (
    "Analytics", "Apps", "Bank", "Cloud", "Commerce", "Data", "Foods", "Games", "Health",
    "Insurance", "Labs", "Logistics", "Media", "Motors", "Networks", "Pay", "Retail", "Robotics",
    "Security", "Software", "Studios", "Travel",
)  # fmt: skip
_NAME_SUFFIX = ("Inc.", "Ltd", "GmbH", "SAS", "LLC", "Group", "Co.", "plc")
# Plans in the order of their codes (0 standard, 1 volume, 2 committed).
_PLANS = ("standard", "volume", "committed")


@dataclass(frozen=True)
class CatalogShape:
    """What the generator reads of the catalog: the channels of a resolution, the seat
    types, and the seat types each plan prices (a customer reports those)."""

    channels: tuple[str, ...]
    seat_types: tuple[str, ...]
    plan_seat_types: dict[str, tuple[str, ...]]


def read_catalog_shape(path: Path) -> CatalogShape:
    """The shape of the catalog file at `path`, read by the one catalog reader
    (billing.catalog.read_catalog: LoadError when the file is invalid). Raises
    ValueError when it lacks a meter, its values, or a plan the generator writes for."""
    from billing.catalog import read_catalog

    parsed = read_catalog(path)
    meters = parsed.meters.meters
    for name in METERS:
        if name not in meters:
            raise ValueError(f"catalog {path} has no meter {name!r}")
    channels = tuple(meters[FIN].properties.get("channel") or ())
    seat_types = tuple(meters[SEATS].properties.get("seat_type") or ())
    if not channels or not seat_types:
        raise ValueError(f"catalog {path} lists no channels of {FIN} or seat types of {SEATS}")
    plans: dict[str, tuple[str, ...]] = {}
    for plan in parsed.plans:
        priced = {
            (v.filter or {}).get("seat_type")
            for v in parsed.versions
            if v.plan_id == plan.id and v.meter == SEATS
        }
        plans[plan.id] = tuple(t for t in seat_types if t in priced)
    for plan_id in _PLANS:
        if plan_id not in plans:
            raise ValueError(f"catalog {path} has no plan {plan_id!r}")
    return CatalogShape(channels, seat_types, plans)


@dataclass
class Population:
    """The generated customers: per customer (by index) its id, resolution rate,
    timezone and subscription start, and its record in the customers file."""

    ids: list[str]
    rate: npt.NDArray[np.float64]  # resolutions per weekday, before scaling
    tz_index: IntArray  # into timezones
    timezones: list[str]
    start_day: IntArray  # subscription start, days since 1970-01-01 (a local date)
    records: list[dict[str, Any]]


def make_population(cfg: GeneratorConfig, catalog: CatalogShape) -> Population:
    """The customers of `cfg`, drawn from the customers stream alone."""
    n = cfg.customers
    rng = stream(cfg.seed, S_CUSTOMERS)
    width = max(5, len(str(n)))
    ids = [f"cus_{i:0{width}d}" for i in range(1, n + 1)]

    rate = np.minimum(rng.lognormal(math.log(_RATE_MEDIAN), _RATE_SIGMA, n), _RATE_MAX)

    # The largest accounts are on the volume plan; a few mid-size ones on a commitment.
    plan = np.zeros(n, dtype=np.int64)
    by_size = np.argsort(-rate, kind="stable")
    n_volume = max(1, round(_VOLUME_SHARE * n)) if n >= 10 else min(1, n - 1)
    n_committed = max(1, round(_COMMITTED_SHARE * n)) if n >= 10 else min(1, max(0, n - 2))
    plan[by_size[:n_volume]] = 1
    candidates = by_size[n_volume : max(n_volume + n_committed, n // 2 + 1)]
    if n_committed:
        plan[rng.choice(candidates, size=n_committed, replace=False)] = 2

    currency = rng.choice(len(_CURRENCIES), size=n, p=_CURRENCY_P)
    timezones = [tz for c in _CURRENCIES for tz in _TIMEZONES[c][0]]
    tz_index = np.zeros(n, dtype=np.int64)
    base = 0
    for ci, code in enumerate(_CURRENCIES):
        zones, p = _TIMEZONES[code]
        mask = currency == ci
        tz_index[mask] = base + rng.choice(len(zones), size=int(mask.sum()), p=p)
        base += len(zones)

    u = rng.random(n)
    anchor = np.where(u < 0.75, 1, np.where(u < 0.95, rng.integers(1, 29, n), 31))

    range_start = epoch_day(cfg.start)
    # A few customers start mid-range (there is no mid-range in a one-day range).
    mid_range = (rng.random(n) < _MID_RANGE_START_SHARE) & (cfg.days >= 2)
    start_day = np.where(
        mid_range,
        range_start + rng.integers(1, max(cfg.days, 2), n),
        range_start - rng.integers(30, 731, n),
    )

    u = rng.random(n)
    discount_kind = np.where(
        u < _PERCENT_OFF_SHARE, 1, np.where(u < _PERCENT_OFF_SHARE + _AMOUNT_OFF_SHARE, 2, 0)
    )
    names = (
        rng.integers(0, len(_NAME_FIRST), n),
        rng.integers(0, len(_NAME_SECOND), n),
        rng.integers(0, len(_NAME_SUFFIX), n),
    )

    records: list[dict[str, Any]] = []
    for i in range(n):
        start = from_epoch_day(int(start_day[i]))
        discounts: list[dict[str, Any]] = []
        if discount_kind[i]:
            discounts.append(
                {
                    "price": "fin_resolution",
                    "percent_off": "10" if discount_kind[i] == 1 else None,
                    "amount_off": "50" if discount_kind[i] == 2 else None,
                    "valid_from": start.isoformat(),
                    "valid_to": None,
                }
            )
        records.append(
            {
                "customer_id": ids[i],
                "name": " ".join(
                    (
                        _NAME_FIRST[names[0][i]],
                        _NAME_SECOND[names[1][i]],
                        _NAME_SUFFIX[names[2][i]],
                    )
                ),
                "currency": _CURRENCIES[currency[i]],
                "timezone": timezones[tz_index[i]],
                "subscription_id": f"sub_{ids[i][4:]}",
                "plan": _PLANS[plan[i]],
                "billing_anchor_day": int(anchor[i]),
                "start": start.isoformat(),
                "end": None,
                "discounts": discounts,
            }
        )
    return Population(ids, rate, tz_index, timezones, start_day.astype(np.int64), records)


def write_customers(path: Path, pop: Population) -> None:
    """One JSON object per customer and line, in id order."""
    with path.open("w", encoding="utf-8") as fh:
        for record in pop.records:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")


def read_customers(folder: Path) -> list[dict[str, Any]]:
    """The customers of a generated folder, as written in `customers.jsonl`."""
    with (Path(folder) / "customers.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
