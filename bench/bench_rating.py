"""Benchmark of the rating engine: rate N (price, quantity) pairs mixed across the six
price models and four currencies in one process, and print pairs per second.

    .venv/bin/python bench/bench_rating.py            # 1,000,000 pairs
    .venv/bin/python bench/bench_rating.py --pairs 200000 --per-model

Prices are parsed (validated) once, before timing, as the pipeline does when the
catalog loads; quantities are Decimals, as the pipeline passes them. The target is at
least 100,000 pairs/s.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rating import Price, RoundingMode, parse_price, rate

TIERS = [
    {"up_to": 1000, "unit_amount": "0.99"},
    {"up_to": 10000, "unit_amount": "0.89"},
    {"up_to": None, "unit_amount": "0.79"},
]
TIERS_WITH_FLAT = [
    {"up_to": 5, "unit_amount": "0", "flat_amount": "20"},
    {"up_to": 100, "unit_amount": "4"},
    {"up_to": 1000, "unit_amount": "3", "flat_amount": "50"},
    {"up_to": None, "unit_amount": "2"},
]

PRICES: dict[str, dict[str, object]] = {
    "per_unit USD": {"currency": "USD", "model": "per_unit", "unit_amount": "0.99"},
    "per_unit EUR free": {
        "currency": "EUR",
        "model": "per_unit",
        "unit_amount": "0.92",
        "free_units": "500",
    },
    "per_unit JPY min/max": {
        "currency": "JPY",
        "model": "per_unit",
        "unit_amount": "150",
        "minimum_amount": "10000",
        "maximum_amount": "5000000",
    },
    "graduated USD": {"currency": "USD", "model": "graduated", "tiers": TIERS},
    "graduated GBP flat": {"currency": "GBP", "model": "graduated", "tiers": TIERS_WITH_FLAT},
    "volume USD": {"currency": "USD", "model": "volume", "tiers": TIERS},
    "volume KWD flat": {"currency": "KWD", "model": "volume", "tiers": TIERS_WITH_FLAT},
    "package USD": {
        "currency": "USD",
        "model": "package",
        "package_size": 100,
        "package_amount": "5",
        "free_units": "100",
    },
    "package EUR down": {
        "currency": "EUR",
        "model": "package",
        "package_size": "0.5",
        "package_amount": "1.25",
        "round": "down",
    },
    "percentage USD": {"currency": "USD", "model": "percentage", "rate": "2.9"},
    "flat USD": {"currency": "USD", "model": "flat", "amount": "29"},
    "flat JPY": {"currency": "JPY", "model": "flat", "amount": "3000"},
}


def make_quantity(rng: random.Random) -> Decimal:
    draw = rng.random()
    if draw < 0.05:
        return Decimal(0)
    if draw < 0.60:
        return Decimal(rng.randrange(1, 50_000))
    if draw < 0.95:
        return Decimal(rng.randrange(1, 5_000_000)).scaleb(-2)  # fractional, e.g. seats
    return Decimal(rng.randrange(10**9, 10**12))


def make_pairs(prices: list[Price], count: int, seed: int) -> list[tuple[Price, Decimal]]:
    rng = random.Random(seed)
    return [(rng.choice(prices), make_quantity(rng)) for _ in range(count)]


def run(
    pairs: list[tuple[Price, Decimal]], rounding: RoundingMode
) -> tuple[float, float, Counter[str]]:
    """Rate every pair; return (wall seconds, CPU seconds of this process, totals)."""
    totals: Counter[str] = Counter()
    wall, cpu = time.perf_counter(), time.process_time()
    for price, quantity in pairs:
        charge = rate(price, quantity, rounding=rounding)
        totals[charge.currency] += charge.amount  # type: ignore[assignment]
    return time.perf_counter() - wall, time.process_time() - cpu, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument(
        "--rounding",
        choices=[mode.value for mode in RoundingMode],
        default=RoundingMode.HALF_UP.value,
    )
    parser.add_argument("--per-model", action="store_true", help="also time each price alone")
    args = parser.parse_args()

    prices = {name: parse_price(data, name=name) for name, data in PRICES.items()}
    pairs = make_pairs(list(prices.values()), args.pairs, args.seed)
    mode = RoundingMode(args.rounding)

    run(pairs[:10_000], mode)  # warm caches (currency lookups, imports)
    wall, cpu, totals = run(pairs, mode)
    print(
        f"rated {len(pairs):,} (price, quantity) pairs across {len(prices)} prices in "
        f"{wall:.2f} s: {len(pairs) / wall:,.0f} pairs/s wall clock, "
        f"{len(pairs) / cpu:,.0f} pairs/s of CPU time (one process, Python "
        f"{sys.version.split()[0]})"
    )
    print("checksum: " + ", ".join(f"{cur} {amount:,f}" for cur, amount in sorted(totals.items())))

    if args.per_model:
        count = max(len(pairs) // 10, 1)
        quantities = [quantity for _price, quantity in pairs[:count]]
        print(f"each price alone, {count:,} quantities, pairs/s of CPU time:")
        for name, price in prices.items():
            started = time.process_time()
            for quantity in quantities:
                rate(price, quantity, rounding=mode)
            took = time.process_time() - started
            print(f"  {name:<24} {count / took:>12,.0f}")


if __name__ == "__main__":
    main()
