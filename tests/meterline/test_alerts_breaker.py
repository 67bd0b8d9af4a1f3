"""Alerts and their webhook, with bad input: thresholds that are no number, none an
amount could reach or that the ledger cannot hold, duplicates, currencies that are not
ISO 4217, meters not in the catalog, webhook settings that are no http(s) URL or no
secret, and receivers that fail, then answer, or hang. Each is one error line with the
README's exit code and nothing stored, or a delivery retried until the receiver has it
once. Pure where it can be; one SQLite ledger for the module (no warehouse)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import create_engine, func, select

from billing.alerts import AlertRule, evaluate, threshold_text
from billing.db import session_factory
from billing.models import Alert
from billing.outbox import record_alert
from meterline.cli import main
from meterline.jobs import deliver as deliver_job
from meterline.jobs.alerts import (
    AlertRefused,
    evaluate_alerts,
    parse_threshold,
    parse_thresholds,
)
from meterline.jobs.deliver import deliver, outbox_rows
from meterline.settings import Settings, SettingsError, load_settings, settings
from meterline.sinks import PermanentSinkError, TransientSinkError
from meterline.sinks.webhook import WebhookSink
from meters.warehouse.base import Warehouse
from tests.billing.factories import CATALOG
from tests.conftest import warehouse_url
from tests.service.conftest import prepare_ledger

# --- thresholds (pure) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "text", "why"),
    [
        ("usage", "1e999999999", "beyond any usage quantity"),  # was decimal.Overflow, exit 5
        ("spend", "1e999999999", "more than the ledger's largest amount"),
        ("usage", "1e-999999999", "999999999 decimal places"),  # was stored as "0"
        ("spend", "1e-999999999", "more decimals than USD's minor unit"),
        ("usage", "1e400", "beyond any usage quantity"),  # was stored with 401 digits
        ("usage", "1e29", "beyond any usage quantity"),
        ("usage", "0.0000000001", "10 decimal places"),
        ("spend", "92233720368547758.08", "more than the ledger's largest amount"),
        ("spend", "0.001", "more decimals than USD's minor unit"),
        ("usage", "NaN", "is not a number"),
        ("usage", "sNaN", "is not a number"),
        ("usage", "Infinity", "is not a number"),
        ("spend", "-Infinity", "is not a number"),
        ("usage", "1_000", "is not a number"),  # Python's Decimal reads it as 1000
        ("usage", "\u0663", "is not a number"),  # an Arabic-Indic 3
        ("usage", "\uff15", "is not a number"),  # a full-width 5
        ("usage", "0x10", "is not a number"),
        ("usage", "1e", "is not a number"),
        ("usage", "", "is not a number"),
        ("usage", "  ", "is not a number"),
        ("usage", "1" * 61, "is not a number"),
        ("usage", "-5", "must be more than 0"),
        ("usage", "0", "must be more than 0"),
        ("spend", "-0.00", "must be more than 0"),
    ],
)
def test_a_threshold_nobody_can_mean_is_refused(metric: str, text: str, why: str) -> None:
    with pytest.raises(AlertRefused, match=why) as refused:
        parse_threshold(text, metric, "USD" if metric == "spend" else None)
    message = str(refused.value)
    assert "\n" not in message and len(message) < 200


@pytest.mark.parametrize(
    ("metric", "currency", "text", "stored"),
    [
        (
            "usage",
            None,
            "99999999999999999999999999999.999999999",
            "99999999999999999999999999999.999999999",
        ),
        ("usage", None, "1e3", "1000"),
        ("usage", None, "0.000000001", "0.000000001"),
        ("usage", None, " +.5 ", "0.5"),
        ("spend", "USD", "92233720368547758.07", "9223372036854775807"),
        ("spend", "USD", "500.00", "50000"),
        ("spend", "JPY", "5000", "5000"),
        ("spend", "KWD", "1.25", "1250"),
    ],
)
def test_thresholds_are_stored_exactly(
    metric: str, currency: str | None, text: str, stored: str
) -> None:
    assert [threshold_text(t) for t in parse_thresholds([text], metric, currency)] == [stored]


def test_one_threshold_however_written() -> None:
    assert parse_thresholds(["5", "5.0", "5e0", "50E-1"], "usage", None) == (Decimal(5),)


def test_threshold_text_keeps_every_digit() -> None:
    """The default context's 28 digits rounded a 38-digit quantity in keys and payloads."""
    for text in ("99999999999999999999999999999.999999999", "12345678901234567890123456789"):
        assert threshold_text(Decimal(text)) == text
    assert threshold_text(Decimal("1E+2")) == "100"


def test_a_38_digit_amount_compares_exactly() -> None:
    big = Decimal("12345678901234567890123456789.000000001")
    rule = AlertRule(1, "usage", (big,), "m")
    below = Decimal("12345678901234567890123456789.000000000")
    assert evaluate(rule, period_start="p", amount=below, states={}) == []
    fired = evaluate(rule, period_start="p", amount=big, states={})
    assert [e.threshold for e in fired] == [big]


# --- webhook settings (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/hook",  # was a transient failure per attempt, then parked
        "file:///etc/passwd",
        "not a url",
        "http://",
        "http://[::1",
        "http://h:99999/x",
        "javascript:alert(1)",
        "http://user:pw@127.0.0.1/x",
        "http://h/x#part",
        "http://h/x\n",
    ],
)
def test_a_webhook_url_that_is_no_http_url_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="METERLINE_WEBHOOK_URL") as refused:
        load_settings(webhook_url=url)
    assert "pw" not in str(refused.value)


def test_blank_webhook_settings_are_unset() -> None:
    """An empty METERLINE_WEBHOOK_SECRET was an internal error (exit 5) at deliver."""
    config = load_settings(webhook_url="  ", webhook_secret=" ")
    assert config.webhook_url is None and config.webhook_secret is None
    kept = load_settings(webhook_url="https://hooks.example.com/m?token=t", webhook_secret="s")
    assert kept.webhook_url == "https://hooks.example.com/m?token=t"


# --- receivers ---------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    daemon_threads = True
    # status per call, in turn (the last one repeats); keys as received
    statuses: list[int]
    keys: list[str]
    answer: bytes = b""


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.keys.append(self.headers["Idempotency-Key"])
        status = self.server.statuses[min(len(self.server.keys), len(self.server.statuses)) - 1]
        self.send_response(status)
        self.send_header("Content-Length", str(len(self.server.answer)))
        self.end_headers()
        self.wfile.write(self.server.answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), Handler)
    server.statuses, server.keys = [200], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server: Receiver) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


def test_a_receivers_answer_is_one_short_line_and_its_token_is_not_shown(
    receiver: Receiver,
) -> None:
    receiver.statuses = [500, 400]
    receiver.answer = b"Traceback (most recent call last):\n  File x\r\n\x1b[31m" + b"y" * 5000
    sink = WebhookSink(url_of(receiver) + "?token=RECEIVER-TOKEN", "s")
    for error in (TransientSinkError, PermanentSinkError):
        with pytest.raises(error) as failed:
            sink.send("alert.fired", "k", {})
        text = str(failed.value)
        assert "\n" not in text and "\r" not in text and "\x1b" not in text, text
        assert "RECEIVER-TOKEN" not in text and "/hook?..." in text
        assert len(text) < 300 and text.endswith("...")


class Stalling:
    """A receiver that takes the request and then answers one header line a second
    (`trickle`), or nothing at all."""

    def __init__(self, trickle: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.trickle = trickle
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            if self.trickle:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not self.stop.wait(0.2):
                if self.trickle:
                    conn.sendall(b"X-Wait: 1\r\n")

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
def test_a_hanging_receiver_is_cut_off_at_the_timeout(trickle: bool) -> None:
    """The timeout was per read: a receiver answering a header line every second held a
    delivery set to 2 s for as long as it went on."""
    stalling = Stalling(trickle)
    try:
        started = time.monotonic()
        with pytest.raises(TransientSinkError, match=r"did not answer within 0\.6 s"):
            WebhookSink(stalling.url, "s", timeout=0.6).send("alert.fired", "k", {})
        assert time.monotonic() - started < 3
    finally:
        stalling.close()


# --- end to end: the command line and the outbox on a SQLite ledger ----------------------


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("alerts-breaker")
    url = f"sqlite:///{tmp}/ledger.db"
    prepare_ledger(url, tmp)
    return url


def alerts_stored(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Alert)).scalar_one())
    finally:
        engine.dispose()


def cli(ledger: str, *args: str, **env: str) -> tuple[int, str]:
    settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main,
            list(args),
            env={"METERLINE_LEDGER_URL": ledger, "METERLINE_CATALOG_PATH": str(CATALOG), **env},
        )
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


def assert_one_error(code: int, output: str, expected: int) -> str:
    lines = [line for line in output.splitlines() if line.startswith("meterline: error:")]
    assert code == expected and len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


BAD_ADDS = [
    (["--meter", "fin_resolution", "--threshold", "1e999999999"], 2),
    (["--meter", "fin_resolution", "--threshold", "1e-999999999"], 2),
    (["--meter", "fin_resolution", "--threshold", "1e400"], 2),
    (["--meter", "fin_resolution", "--threshold", "NaN"], 2),
    (["--meter", "fin_resolution", "--threshold", "5", "--threshold", "-1"], 2),
    (["--currency", "USD", "--threshold", "1e999999999"], 2),
    (["--currency", "XYZ", "--threshold", "5"], 2),  # not ISO 4217
    (["--currency", "XAU", "--threshold", "5"], 2),  # ISO 4217, but no minor unit
    (["--currency", "US D", "--threshold", "5"], 2),
    (["--meter", "no_such_meter", "--threshold", "5"], 3),
]


def test_bad_alerts_are_refused_with_nothing_stored(ledger: str) -> None:
    for args, expected in BAD_ADDS:
        code, output = cli(ledger, "alerts", "add", "--customer", "cus_00001", *args)
        assert_one_error(code, output, expected)
    assert alerts_stored(ledger) == 0


def test_an_alert_repeating_a_threshold_is_refused(ledger: str) -> None:
    """A second alert on the same customer, meter and threshold announced each crossing
    twice."""
    base = ["alerts", "add", "--customer", "cus_00002"]
    assert cli(ledger, *base, "--meter", "fin_resolution", "--threshold", "5")[0] == 0
    assert cli(ledger, *base, "--currency", "EUR", "--threshold", "100")[0] == 0
    before = alerts_stored(ledger)
    for args in (
        ["--meter", "fin_resolution", "--threshold", "5.0"],
        ["--meter", "fin_resolution", "--threshold", "7", "--threshold", "5e0"],
        ["--currency", "eur", "--threshold", "100.00"],
    ):
        line = assert_one_error(*cli(ledger, *base, *args), 2)
        assert "already watches" in line
    assert "EUR 100.00" in line
    assert alerts_stored(ledger) == before
    # Another threshold, another meter, another customer or a plan are other alerts.
    assert cli(ledger, *base, "--meter", "fin_resolution", "--threshold", "6")[0] == 0
    assert cli(ledger, *base, "--meter", "seats", "--threshold", "5")[0] == 0
    assert cli(ledger, "alerts", "add", "--plan", "volume", "--meter", "fin_resolution",
               "--threshold", "5")[0] == 0  # fmt: skip


def test_an_empty_webhook_secret_is_not_configured(ledger: str) -> None:
    code, output = cli(
        ledger,
        "outbox",
        "deliver",
        "--sink",
        "webhook",
        METERLINE_WEBHOOK_URL="http://127.0.0.1:9/hook",
        METERLINE_WEBHOOK_SECRET="",
    )
    assert "not configured" in assert_one_error(code, output, 2)
    code, output = cli(ledger, "outbox", "list", METERLINE_WEBHOOK_URL="ftp://127.0.0.1/hook")
    assert "METERLINE_WEBHOOK_URL" in assert_one_error(code, output, 2)


def test_a_receiver_failing_then_answering_gets_the_event_once(
    ledger: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """500, then (after the backoff) 200: the event is retried with the same key and
    delivered once; later runs send nothing."""
    config: Settings = load_settings(
        ledger_url=ledger,
        catalog_path=CATALOG,
        webhook_url=url_of(receiver),
        webhook_secret=SecretStr("s"),
    )
    at = datetime(2026, 11, 20, tzinfo=UTC)
    engine = create_engine(ledger)
    try:
        with session_factory(engine).begin() as session:
            record_alert(
                session,
                "alert.fired",
                customer="cus_00001",
                key="alert.fired:9:sub_00001:5:2026-11-05T00:00:00+00:00",
                payload={"alert_id": 9},
                at=at,
            )
    finally:
        engine.dispose()
    receiver.statuses = [500, 200]
    now = datetime.now(UTC)
    monkeypatch.setattr(deliver_job, "_now", lambda: now)
    first = deliver("webhook", config=config)
    assert (first.delivered, len(receiver.keys)) == (0, 1)
    deliver("webhook", config=config)  # within the backoff: nothing sent
    assert len(receiver.keys) == 1
    monkeypatch.setattr(deliver_job, "_now", lambda: now + timedelta(minutes=2))
    second = deliver("webhook", config=config)
    assert second.delivered == 1 and second.left == 0
    deliver("webhook", config=config)
    assert receiver.keys == ["alert.fired:9:sub_00001:5:2026-11-05T00:00:00+00:00"] * 2
    row = next(r for r in outbox_rows(sink="webhook", config=config) if r.kind == "alert.fired")
    assert row.status == "delivered"


@pytest.mark.single_warehouse
def test_an_alert_stored_with_threshold_0_does_not_stop_the_others(
    ledger: str, warehouse: Warehouse
) -> None:
    """`alerts add --threshold 1e-999999999` stored "0"; every evaluation after it failed
    (ValueError, exit 5), the other alerts' included."""
    config = load_settings(
        ledger_url=ledger, catalog_path=CATALOG, warehouse_url=warehouse_url(warehouse)
    )
    engine = create_engine(ledger)
    try:
        with session_factory(engine).begin() as session:
            session.add(
                Alert(
                    plan_id="standard",
                    metric="usage",
                    meter="fin_resolution",
                    thresholds=["0"],
                    created_at=datetime(2026, 11, 1, tzinfo=UTC),
                )
            )
    finally:
        engine.dispose()
    report = evaluate_alerts(datetime(2026, 11, 20, tzinfo=UTC), config=config)
    assert len(report.errors) == 1 and "threshold '0'" in report.errors[0], report.errors
    assert report.subscriptions >= 1  # the alerts added above were evaluated
