"""`stripe reconcile` reads each invoice's items from the invoice itself when they fit in
its first page of lines: one request per invoice (the customer's invoice list), where
listing the lines again took two."""

from __future__ import annotations

from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver
from tests.sinks.conftest import MARCH, World


def test_one_request_per_invoice(world: World) -> None:
    for sub in ("sub_00001", "sub_00009"):
        world.finalize(world.post(sub, MARCH))
    assert deliver(config=world.settings, stripe=world.config()).ok
    world.stripe.reset_request_count()
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert check.ok, check.differences
    assert (check.invoices, check.items) == (2, check.lines)
    assert world.stripe.request_count == {("GET", "/v1/invoices"): 2}
