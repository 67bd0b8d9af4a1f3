"""volume: every unit at the unit_amount of the ONE tier the period's total billable
quantity falls in, plus that tier's flat_amount (Stripe tiers_mode=volume, Lago
volume).

The total falls in the first tier whose up_to is >= the total (up_to is inclusive):
with up_to 1000, 1000 units are in tier 1 and 1000.5 units in tier 2. A total of 0
falls in tier 1, so tier 1's flat_amount is charged even without usage (as for
graduated; see docs/rating.md).

Across version windows the tier is chosen by the period's total in each window's
ladder, each window's units are priced at its version's unit_amount, and the flat
fee is charged once, from the version in effect at the end of the period (the last
window), since the tier is only known once the period is complete.
"""

from __future__ import annotations

from rating.decimals import ZERO
from rating.models.base import ChargeModel, PeriodState, Window
from rating.models.tiers import tier_holding
from rating.price import Price, PriceModel
from rating.result import EntryData


class Volume:
    model = PriceModel.VOLUME

    def rate(self, price: Price, window: Window, state: PeriodState) -> list[EntryData]:
        index, _bottom, _top, unit_amount, flat_amount = tier_holding(price.ladder, window.total)
        units = window.units
        flat = flat_amount if window.last else ZERO
        return [
            {
                "kind": "tier",
                "version": window.version,
                "tier": index + 1,
                "units": units,
                "unit_amount": unit_amount,
                "flat_amount": flat,
                "amount": units * unit_amount + flat,
                "range_from": window.start,
                "range_to": window.end,
            }
        ]


_: ChargeModel = Volume()
