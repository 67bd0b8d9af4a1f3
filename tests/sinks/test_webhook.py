"""The webhook sink against a local HTTP server: the request is signed (HMAC-SHA256 over
timestamp + body), carries the idempotency key, and outcomes map to delivered,
transient (retried) and permanent (parked)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meterline.sinks import PermanentSinkError, TransientSinkError
from meterline.sinks.webhook import HEADER, WebhookSink, sign, verify

SECRET = "whsec_test"
NOW = 1_790_000_000


class Receiver(ThreadingHTTPServer):
    status = 200
    requests: list[tuple[dict[str, str], bytes]]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((dict(self.headers.items()), body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"no")

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


def url(server: Receiver) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


def test_delivers_a_signed_request_the_receiver_can_verify(receiver: Receiver) -> None:
    sink = WebhookSink(url(receiver), SECRET, clock=lambda: NOW)
    payload = {"alert_id": 3, "threshold": "500", "amount_minor": 61200, "currency": "USD"}
    assert sink.send("alert.fired", "alert.fired:3:500:2026-10", payload) is None
    ((headers, body),) = receiver.requests
    assert headers["Idempotency-Key"] == "alert.fired:3:500:2026-10"
    assert headers[HEADER].startswith(f"t={NOW},v1=")
    assert verify(SECRET, headers[HEADER], body, now=NOW + 10)
    assert json.loads(body) == {
        "type": "alert.fired",
        "id": "alert.fired:3:500:2026-10",
        "data": payload,
    }
    # Tampered body, wrong secret, stale timestamp: refused.
    assert not verify(SECRET, headers[HEADER], body + b" ", now=NOW)
    assert not verify("other", headers[HEADER], body, now=NOW)
    assert not verify(SECRET, headers[HEADER], body, now=NOW + 301)
    assert not verify(SECRET, "garbage", body, now=NOW)


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"12.{}", hashlib.sha256).hexdigest()
    assert sign("k", 12, b"{}") == f"t=12,v1={expected}"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, TransientSinkError),
        (429, TransientSinkError),
        (400, PermanentSinkError),
        (410, PermanentSinkError),
    ],
)
def test_outcomes(receiver: Receiver, status: int, error: type[Exception]) -> None:
    receiver.status = status
    with pytest.raises(error, match=str(status)):
        WebhookSink(url(receiver), SECRET).send("alert.fired", "k", {})


def test_unreachable_is_transient() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    server.server_close()
    with pytest.raises(TransientSinkError, match="unreachable"):
        WebhookSink(f"http://127.0.0.1:{port}/", SECRET, timeout=2).send("alert.fired", "k", {})


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError):
        WebhookSink("http://127.0.0.1/", "")
