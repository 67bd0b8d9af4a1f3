"""Re-rating periods the way close rates them, from raw events or from the rollup.

The audit rates with close's own pieces (the price book read from the ledger, version
windows, discounts, the minimum commitment, one rounding mode) so that a difference is
always in the data, never in a second implementation: from the rollup it gives exactly
the lines close posted (tests/audit/test_explain.py), from the raw events what they
should be now (`meters.quantities.batch_quantities(..., raw=True)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from billing.credits.available import CreditBook
from meterline.audit.facts import PeriodFacts
from meterline.audit.values import Dims, dims_of
from meterline.jobs.due import Due
from meterline.jobs.rate import (
    PeriodRating,
    WarehouseQuantities,
    rate_periods,
    rate_read,
    read_periods,
    read_pricebook,
)
from meters.catalog import MeterCatalog
from meters.warehouse.base import Warehouse
from rating.period import matches_filter


class Rerater:
    """Rates periods from raw events or the rollup; each (period, source) once."""

    def __init__(self, session: Session, warehouse: Warehouse, meters: MeterCatalog) -> None:
        self.prices = read_pricebook(session, meters)
        self._session = session
        self._warehouse = warehouse
        self._meters = meters
        self._done: dict[tuple[int, datetime, bool], PeriodRating] = {}

    def rate(self, dues: Sequence[Due], *, raw: bool) -> dict[Due, PeriodRating]:
        """Each period's rating (`raw`: quantities from usage_events, else the rollup);
        the periods not rated yet are read together in one batch, drawn down from the
        customers' credit grants as close draws them (billing/credits/available.py)."""
        todo = [d for d in dues if self._key(d, raw) not in self._done]
        if todo:
            quantities = WarehouseQuantities(self._warehouse, self._meters, raw=raw)
            credits = CreditBook.read(self._session, {d.customer for d in todo})
            for due, rating in rate_periods(self.prices, todo, quantities, credits).items():
                self._done[self._key(due, raw)] = rating
        return {d: self._done[self._key(d, raw)] for d in dues}

    def rate_both(
        self, dues: Sequence[Due]
    ) -> tuple[dict[Due, PeriodRating], dict[Due, PeriodRating]]:
        """Each period's ratings from raw events and from the rollup (rate). Rating is a
        function of the price book, the quantities and the customer's credit grants
        alone: a customer whose quantity rows read the same from both (every window,
        every field, to the digit) gets the same ratings from both, so its periods are
        rated once and that rating serves as both (reconcile rated every period twice).
        A period already rated from one source keeps that rating (rate)."""
        fresh = [
            d for d in dues if all(self._key(d, raw) not in self._done for raw in (True, False))
        ]
        if fresh:
            reads = {
                raw: read_periods(
                    self.prices, fresh, WarehouseQuantities(self._warehouse, self._meters, raw=raw)
                )
                for raw in (True, False)
            }
            customers = {d.customer for d in fresh}
            raw_rated = rate_read(
                self.prices, reads[True], self._meters, CreditBook.read(self._session, customers)
            )
            raw_rows = reads[True].quantities_by_customer()
            rollup_rows = reads[False].quantities_by_customer()
            differ = {c for c in customers if raw_rows.get(c) != rollup_rows.get(c)}
            rollup_rated = rate_read(
                self.prices,
                reads[False].of_customers(differ),
                self._meters,
                CreditBook.read(self._session, differ),
            )
            for due in fresh:
                self._done[self._key(due, True)] = raw_rated[due]
                self._done[self._key(due, False)] = rollup_rated.get(due, raw_rated[due])
        return self.rate(dues, raw=True), self.rate(dues, raw=False)

    def rate_one(self, due: Due, *, raw: bool) -> PeriodRating:
        return self.rate([due], raw=raw)[due]

    @staticmethod
    def _key(due: Due, raw: bool) -> tuple[int, datetime, bool]:
        return (due.subscription.id, due.period.start, raw)


def unpriced(rating: PeriodRating) -> list[tuple[str, Dims, Decimal]]:
    """Dimension groups with usage that no price of the plan counts."""
    out = []
    for row in rating.whole():
        dims = dims_of(row.dimensions)
        priced = any(s.meter == row.meter and matches_filter(dims, s.filter) for s in rating.specs)
        if not priced and row.quantity:
            out.append((row.meter, dims, row.quantity))
    return out


def period_facts(rating: PeriodRating, *, with_unpriced: bool) -> PeriodFacts:
    """A rating as reconcile compares it: charges by key, whole-period quantities."""
    return PeriodFacts(
        charges=rating.charges,
        quantities={(r.meter, dims_of(r.dimensions)): r.quantity for r in rating.whole()},
        unpriced=unpriced(rating) if with_unpriced else (),
        error=rating.error,
    )
