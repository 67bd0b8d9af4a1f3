"""The price book (billing/pricebook.py): the ledger's catalog rows as rating inputs.
Built from rows directly (no database); scenarios read it from a ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.models import Subscription, SubscriptionDiscount
from billing.periods import Period
from billing.pricebook import PriceBook, VersionRow
from rating import Money, PriceError

D = Decimal
FIN_V1 = VersionRow("fin", "2026-01-01#a", date(2026, 1, 1), "resolution", None, {"model": "per_unit", "unit_amount": "0.99"})
FIN_V2 = VersionRow("fin", "2026-11-15#b", date(2026, 11, 15), "resolution", None, {"model": "per_unit", "unit_amount": "0.89"})
SEAT = VersionRow("seat", "2026-01-01#c", date(2026, 1, 1), "seats", {"seat_type": "expert"}, {"model": "per_unit", "unit_amount": "85"})
FEE = VersionRow("fee", "2026-12-01#d", date(2026, 12, 1), None, None, {"model": "flat", "amount": "100"})
AGGREGATIONS = {"resolution": "count", "seats": "time_weighted"}


def book() -> PriceBook:
    """Plan pro priced in USD and EUR, with a USD minimum; plan lite without prices."""
    versions = {("pro", "USD"): [FIN_V1, FIN_V2, SEAT], ("pro", "EUR"): [FIN_V1]}
    return PriceBook(versions, {"pro": {"USD": "500"}, "lite": {}}, AGGREGATIONS)


def sub(plan: str = "pro", currency: str = "USD", tz: str = "America/New_York") -> Subscription:
    return Subscription(id=1, external_id="sub_a", plan_id=plan, currency=currency, billing_anchor_day=1,
                        timezone=tz, start_date=date(2026, 1, 1))


def test_versions_take_effect_at_local_midnight_of_the_subscriptions_timezone() -> None:
    fin, seat = book().specs("pro", "USD", "America/New_York")
    assert (fin.price_id, fin.meter, fin.aggregation, dict(fin.filter)) == ("fin", "resolution", "count", {})
    # Midnight in New York is 05:00 UTC in winter, 04:00 in summer.
    assert [(v.label, v.starts) for v in fin.versions] == [
        ("2026-01-01#a", datetime(2026, 1, 1, 5, tzinfo=UTC)),
        ("2026-11-15#b", datetime(2026, 11, 15, 5, tzinfo=UTC)),
    ]
    assert fin.versions[1].price.unit_amount == D("0.89") and fin.versions[1].price.currency == "USD"
    assert (seat.aggregation, dict(seat.filter)) == ("time_weighted", {"seat_type": "expert"})
    tokyo = book().specs("pro", "USD", "Asia/Tokyo")[0]
    assert tokyo.versions[0].starts == datetime(2025, 12, 31, 15, tzinfo=UTC)


def test_why_a_period_has_no_price() -> None:
    prices = book()
    nov = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert prices.price_gap(sub(), prices.specs("pro", "USD", "UTC"), nov) is None
    assert prices.price_gap(sub("basci"), [], nov) == "plan 'basci' is not in the catalog (its plans: lite, pro)"
    assert prices.price_gap(sub(currency="JPY"), prices.specs("pro", "JPY", "UTC"), nov) == (
        "plan pro has no price in JPY (it is priced in EUR, USD)"
    )
    assert prices.price_gap(sub("lite"), [], nov) == "plan lite has no price in USD (it is priced in no currency)"
    early = PriceBook({("pro", "USD"): [FEE]}, {"pro": {}}, AGGREGATIONS)
    assert early.price_gap(sub(tz="UTC"), early.specs("pro", "USD", "UTC"), nov) == (
        "no price of plan pro (USD) is in effect in the period (the earliest takes effect 2026-12-01T00:00:00Z)"
    )


def test_minimums_and_discounts() -> None:
    prices = book()
    assert prices.minimum("pro", "USD") == Money(D(500), "USD")
    assert prices.minimum("pro", "EUR") is None and prices.minimum("lite", "USD") is None
    s = sub()
    s.discounts = [
        SubscriptionDiscount(price_id="fin", percent_off=D(10), amount_off=None, valid_from=date(2026, 11, 1), valid_to=None),
        SubscriptionDiscount(price_id="seat", percent_off=None, amount_off=D(5), valid_from=date(2026, 11, 1),
                             valid_to=date(2027, 1, 1)),
    ]
    pct, amount = prices.discounts(s)
    assert (pct.price_id, pct.percent_off, pct.currency, pct.valid_from, pct.valid_to) == (
        "fin", D(10), None, datetime(2026, 11, 1, 4, tzinfo=UTC), None
    )
    assert (amount.amount_off, amount.currency, amount.valid_to) == (D(5), "USD", datetime(2027, 1, 1, 5, tzinfo=UTC))


def test_an_unusable_price_is_a_price_error_naming_it() -> None:
    bad_body = VersionRow("fin", "2026-01-01#e", date(2026, 1, 1), "resolution", None, {"model": "per_unit"})
    with pytest.raises(PriceError, match=r"price 'pro/fin@2026-01-01#e': unit_amount is required"):
        PriceBook({("pro", "USD"): [bad_body]}, {"pro": {}}, AGGREGATIONS).specs("pro", "USD", "UTC")
    no_meter = VersionRow("calls", "2026-01-01#f", date(2026, 1, 1), "api_call", None, {"model": "per_unit", "unit_amount": "1"})
    prices = PriceBook({("pro", "USD"): [no_meter]}, {"pro": {}}, AGGREGATIONS)
    with pytest.raises(PriceError, match=r"price calls of plan pro is on meter 'api_call', which the loaded catalog does not define \(its meters: resolution, seats\)"):
        prices.specs("pro", "USD", "UTC")
