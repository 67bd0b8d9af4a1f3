"""The price book: the catalog loaded in the ledger, as rating's inputs.

Ledger rows -> rating values: the current price versions of each plan and currency as
`rating.PriceSpec`s (each version taking effect at local midnight of its date in the
subscription's timezone), a subscription's discounts as `rating.Discount`s, and a plan's
minimum commitment as `rating.Money`. Read once per run (`PriceBook.read`); no warehouse,
no rating: the close job (meterline/jobs/rate.py) rates with it.

A subscription that changed plan (billing/plan_changes.py) is priced per period by
`period_prices`: the period split at its changes into rating's `PlanSegment`s, each with
its plan's prices, and the minimum commitment of the plan in effect at the period's end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import Plan, PriceVersion, Subscription, SubscriptionDiscount
from billing.periods import Period, iso_utc, local_midnight
from billing.plan_changes import PlanChange, all_changes, changes_of, plan_spans
from rating import Discount, Money, PriceError, PriceSpec, PriceVersionSpec, parse_price
from rating.period import version_windows
from rating.plan_change import PlanSegment, TierMode


class VersionRow(NamedTuple):
    """One current price version as the ledger holds it."""

    price_id: str
    version: str
    effective_from: date
    meter: str | None
    filter: Mapping[str, Any] | None
    body: Mapping[str, Any]


@dataclass(frozen=True)
class PeriodPrices:
    """What prices one subscription's period: its plan segments (one when no plan change
    falls inside it), every price of them by id (the latest segment's where two plans
    share an id), the minimum commitment of the plan in effect at the period's end, and
    `gap`, why the period has no price to rate (None when it has)."""

    segments: list[PlanSegment]
    specs: list[PriceSpec]
    minimum: Money | None
    gap: str | None


class PriceBook:
    """The current prices, minimums and meter aggregations of the loaded catalog.

    `aggregations` maps each meter of the catalog to its aggregation ("sum", "count",
    "max", "unique_count", "latest", "time_weighted"), which says whether a price's
    quantity can be split per version window (rating.period.ADDITIVE)."""

    def __init__(
        self,
        versions: Mapping[tuple[str, str], Sequence[VersionRow]],
        minimums: Mapping[str, Mapping[str, str]],
        aggregations: Mapping[str, str],
        changes: Mapping[int, Sequence[PlanChange]] | None = None,
    ) -> None:
        self._versions = versions  # (plan, currency) -> rows by (price_id, effective_from)
        self._minimums = minimums  # plan -> {currency: amount in major units}
        self._aggregations = aggregations
        self._priced: dict[str, set[str]] = defaultdict(set)
        for plan, currency in versions:
            self._priced[plan].add(currency)
        self._specs: dict[tuple[str, str, str], list[PriceSpec]] = {}
        self._changes = dict(changes or {})  # subscription id -> changes in time order

    @classmethod
    def read(
        cls,
        session: Session,
        aggregations: Mapping[str, str],
        *,
        subscription_ids: Iterable[int] | None = None,
    ) -> PriceBook:
        """The price book of the catalog loaded in the ledger (three queries), with the plan
        changes of every subscription, or only of `subscription_ids` (a reader of one
        customer's periods: the usage and preview of meterline/jobs/usage.py)."""
        versions: dict[tuple[str, str], list[VersionRow]] = defaultdict(list)
        rows = session.execute(
            select(
                PriceVersion.plan_id,
                PriceVersion.currency,
                PriceVersion.price_id,
                PriceVersion.version,
                PriceVersion.effective_from,
                PriceVersion.meter,
                PriceVersion.filter,
                PriceVersion.body,
            )
            .where(PriceVersion.is_current.is_(True))
            .order_by(PriceVersion.price_id, PriceVersion.effective_from)
        )
        for plan, currency, *row in rows:
            versions[(plan, currency)].append(VersionRow(*row))
        minimums = {
            plan: dict(minimum or {})
            for plan, minimum in session.execute(select(Plan.id, Plan.minimum_commitment))
        }
        changes = (
            all_changes(session)
            if subscription_ids is None
            else changes_of(session, subscription_ids)
        )
        return cls(versions, minimums, aggregations, changes)

    def with_change(self, subscription_id: int, change: PlanChange) -> PriceBook:
        """This price book with one more plan change of a subscription (a preview: nothing
        is written), sharing the parsed prices."""
        book = PriceBook(self._versions, self._minimums, self._aggregations, self._changes)
        book._specs = self._specs
        book._changes[subscription_id] = [*self._changes.get(subscription_id, ()), change]
        return book

    def period_prices(self, sub: Subscription, period: Period) -> PeriodPrices:
        """The prices of the subscription's period, split at its plan changes. Raises
        PriceError (a ValueError) as `specs` does."""
        spans = plan_spans(sub.plan_id, self._changes.get(sub.id, ()), period)
        segments = [
            PlanSegment(plan, start, end, self.specs(plan, sub.currency, sub.timezone), _tiers(t))
            for plan, start, end, t in spans
        ]
        by_id = {spec.price_id: spec for segment in segments for spec in segment.specs}
        gap = None
        for segment in segments:
            gap = self._gap(segment.plan, sub.currency, segment.specs, segment.start, segment.end)
            if gap is not None:
                break
        return PeriodPrices(
            segments, list(by_id.values()), self.minimum(spans[-1][0], sub.currency), gap
        )

    def specs(self, plan: str, currency: str, tz: str) -> list[PriceSpec]:
        """The plan's prices in `currency`, versions in effect from local midnight in `tz`;
        empty when the plan has none there. Raises PriceError (a ValueError) for a stored
        body rating refuses or a price on a meter the catalog does not define."""
        key = (plan, currency, tz)
        if key not in self._specs:
            by_price: dict[str, list[VersionRow]] = defaultdict(list)
            for row in self._versions.get((plan, currency), ()):
                by_price[row.price_id].append(row)
            self._specs[key] = [
                self._spec(plan, currency, tz, price_id, rows)
                for price_id, rows in by_price.items()
            ]
        return self._specs[key]

    def _spec(
        self, plan: str, currency: str, tz: str, price_id: str, rows: Sequence[VersionRow]
    ) -> PriceSpec:
        first = rows[0]
        aggregation = None
        if first.meter is not None:
            if first.meter not in self._aggregations:
                known = ", ".join(sorted(self._aggregations)) or "none"
                raise PriceError(
                    f"price {price_id} of plan {plan} is on meter {first.meter!r}, which the"
                    f" loaded catalog does not define (its meters: {known})"
                )
            aggregation = self._aggregations[first.meter]
        return PriceSpec(
            price_id=price_id,
            meter=first.meter,
            filter={str(k): str(v) for k, v in (first.filter or {}).items()},
            versions=[
                PriceVersionSpec(
                    row.version,
                    local_midnight(row.effective_from, tz),
                    parse_price(
                        {**row.body, "currency": currency},
                        name=f"{plan}/{price_id}@{row.version}",
                    ),
                )
                for row in rows
            ],
            aggregation=aggregation,
        )

    def price_gap(
        self, sub: Subscription, specs: Sequence[PriceSpec], period: Period
    ) -> str | None:
        """Why the subscription's period has no price to rate (None when it has one): an
        unknown plan, no price in its currency, or no price version in effect then.
        Invariant 10: such a period is an error, never a 0.00 invoice."""
        return self._gap(sub.plan_id, sub.currency, specs, period.start, period.end)

    def _gap(
        self,
        plan: str,
        currency: str,
        specs: Sequence[PriceSpec],
        start: datetime,
        end: datetime,
    ) -> str | None:
        if plan not in self._minimums and plan not in self._priced:
            known = ", ".join(sorted(set(self._minimums) | set(self._priced))) or "none"
            return f"plan {plan!r} is not in the catalog (its plans: {known})"
        if not specs:
            priced = ", ".join(sorted(self._priced.get(plan, ()))) or "no currency"
            return f"plan {plan} has no price in {currency} (it is priced in {priced})"
        if not any(version_windows(s, start, end) for s in specs):
            first = min(v.starts for s in specs for v in s.versions)
            return (
                f"no price of plan {plan} ({currency}) is in effect in the period (the"
                f" earliest takes effect {iso_utc(first)})"
            )
        return None

    def minimum(self, plan: str, currency: str) -> Money | None:
        """The plan's minimum commitment per period in `currency` (None: it has none)."""
        amount = (self._minimums.get(plan) or {}).get(currency)
        return Money(Decimal(amount), currency) if amount else None

    @staticmethod
    def discounts(sub: Subscription) -> list[Discount]:
        """The subscription's discounts, valid from local midnight of their dates in its
        timezone (an amount off is in its currency)."""
        return [discount(sub, row) for row in sub.discounts]


def _tiers(value: str) -> TierMode:
    return "restart" if value == "restart" else "continue"


def discount(sub: Subscription, row: SubscriptionDiscount) -> Discount:
    """One discount row of the subscription as rating's Discount."""
    return Discount(
        price_id=row.price_id,
        percent_off=row.percent_off,
        amount_off=row.amount_off,
        currency=sub.currency if row.amount_off is not None else None,
        valid_from=local_midnight(row.valid_from, sub.timezone),
        valid_to=local_midnight(row.valid_to, sub.timezone) if row.valid_to else None,
    )
