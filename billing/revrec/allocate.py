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

import heapq
from collections.abc import Hashable, Sequence
from decimal import Context, Decimal
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

Weight = Decimal | int
# Scaling a decimal by a power of ten never rounds in this context (ledger quantities have
# at most 38 digits; exponents are bounded by their text).
_EXACT = Context(prec=1000)


def allocate(total: int, weights: Sequence[tuple[K, Weight]]) -> list[tuple[K, int]]:
    """`total` minor units over `weights` ((key, weight), ...; weights >= 0, not all 0)
    in the order given: [(key, part), ...] with sum(part) == total and each part within
    one minor unit of its exact share. Raises ValueError for a negative weight, all
    weights zero (nothing to split by), a float weight, or a total that is not an int."""
    if isinstance(total, bool) or not isinstance(total, int):
        raise ValueError(f"total must be whole minor units (an int), got {total!r}")
    scaled = _integers([w for _, w in weights])
    whole = sum(scaled)
    if any(w < 0 for w in scaled):
        raise ValueError("weights must not be negative")
    if whole == 0:
        raise ValueError("the weights add up to zero: nothing to split the amount by")
    magnitude = abs(total)
    # Exact shares as integers: magnitude x w // whole, and what is left of each.
    floors = [magnitude * w // whole for w in scaled]
    remainders = [magnitude * w % whole for w in scaled]
    left = magnitude - sum(floors)
    # Largest remainder first; ties to the earliest part (its index).
    for i in heapq.nsmallest(left, range(len(scaled)), key=lambda i: (-remainders[i], i)):
        floors[i] += 1
    sign = -1 if total < 0 else 1
    return [(key, sign * part) for (key, _), part in zip(weights, floors, strict=True)]


def _integers(weights: Sequence[Weight]) -> list[int]:
    """The weights as integers in the same proportions (decimals scaled by a power of
    ten, exactly)."""
    places = 0
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, Decimal)):
            raise ValueError(f"a weight must be an int or a Decimal, got {weight!r}")
        if isinstance(weight, Decimal):
            if not weight.is_finite():
                raise ValueError(f"a weight must be finite, got {weight}")
            exp = weight.as_tuple().exponent
            assert isinstance(exp, int)
            places = max(places, -exp)
    return [
        int(w.scaleb(places, context=_EXACT)) if isinstance(w, Decimal) else w * 10**places
        for w in weights
    ]
