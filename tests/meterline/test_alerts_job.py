"""Spend and usage alerts end to end (meterline/jobs/alerts.py, docs/alerts.md), on the
real warehouse and both ledger databases (SQLite, and PostgreSQL when
METERLINE_TEST_POSTGRES_URL is set): evaluated on the usage job's rated numbers, each
(alert, subscription, threshold, period) fired once, retracted once when a re-rate
brings the amount back under, written to the outbox and delivered to a local webhook
with a signature the receiver verifies; replay sends them again with the same keys.
Prices: tests/scenarios/catalog.yaml (committed: platform fee 100.00, seats 30.00,
resolutions 1.00; basic: seats 30.00, resolutions 1.00 then 0.50 above 100)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr

from billing.plan_changes import ChangeRequest
from meterline.jobs import alerts as alerts_job
from meterline.jobs.alerts import (
    AlertRefused,
    add_alert,
    alert_history,
    evaluate_after_rollup,
    evaluate_alerts,
    list_alerts,
)
from meterline.jobs.deliver import SinkNotConfigured, deliver, outbox_rows, replay_from
from meterline.jobs.plan_change import change
from meterline.jobs.usage import customer_usage
from meterline.sinks.webhook import HEADER, verify
from meters.warehouse.base import Warehouse
from tests.billing.conftest import ledger_url  # noqa: F401  (SQLite, and PostgreSQL when set)
from tests.scenarios.harness import Sub, World, day, event, resolutions, utc
from tests.scenarios.ledgers import load

pytestmark = pytest.mark.single_warehouse

SECRET = "whsec_alerts"
CREATED = utc("2026-11-01 00:00")


@pytest.fixture
def world(
    warehouse: Warehouse,
    chdb_folder: Path,
    tmp_path: Path,
    ledger_url: str,  # noqa: F811
) -> World:
    built = World(warehouse, chdb_folder, tmp_path / "world")
    built.config = built.config.model_copy(update={"ledger_url": ledger_url})
    return built


class Receiver(ThreadingHTTPServer):
    requests: list[tuple[dict[str, str], bytes]]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def evaluate(world: World, at: str, errors: int = 0):  # type: ignore[no-untyped-def]
    report = evaluate_alerts(utc(at), config=world.config)
    assert len(report.errors) == errors, report.errors
    return report


def test_fire_once_retract_once_deliver_signed_and_replay(world: World, receiver: Receiver) -> None:
    load(
        world, [Sub("aa", "committed", start="2026-11-01"), Sub("bb", "basic", start="2026-11-01")]
    )
    world.deliver(
        [
            event("aa-s", "aa", "seats", "2026-11-01 00:00", value=2),
            *resolutions("aa", "aa-r", 60, "2026-11-02 00:00", 10),
            *resolutions("bb", "bb-r", 120, "2026-11-02 00:00", 10),
        ]
    )
    world.nightly(day("2026-11-01"), day("2026-11-02"))
    as_of = "2026-11-05 00:00"
    spend = customer_usage("aa", utc(as_of), config=world.config).subscriptions[0]
    assert spend.amount_minor > 0
    cfg = world.config
    # A spend alert whose highest threshold is exactly what aa owes so far, a usage
    # alert on the resolutions, and a plan alert for every basic customer.
    usd = Decimal(spend.amount_minor) / 100
    spend_alert = add_alert(
        customer="aa",
        plan=None,
        meter=None,
        currency="usd",
        thresholds=["1", str(usd)],
        created_at=CREATED,
        config=cfg,
    )
    assert spend_alert.thresholds == ("100", str(spend.amount_minor))
    add_alert(
        customer="aa",
        plan=None,
        meter="resolution",
        currency=None,
        thresholds=["50", "61"],
        created_at=CREATED,
        config=cfg,
    )
    add_alert(
        customer=None,
        plan="basic",
        meter="resolution",
        currency=None,
        thresholds=["100"],
        created_at=CREATED,
        config=cfg,
    )
    assert len(list_alerts(config=cfg)) == 3
    assert [a.alert_id for a in list_alerts(customer="bb", config=cfg)] == [3]

    first = evaluate(world, as_of)
    assert (first.customers, first.fired, first.retracted) == (2, 4, 0)
    # Evaluated again, with nothing new: nothing is announced twice.
    again = evaluate(world, as_of)
    assert (again.fired, again.retracted) == (0, 0)

    # A re-rate: aa moves to basic from the period's second day (no platform fee since
    # then): its spend is back under the highest threshold, which is retracted, once.
    change(
        ChangeRequest("sub_aa", utc("2026-11-02 00:00"), "basic", "continue", "downgrade", "t"),
        config=cfg,
    )
    lower = customer_usage("aa", utc(as_of), config=cfg).subscriptions[0].amount_minor
    assert 0 < lower < spend.amount_minor
    second = evaluate(world, as_of)
    assert (second.fired, second.retracted) == (0, 1)
    # The usage alerts are evaluated on the split period's whole quantity (60: alert 2's
    # 50 stays fired; alert 3, basic's, applies to aa now and 60 is under its 100).
    third = evaluate(world, as_of)
    assert (third.fired, third.retracted) == (0, 0)

    history = alert_history(config=cfg)
    assert [(h.alert_id, h.subscription, h.threshold, h.state) for h in history] == [
        (1, "sub_aa", "100", "fired"),
        (1, "sub_aa", str(spend.amount_minor), "retracted"),
        (2, "sub_aa", "50", "fired"),
        (3, "sub_bb", "100", "fired"),
    ]
    retracted = history[1]
    assert retracted.fired_amount == str(spend.amount_minor)
    assert retracted.retracted_amount == str(lower)
    assert [h.threshold for h in alert_history(customer="bb", config=cfg)] == ["100"]

    # The outbox holds the five events for the webhook sink only.
    rows = outbox_rows(config=cfg)
    assert [(r.kind, r.sink, r.invoice_id) for r in rows] == [
        ("alert.fired", "webhook", None)
    ] * 4 + [("alert.retracted", "webhook", None)]

    with pytest.raises(SinkNotConfigured):
        deliver("webhook", config=cfg)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
    hooked = cfg.model_copy(update={"webhook_url": url, "webhook_secret": SecretStr(SECRET)})
    report = deliver("webhook", config=hooked)
    assert (report.delivered, report.left, report.ok) == (5, 0, True)
    docs = []
    now = int(datetime.now().timestamp())
    for headers, body in receiver.requests:
        assert verify(SECRET, headers[HEADER], body, now=now)
        assert not verify("wrong", headers[HEADER], body, now=now)
        doc = json.loads(body)
        assert headers["Idempotency-Key"] == doc["id"]
        docs.append(doc)
    by_key = {d["id"]: d for d in docs}
    assert len(by_key) == 5
    start = "2026-11-01T00:00:00+00:00"
    fired = by_key[f"alert.fired:1:sub_aa:{spend.amount_minor}:{start}"]["data"]
    assert fired["amount_minor"] == spend.amount_minor
    assert fired["threshold_minor"] == spend.amount_minor and fired["currency"] == "USD"
    gone = by_key[f"alert.retracted:1:sub_aa:{spend.amount_minor}:{start}"]
    assert gone["type"] == "alert.retracted"
    assert gone["data"]["amount_minor"] == lower
    assert gone["data"]["retracts"] == f"alert.fired:1:sub_aa:{spend.amount_minor}:{start}"
    usage = by_key[f"alert.fired:2:sub_aa:50:{start}"]["data"]
    assert (usage["meter"], usage["threshold"], usage["quantity"]) == ("resolution", "50", "60")
    # aa's events in order: the retraction after the firing it retracts.
    aa = [d["id"] for d in docs if d["data"]["customer"] == "aa"]
    assert aa.index(gone["id"]) > aa.index(f"alert.fired:1:sub_aa:{spend.amount_minor}:{start}")

    # Replay: the same events again, the same keys (a receiver drops what it has).
    assert replay_from(rows[0].event_id, sink="webhook", config=cfg) == 5
    assert deliver("webhook", config=hooked).delivered == 5
    keys = [h["Idempotency-Key"] for h, _ in receiver.requests]
    assert sorted(keys[:5]) == sorted(keys[5:])


def test_a_new_period_fires_again_and_other_currencies_do_not_apply(world: World) -> None:
    load(world, [Sub("cc", "basic", start="2026-11-01")])
    world.deliver(
        [
            *resolutions("cc", "cc-r", 30, "2026-11-02 00:00", 10),
            *resolutions("cc", "cc-d", 30, "2026-12-02 00:00", 10),
        ]
    )
    world.nightly(day("2026-11-02"), day("2026-12-02"))
    cfg = world.config
    add_alert(
        customer="cc",
        plan=None,
        meter="resolution",
        currency=None,
        thresholds=["20"],
        created_at=CREATED,
        config=cfg,
    )
    add_alert(
        customer="cc",
        plan=None,
        meter=None,
        currency="EUR",
        thresholds=["0.01"],
        created_at=CREATED,
        config=cfg,
    )
    assert evaluate(world, "2026-11-10 00:00").fired == 1
    assert evaluate(world, "2026-12-10 00:00").fired == 1
    periods = [h.period_start for h in alert_history(alert_id=1, config=cfg)]
    assert periods == [utc("2026-11-01 00:00"), utc("2026-12-01 00:00")]
    assert alert_history(alert_id=2, config=cfg) == []


def test_no_alerts_reads_nothing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    load(world, [Sub("dd", "basic", start="2026-11-01")])

    def no_warehouse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the warehouse was opened without any alert")

    monkeypatch.setattr(alerts_job, "open_warehouse", no_warehouse)
    report = evaluate(world, "2026-11-10 00:00")
    assert (report.customers, report.fired) == (0, 0)
    report = evaluate_after_rollup([{"day": "2026-11-09"}], config=world.config)
    assert report.as_of == utc("2026-11-10 00:00") and report.customers == 0


def test_the_period_that_ended_is_evaluated_until_it_can_be_finalized(world: World) -> None:
    """A New York period ends at 05:00 UTC: its last hours are rolled up with the next UTC
    day, after it ended. It is evaluated as of its end until the grace period has passed
    (docs/alerts.md, "Closed periods")."""
    load(world, [Sub("ee", "basic", start="2026-11-01", timezone="America/New_York")])
    world.deliver(resolutions("ee", "ee-r", 25, "2026-12-01 04:00"))
    world.nightly(day("2026-12-01"))
    add_alert(
        customer="ee",
        plan=None,
        meter="resolution",
        currency=None,
        thresholds=["20"],
        created_at=CREATED,
        config=world.config,
    )
    report = evaluate(world, "2026-12-02 00:00")
    assert (report.subscriptions, report.fired) == (2, 1)  # December's, and November's
    (fired,) = alert_history(config=world.config)
    assert fired.period_end == utc("2026-12-01 05:00") and fired.fired_amount == "25"
    # Past the grace period (72 h after its end) November is not evaluated any more;
    # once its invoice is finalized, not even as of an instant inside it (a backfill's).
    assert evaluate(world, "2026-12-04 05:00").subscriptions == 1
    assert world.close(utc("2026-12-04 05:00")).periods_closed == 1
    assert evaluate(world, "2026-11-20 00:00").subscriptions == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (
            {"customer": "dd", "plan": "basic", "meter": "resolution", "currency": None},
            "either --customer or --plan",
        ),
        (
            {"customer": "dd", "plan": None, "meter": "resolution", "currency": "USD"},
            "either --meter",
        ),
        (
            {
                "customer": "dd",
                "plan": None,
                "meter": None,
                "currency": "JPY",
                "thresholds": ["1.5"],
            },
            "more decimals",
        ),
        (
            {
                "customer": "dd",
                "plan": None,
                "meter": "resolution",
                "currency": None,
                "thresholds": ["-1"],
            },
            "must be more than 0",
        ),
        (
            {
                "customer": "dd",
                "plan": None,
                "meter": "resolution",
                "currency": None,
                "thresholds": [],
            },
            "at least one",
        ),
    ],
)
def test_add_refuses(world: World, kwargs: dict, fragment: str) -> None:  # type: ignore[type-arg]
    load(world, [Sub("dd", "basic", start="2026-11-01")])
    args = {"thresholds": ["5"], **kwargs}
    with pytest.raises(AlertRefused, match=fragment):
        add_alert(**args, created_at=CREATED, config=world.config)
