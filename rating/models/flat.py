"""flat: a fixed fee per period, whatever the quantity (Stripe's flat-rate price,
Lago's subscription fee).

The fee is charged once per period. When the price changed during the period, the
version in effect at the period's end (the last window) sets the fee; flat fees are not
pro-rated by window.
"""

from __future__ import annotations

from rating.decimals import ONE
from rating.models.base import ChargeModel, PeriodState, Window
from rating.price import Price, PriceModel
from rating.result import EntryData


class Flat:
    model = PriceModel.FLAT

    def rate(self, price: Price, window: Window, state: PeriodState) -> list[EntryData]:
        if not window.last:
            return []
        amount = price.amount
        assert amount is not None  # guaranteed by parse_price
        return [
            {
                "kind": "flat",
                "version": window.version,
                "units": ONE,
                "unit_amount": amount,
                "amount": amount,
            }
        ]


_: ChargeModel = Flat()
