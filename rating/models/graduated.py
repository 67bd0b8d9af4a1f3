"""graduated: each unit is priced at the tier it falls in (Stripe tiers_mode=graduated,
Lago graduated).

Tier i covers the billable units (previous up_to, up_to]; the first tier starts at 0
inclusive. A fractional quantity splits at the edge: with up_to 1000, 1000.5 units are
1000 units in tier 1 and 0.5 in tier 2.

A tier's flat_amount is charged once per period, when the quantity reaches into that
tier. The first tier is reached at quantity 0, so its flat_amount is a base fee charged
even for a period without usage: a first tier at unit_amount 0 with a flat_amount is a
fixed fee with included usage, which must not vanish in a quiet month (docs/rating.md).
"""

from __future__ import annotations

from rating.decimals import ZERO
from rating.models.base import ChargeModel, PeriodState, Window
from rating.models.tiers import tier_slices
from rating.price import Price, PriceModel
from rating.result import EntryData


class Graduated:
    model = PriceModel.GRADUATED

    def rate(self, price: Price, window: Window, state: PeriodState) -> list[EntryData]:
        charged = state.charged_flat_tiers
        entries: list[EntryData] = []
        for index, bottom, top, unit_amount, flat_amount in tier_slices(
            price.ladder, window.start, window.end
        ):
            units = top - bottom if top > bottom else ZERO
            # Earlier windows of the period may already have reached this tier (and paid
            # its flat fee); the fee is due once per period.
            entering = index not in charged
            if not units and not entering:
                continue
            flat = ZERO
            if entering:
                charged.add(index)
                flat = flat_amount
            edge = bottom if bottom < top else top
            entries.append(
                {
                    "kind": "tier",
                    "version": window.version,
                    "tier": index + 1,
                    "units": units,
                    "unit_amount": unit_amount,
                    "flat_amount": flat,
                    "amount": units * unit_amount + flat,
                    "range_from": edge if not units else bottom,
                    "range_to": edge if not units else top,
                }
            )
        return entries


_: ChargeModel = Graduated()
