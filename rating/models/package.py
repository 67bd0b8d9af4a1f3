"""package: package_amount per block of package_size billable units (Stripe's
transform_quantity divide_by with round up/down, Lago's package model).

Blocks are counted on the billable quantity, after free units (Lago: "$5 per 100
units, first 100 units free: 201 units cost $10"). round: up (default) counts started
blocks, down counts completed blocks. Fractional quantities are allowed: 100.5 units
in blocks of 100 start 2 blocks.

Across version windows blocks are counted on the period's cumulative quantity, in
chronological order: a block is charged, at the price of the window's version, in the
window where it is started (round up) or completed (round down). Splitting a period
into windows never charges more blocks than rating the total would.
"""

from __future__ import annotations

from decimal import Decimal

from rating.models.base import ChargeModel, PeriodState, Window
from rating.price import Price, PriceModel
from rating.result import EntryData


def _started_blocks(units: Decimal, size: Decimal) -> Decimal:
    whole, rest = divmod(units, size)
    return whole + 1 if rest else whole


class Package:
    model = PriceModel.PACKAGE

    def rate(self, price: Price, window: Window, state: PeriodState) -> list[EntryData]:
        size, block_amount = price.package_size, price.package_amount
        assert size is not None and block_amount is not None  # guaranteed by parse_price
        start, end = window.start, window.end
        if price.round == "down":
            blocks = end // size - start // size
        else:
            blocks = _started_blocks(end, size) - _started_blocks(start, size)
        return [
            {
                "kind": "package",
                "version": window.version,
                "units": end - start,
                "blocks": blocks,
                "unit_amount": block_amount,
                "amount": blocks * block_amount,
                "range_from": start,
                "range_to": end,
            }
        ]


_: ChargeModel = Package()
