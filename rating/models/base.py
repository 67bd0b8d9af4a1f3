"""The one interface every price model implements.

A charge for a period is rated as a sequence of version windows (one window when the
price did not change). A model is handed one window at a time, as a slice of the
period's cumulative BILLABLE quantity (after free units): the window's units occupy
positions (start, end], and the period's total is known up front. This is what lets
tiers apply to the period's total while units are consumed in chronological order: a
window's units continue where the previous window's units stopped in the tier ladder.

Models are pure functions of (price, window, state): no I/O, no clock, no events.
All arithmetic runs in the exact decimal context set by the dispatcher.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from rating.price import Price, PriceModel
from rating.result import EntryData


class Window:
    """One version window of a period, in billable-unit positions."""

    __slots__ = ("end", "last", "start", "total", "version")

    def __init__(
        self,
        version: str | None,
        start: Decimal,
        end: Decimal,
        total: Decimal,
        last: bool,
    ) -> None:
        self.version = version  # label of the price version; None for a single price
        self.start = start  # billable units consumed by earlier windows of the period
        self.end = end  # start + this window's billable units
        self.total = total  # the period's billable units, all windows together
        self.last = last  # the period's last window: the version in effect at its end

    @property
    def units(self) -> Decimal:
        return self.end - self.start


class PeriodState:
    """What a model must remember from one window to the next within a period."""

    __slots__ = ("charged_flat_tiers",)

    def __init__(self) -> None:
        # Tier indexes whose flat fee was already charged this period: a tier's flat
        # fee is charged once per period, even across a price change.
        self.charged_flat_tiers: set[int] = set()


class ChargeModel(Protocol):
    """A price model: turns one window of billable units into breakdown entries."""

    model: PriceModel

    def rate(self, price: Price, window: Window, state: PeriodState) -> list[EntryData]:
        """Entries for this window. Their amounts are precise (never rounded)."""
        ...
