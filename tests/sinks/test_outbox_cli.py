"""`meterline outbox` and `meterline stripe reconcile` as a user runs them: what they
print and their exit codes (the README's table), never a traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from meterline.cli import main
from meterline.settings import settings
from tests.sinks.conftest import API_KEY, MARCH, World


@pytest.fixture
def env(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for name in list(os.environ):
        if name.startswith("METERLINE_"):
            monkeypatch.delenv(name)
    values = {
        "METERLINE_LEDGER_URL": world.ledger.url,
        "METERLINE_STRIPE_API_KEY": API_KEY.get_secret_value(),
        "METERLINE_STRIPE_API_BASE": world.stripe.base_url,
        "METERLINE_STRIPE_TIMEOUT_S": "2",
        "METERLINE_STRIPE_REQUEST_ATTEMPTS": "1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    yield values
    settings.cache_clear()


def run(*args: str) -> tuple[int, str, str]:
    settings.cache_clear()
    result = CliRunner().invoke(main, list(args))
    settings.cache_clear()
    return result.exit_code, result.stdout, result.stderr


def test_deliver_list_reconcile_and_replay(world: World, env: dict[str, str]) -> None:
    invoice_id = world.post("sub_00001", MARCH)
    world.finalize(invoice_id)
    code, out, _ = run("outbox", "list")
    assert code == 0 and "invoice.finalized" in out and "stripe: pending" in out
    code, out, _ = run("stripe", "reconcile", "--period", "2026-03")
    assert code == 1 and "not in Stripe (outbox event 1 is pending" in out
    code, out, err = run("outbox", "deliver")
    assert code == 0, out
    assert out.startswith("stripe: delivered 1 event(s) (1 invoice(s) finalized, 2 item(s) added")
    assert err == ""  # a short run off a terminal prints no progress (output.progress)
    code, out, _ = run("outbox", "list", "--json")
    (row,) = json.loads(out)
    assert (row["status"], row["external_id"][:3]) == ("delivered", "in_")
    code, out, _ = run("stripe", "reconcile", "--period", "2026-03", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and (report["invoices"], report["items"]) == (1, 2)
    code, out, _ = run("outbox", "replay", "--from", "1")
    assert code == 0 and out.startswith("1 delivery from event 1 on pending (again)")
    code, out, err = run("outbox", "replay", "--from", "999")
    assert code == 3 and "no outbox event 999 or later" in err
    code, out, _ = run("outbox", "deliver")
    assert code == 0 and "0 item(s) added" in out
    assert len(world.stripe.store.invoices) == 1


def test_a_refused_key_stops_the_run_and_charges_no_attempt(
    world: World, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    world.finalize(world.post("sub_00001", MARCH))
    monkeypatch.setenv("METERLINE_STRIPE_API_KEY", "rk_live_wrong")
    code, out, err = run("outbox", "deliver")
    assert code == 2 and "Traceback" not in out + err
    assert "Stripe refused the API key" in err and "rk_live_wrong" not in out + err
    code, out, _ = run("outbox", "list", "--json")
    (row,) = json.loads(out)
    assert (row["status"], row["attempts"]) == ("pending", 0)


def test_stripe_unreachable_exits_4_and_the_event_waits(
    world: World, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    world.finalize(world.post("sub_00001", MARCH))
    base = world.stripe.base_url
    world.stripe.stop()
    monkeypatch.setenv("METERLINE_STRIPE_API_BASE", base)
    code, out, err = run("outbox", "deliver")
    assert code == 4, out + err
    assert "1 failed (will retry)" in out and "Traceback" not in out + err
    code, out, _ = run("outbox", "list", "--failed")
    assert code == 0 and "1 failed attempt(s), next try after" in out


def test_not_configured_is_refused_with_what_to_set(
    world: World, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METERLINE_STRIPE_API_KEY")
    for args in (("outbox", "deliver"), ("stripe", "reconcile", "--period", "2026-03")):
        code, out, err = run(*args)
        assert code == 2, (args, out, err)
        assert "Stripe is not configured: set METERLINE_STRIPE_API_KEY" in err
        assert "Traceback" not in out + err


def test_a_parked_event_fails_list_and_deliver(world: World, env: dict[str, str]) -> None:
    world.finalize(world.post("sub_00001", MARCH))
    with world.ledger.Session.begin() as session:
        from billing.models import Customer

        session.query(Customer).filter_by(
            external_id="cus_00001"
        ).one().stripe_customer_id = "cus_Missing"
    code, out, _ = run("outbox", "deliver")
    assert code == 1 and "1 parked" in out and "meterline outbox replay --from ID" in out
    code, out, _ = run("outbox", "list", "--failed")
    assert code == 1 and "parked" in out
    assert "stripe_customer_id is not a customer of this Stripe account" in out


def test_stripe_reconcile_exit_codes(
    world: World, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The breaker's cases: an unknown customer is not found (3); a refused key is
    refused (2); Stripe out of reach is unavailable (4); one line each, never a bug (5)."""
    world.finalize(world.post("sub_00001", MARCH))
    assert run("outbox", "deliver")[0] == 0
    code, out, err = run("stripe", "reconcile", "--period", "2026-03", "--customer", "nope")
    assert code == 3 and "no customer 'nope' in the ledger" in err
    monkeypatch.setenv("METERLINE_STRIPE_API_KEY", "sk_live_wrongwrongwrong")
    code, out, err = run("stripe", "reconcile", "--period", "2026-03")
    assert code == 2 and "Stripe refused the API key" in err and "wrongwrong" not in err
    monkeypatch.setenv("METERLINE_STRIPE_API_KEY", API_KEY.get_secret_value())
    world.stripe.stop()
    code, out, err = run("stripe", "reconcile", "--period", "2026-03")
    assert code == 4 and "Stripe unreachable" in err
    for text in (out, err):
        assert "Traceback" not in text and "internal error" not in text
    assert len(err.strip().splitlines()) == 1, err
