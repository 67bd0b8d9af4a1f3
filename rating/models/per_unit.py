"""per_unit: every billable unit at unit_amount (Stripe's per_unit billing scheme, Lago's
standard model)."""

from __future__ import annotations

from rating.models.base import ChargeModel, PeriodState, Window
from rating.price import Price, PriceModel
from rating.result import EntryData


class PerUnit:
    model = PriceModel.PER_UNIT

    def rate(self, price: Price, window: Window, state: PeriodState) -> list[EntryData]:
        unit_amount = price.unit_amount
        assert unit_amount is not None  # guaranteed by parse_price
        units = window.units
        return [
            {
                "kind": "unit",
                "version": window.version,
                "units": units,
                "unit_amount": unit_amount,
                "amount": units * unit_amount,
                "range_from": window.start,
                "range_to": window.end,
            }
        ]


_: ChargeModel = PerUnit()
