"""Invoices with many lines, for the add_lines chunking and Stripe's item limit."""

from __future__ import annotations

import billing
from tests.billing.factories import usage, versions


def many_charges(session, n: int, unit: str = "0.99"):
    v = versions(session, "standard", "USD")
    return [
        usage("fin_resolution", v["fin_resolution"], i + 1, unit, group=f"team=t{i:04d}")
        for i in range(n)
    ]


def post_many(world, sub, period, n, unit="0.99"):
    with world.ledger.Session() as s:
        charges = many_charges(s, n, unit)
    with world.ledger.Session.begin() as s:
        r = billing.post_charges(s, sub, period, charges)
    (iid,) = r.invoice_ids.values()
    return iid
