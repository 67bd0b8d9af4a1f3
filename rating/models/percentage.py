"""percentage: rate percent of the quantity, where the quantity is a money amount in
the price's currency (e.g. the sum of transaction amounts; Lago's percentage model
without its per-transaction fixed fee). free_units is then a free amount: the first
free_units of the period's total are not charged."""

from __future__ import annotations

from rating.models.base import ChargeModel, PeriodState, Window
from rating.price import Price, PriceModel
from rating.result import EntryData


class Percentage:
    model = PriceModel.PERCENTAGE

    def rate(self, price: Price, window: Window, state: PeriodState) -> list[EntryData]:
        fraction = price.rate_fraction
        units = window.units
        return [
            {
                "kind": "percentage",
                "version": window.version,
                "units": units,
                "unit_amount": fraction,
                "amount": units * fraction,
                "range_from": window.start,
                "range_to": window.end,
            }
        ]


_: ChargeModel = Percentage()
