"""The webhook sink: POSTs an outbox event's payload as JSON to one URL, signed.

Signature (Stripe-style, docs/alerts.md): header ``Meterline-Signature: t=T,v1=HEX``
where T is the Unix time of the request (seconds) and HEX the lowercase hex of
HMAC-SHA256(secret, f"{T}.{body}") over the exact bytes sent. The receiver recomputes it
with the shared secret, compares in constant time, and refuses a T too far from its own
clock (``verify``'s ``tolerance``: 300 s) so a captured request cannot be replayed
later. ``Idempotency-Key`` carries the event's key (stable across retries and replays):
the receiver drops a key it has already handled.

Outcomes: a 2xx delivers; a connection error, timeout, 5xx, 408 or 429 is transient
(the outbox retries it with its backoff); any other 4xx is permanent (parked: the
receiver refuses it, a person must look).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from meterline.sinks import PermanentSinkError, TransientSinkError

HEADER = "Meterline-Signature"
#: Seconds a receiver accepts between a signature's timestamp and its own clock.
TOLERANCE = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance: int = TOLERANCE) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within
    ``tolerance`` seconds of ``now`` (what a receiver runs)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))


def body_of(kind: str, idempotency_key: str, payload: Mapping[str, Any]) -> bytes:
    """The bytes sent: the event as compact JSON with sorted keys (amounts in payloads
    are integers or decimal strings, never floats)."""
    doc = {"type": kind, "id": idempotency_key, "data": payload}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class WebhookSink:
    """Delivers events to ``url`` signed with ``secret``."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        client: httpx.Client | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook needs a signing secret")
        self.url = url
        self.secret = secret
        self.clock = clock
        self.client = client or httpx.Client(timeout=timeout)

    def send(self, kind: str, idempotency_key: str, payload: Mapping[str, Any]) -> str | None:
        """POST one event; returns None (a webhook has no external id). Raises
        TransientSinkError or PermanentSinkError."""
        body = body_of(kind, idempotency_key, payload)
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            HEADER: sign(self.secret, timestamp, body),
            "Idempotency-Key": idempotency_key,
            "User-Agent": "meterline-webhook",
        }
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientSinkError(f"webhook {self.url} unreachable: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return None
        text = f"webhook {self.url} answered {status}: {response.text[:200]}"
        if status >= 500 or status in (408, 429):
            raise TransientSinkError(text)
        raise PermanentSinkError(text)

    def close(self) -> None:
        self.client.close()
