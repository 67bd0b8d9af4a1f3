from datetime import timedelta

import billing
from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver, replay_from
from tests.billing.factories import standard_charges
from tests.sinks.conftest import GRACE, MARCH, World


def test_zero_invoice_then_void(world: World) -> None:
    with world.ledger.Session.begin() as s:
        (iid,) = billing.post_charges(
            s, "sub_00001", MARCH, standard_charges(s, resolutions=0, seats="0")
        ).invoice_ids.values()
    world.finalize(iid)
    r = deliver(config=world.settings, stripe=world.config())
    assert r.ok
    rec = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert rec.ok
    with world.ledger.Session.begin() as s:
        billing.void(s, iid, as_of=MARCH.end + GRACE + timedelta(days=1))
    r = deliver(config=world.settings, stripe=world.config())
    replay_from(1, config=world.settings)
    r = deliver(config=world.settings, stripe=world.config())
    assert r.ok, r.errors
