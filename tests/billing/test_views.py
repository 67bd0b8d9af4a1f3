"""Invoice views: filters by local month and customer; totals per currency, never mixed."""

from __future__ import annotations

import billing
from tests.billing.conftest import Ledger
from tests.billing.factories import period_of, standard_charges, usage, versions


def test_lists_filter_and_total_per_currency(loaded: Ledger) -> None:
    with loaded.Session.begin() as session:
        vol = versions(session, "volume", "EUR")
        eur = [
            usage("seat_advanced", vol["seat_advanced"], 2, "79", "EUR", group="g", meter="seats")
        ]
        billing.post_charges_bulk(
            session,
            [
                billing.ChargeBatch(
                    "sub_00001", period_of("sub_00001", 2026, 3), standard_charges(session)
                ),
                billing.ChargeBatch(
                    "sub_00001", period_of("sub_00001", 2026, 4), standard_charges(session)
                ),
                # Globex's anchor 31 in Dublin: the period containing 2026-03-20 starts on
                # 2026-02-28 locally, so it is listed under February.
                billing.ChargeBatch("sub_00002", period_of("sub_00002", 2026, 3), eur),
            ],
        )
    with loaded.Session() as session:
        every = billing.list_invoices(session)
        march = billing.list_invoices(session, period="2026-03")
        february = billing.list_invoices(session, period="2026-02")
        globex = billing.list_invoices(session, customer="cus_00002")
    assert [i["period_start_local"] for i in every] == ["2026-02-28", "2026-03-01", "2026-04-01"]
    assert [(i["customer"], i["currency"]) for i in march] == [("cus_00001", "USD")]
    assert [(i["customer"], i["total"]) for i in february] == [("cus_00002", "158.00")]
    assert globex == february
    assert billing.views.totals_by_currency(every) == {
        "EUR": {"invoices": 1, "total": "158.00", "total_minor": 15800},
        "USD": {"invoices": 2, "total": "792.00", "total_minor": 79200},
    }
