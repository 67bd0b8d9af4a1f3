"""Splitting an amount of minor units over days by weights, exactly (pure).

The rule (docs/revrec.md, "Remainders"): each part is the floor of its exact share
``total x weight / sum of weights``; the minor units left over go one each to the parts
with the largest fractional remainders, ties to the earliest part (the order given). A
negative total is split as its absolute value, then negated, so a discount or a credit
lands on the same days, in the same proportions, as the line it follows. The parts add
up to the total exactly, always (property-tested): the Hamilton (largest remainder)
method, which no day can gain from by more than one minor unit over its exact share.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

Weight = Decimal | int


def allocate(total: int, weights: Sequence[tuple[K, Weight]]) -> list[tuple[K, int]]:
    """`total` minor units over `weights` ((key, weight), ...; weights >= 0, not all 0)
    in the order given: [(key, part), ...] with sum(part) == total and each part within
    one minor unit of its exact share. Raises ValueError for a negative weight, all
    weights zero (nothing to split by), a float weight, or a total that is not an int."""
    if isinstance(total, bool) or not isinstance(total, int):
        raise ValueError(f"total must be whole minor units (an int), got {total!r}")
    exact = [(key, _fraction(weight)) for key, weight in weights]
    whole = sum((w for _, w in exact), Fraction(0))
    if any(w < 0 for _, w in exact):
        raise ValueError("weights must not be negative")
    if whole == 0:
        raise ValueError("the weights add up to zero: nothing to split the amount by")
    magnitude = abs(total)
    floors: list[int] = []
    remainders: list[tuple[Fraction, int]] = []
    for i, (_, weight) in enumerate(exact):
        share = magnitude * weight / whole
        floor = share.numerator // share.denominator
        floors.append(floor)
        remainders.append((share - floor, i))
    left = magnitude - sum(floors)
    # Largest remainder first; ties to the earliest part (its index).
    for _, i in sorted(remainders, key=lambda r: (-r[0], r[1]))[:left]:
        floors[i] += 1
    sign = -1 if total < 0 else 1
    return [(key, sign * part) for (key, _), part in zip(exact, floors, strict=True)]


def _fraction(weight: Weight) -> Fraction:
    if isinstance(weight, bool) or not isinstance(weight, (int, Decimal)):
        raise ValueError(f"a weight must be an int or a Decimal, got {weight!r}")
    if isinstance(weight, Decimal) and not weight.is_finite():
        raise ValueError(f"a weight must be finite, got {weight}")
    return Fraction(weight)
