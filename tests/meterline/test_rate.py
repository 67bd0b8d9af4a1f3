"""The rate step (meterline/jobs/rate.py) without a warehouse: due periods + the price
book + a quantity source -> rated periods, each with its lines or the reason it has none."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import billing
from billing.models import Subscription
from billing.periods import Period
from billing.pricebook import PriceBook, VersionRow
from meterline.jobs.due import Due
from meterline.jobs.rate import rate_periods
from meters.catalog import MeterCatalog
from meters.quantities import QuantityRow, WindowRequest

D = Decimal
CATALOG = Path(__file__).resolve().parents[1] / "scenarios" / "catalog.yaml"
METERS = billing.read_catalog(CATALOG).meters
TIERS = {"model": "graduated", "tiers": [{"up_to": 100, "unit_amount": "1.00"}, {"up_to": None, "unit_amount": "0.50"}]}
PRICES = PriceBook(
    {
        ("basic", "USD"): [
            VersionRow("resolution", "v1", date(2026, 1, 1), "resolution", None, TIERS),
            VersionRow("seat", "v1", date(2026, 1, 1), "seats", None, {"model": "per_unit", "unit_amount": "30"}),
        ],
        ("basic", "EUR"): [VersionRow("seat", "v1", date(2026, 1, 1), "seats", None, {"model": "per_unit", "unit_amount": "20"})],
    },
    {"basic": {}},
    {name: m.aggregation.value for name, m in METERS.meters.items()},
)
NOV = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
NOV_PARIS = Period(datetime(2026, 10, 31, 23, tzinfo=UTC), datetime(2026, 11, 30, 23, tzinfo=UTC))


@dataclass
class Quantities:
    """A quantity source that answers from a table and records what it was asked."""

    rows: dict[str, list[QuantityRow]]
    meters: MeterCatalog = METERS
    asked: list[WindowRequest] = field(default_factory=list)

    def read(self, requests: Sequence[WindowRequest]) -> list[list[QuantityRow]]:
        self.asked.extend(requests)
        return [[r for c in sorted(q.customer_ids or ()) for r in self.rows.get(c, [])] for q in requests]


def due(n: int, customer: str, plan: str = "basic", currency: str = "USD", tz: str = "UTC") -> Due:
    sub = Subscription(id=n, external_id=f"sub_{customer}", plan_id=plan, currency=currency,
                       billing_anchor_day=1, timezone=tz, start_date=date(2026, 1, 1), discounts=[])
    return Due(sub, customer, NOV_PARIS if tz == "Europe/Paris" else NOV)


def row(customer: str, meter: str, quantity: str, **dims: str) -> QuantityRow:
    return QuantityRow(customer, meter, dims, D(quantity), 1)


def test_periods_are_rated_from_one_read_of_every_window_they_need() -> None:
    a, b, bad, neg = due(1, "a"), due(2, "b", currency="EUR", tz="Europe/Paris"), due(3, "c", plan="basci"), due(4, "d")
    source = Quantities({
        "a": [row("a", "seats", "2"), row("a", "resolution", "100", channel="chat"), row("a", "resolution", "50", channel="email")],
        "b": [row("b", "seats", "1.5")],
        "d": [row("d", "resolution", "-20")],
    })
    rated = rate_periods(PRICES, [a, b, bad, neg], source)

    # One request per (window, billing cycle), with every customer that needs it; none
    # for the period without a price.
    assert [(q.start, q.end, q.customer_ids, q.normalize_to) for q in source.asked] == [
        (NOV_PARIS.start, NOV_PARIS.end, frozenset({"b"}), (NOV_PARIS.start, NOV_PARIS.end)),
        (NOV.start, NOV.end, frozenset({"a", "d"}), (NOV.start, NOV.end)),
    ]
    # 100 x 1.00 + 50 x 0.50 = 125.00 over both channels; 2 seats x 30 = 60.00.
    assert [(ln.price_id, ln.kind, ln.quantity, ln.amount) for ln in rated[a].lines] == [
        ("resolution", "usage", D(150), D("125.00")),
        ("seat", "usage", D(2), D("60.00")),
    ]
    assert list(rated[a].charges) == [
        "sub_a|2026-11-01T00:00:00Z|resolution|v1|usage",
        "sub_a|2026-11-01T00:00:00Z|seat|v1|usage",
    ]
    assert [r.amount for r in rated[a].rated] == [ln.amount for ln in rated[a].lines]
    assert [(ln.price_id, ln.currency, ln.amount) for ln in rated[b].lines] == [("seat", "EUR", D("30.00"))]
    assert rated[a].error is None and rated[b].error is None
    assert rated[bad].error == "plan 'basci' is not in the catalog (its plans: basic)"
    assert rated[neg].error == (
        "the quantity of meter resolution is -20, negative, which a count meter cannot be"
        " (a sum overflowed in the warehouse, or its data is corrupt)"
    )
    for failed in (bad, neg):
        assert (rated[failed].lines, rated[failed].charges) == ([], {})
    # The rows read stay with the period (the audit shows them).
    assert rated[neg].whole() == [row("d", "resolution", "-20")]


def test_a_price_the_ledger_refuses_makes_only_its_period_unratable() -> None:
    # A price id holding the key separator rates, but no ledger line can carry it.
    odd = PriceBook(
        {("odd", "USD"): [VersionRow("a|b", "v1", date(2026, 1, 1), None, None, {"model": "flat", "amount": "1"})]},
        {"odd": {}, "basic": {}},
        {},
    )
    one, two = due(1, "a", plan="odd"), due(2, "b", plan="basic", currency="JPY")
    rated = rate_periods(odd, [one, two], Quantities({}))
    assert rated[one].error == "cannot be rated: ChargeLine.price_id 'a|b' must not contain '|'"
    assert rated[two].error == "plan basic has no price in JPY (it is priced in no currency)"
