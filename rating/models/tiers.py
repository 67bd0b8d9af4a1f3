"""The one tier-splitting rule of graduated and volume ladders.

A ladder is `Price.ladder`: (lower, upper or None, unit_amount, flat_amount) per tier;
tier i covers the billable units (lower, upper], the first tier also covers 0, and
`up_to` is inclusive. The first tier is reached at quantity 0 (so its flat fee is a
base fee charged even without usage); a later tier only by units above its lower bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

Ladder = tuple[tuple[Decimal, Decimal | None, Decimal, Decimal], ...]

# (position in the ladder from 0, bottom, top, unit_amount, flat_amount): the part
# (bottom, top] of a range of units that falls in one tier; empty (top <= bottom) for a
# tier that units before the range already went through. A plain tuple: this is the
# rating hot path.
TierSlice = tuple[int, Decimal, Decimal, Decimal, Decimal]


def tier_slices(ladder: Ladder, start: Decimal, end: Decimal) -> Iterator[TierSlice]:
    """Every tier reached by the cumulative units up to `end`, in order, each with the
    slice of (start, end] it holds; the last one yielded holds `end`."""
    for position, (lower, upper, unit_amount, flat_amount) in enumerate(ladder):
        if position and end <= lower:
            return
        top = end if upper is None or end < upper else upper
        bottom = start if start > lower else lower
        yield position, bottom, top, unit_amount, flat_amount


def tier_holding(ladder: Ladder, quantity: Decimal) -> TierSlice:
    """The tier a quantity falls in (volume pricing): the last tier it reaches."""
    holding = None
    for holding in tier_slices(ladder, quantity, quantity):  # noqa: B007 (keeps the last)
        pass
    assert holding is not None  # the first tier is always reached
    return holding
