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

The timeout bounds the whole request (connect, send, the answer's status, headers and
body), not each read: a receiver that answers a byte at a time is cut off at the same
deadline as one that says nothing. An error names the receiver by its scheme, host, port
and path only (a query may hold a token of the receiver's) and quotes at most 200
characters of its answer on one line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpcore
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


#: Characters of a receiver's answer quoted in an error (its first ones, on one line).
ANSWER_CHARS = 200
_SPACES = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")


def shown_url(url: str) -> str:
    """``url`` as messages and logs show it: scheme, host, port and path, without a user,
    password, query or fragment (a receiver's token may be in its query)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    query = "?..." if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


def one_line(text: str, limit: int = ANSWER_CHARS) -> str:
    """``text`` on one line: line breaks, tabs and control characters as one space,
    at most ``limit`` characters (cut with "...")."""
    flat = _SPACES.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class _Deadline:
    """The instant (time.monotonic) the current thread's request must end by, or None."""

    def __init__(self) -> None:
        self._local = threading.local()

    def set(self, at: float | None) -> None:
        self._local.at = at

    def left(self, timeout: float | None, error: type[Exception]) -> float | None:
        """The seconds an operation may take: its own timeout, at most what is left until
        the deadline; `error` when nothing is left."""
        at = getattr(self._local, "at", None)
        if at is None:
            return timeout
        left = at - time.monotonic()
        if left <= 0:
            raise error("the request's deadline passed")
        return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's own sockets, each wrapped in a `_Stream`."""

    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _Stream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, left, socket_options), self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _client(timeout: float, deadline: _Deadline) -> httpx.Client:
    """An httpx client (proxies from the environment as httpx takes them) whose
    connections keep `deadline`. httpx takes no network backend of its own: the pools of
    its transports (httpcore's) are given ours."""
    client = httpx.Client(timeout=timeout)
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if not isinstance(getattr(pool, "_network_backend", None), httpcore.NetworkBackend):
            raise RuntimeError("httpx's transport has no httpcore pool to bound (a new httpx?)")
        pool._network_backend = _Backend(deadline)  # type: ignore[union-attr]
    return client


class WebhookSink:
    """Delivers events to ``url`` signed with ``secret``; each request ends within
    ``timeout`` seconds, whatever the receiver does."""

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
        self.shown = shown_url(url)
        self.secret = secret
        self.clock = clock
        self.timeout = timeout
        self._deadline = _Deadline()
        self.client = client or _client(timeout, self._deadline)

    def send(self, kind: str, idempotency_key: str, payload: Mapping[str, Any]) -> str | None:
        """POST one event; returns None (a webhook has no external id). Raises
        TransientSinkError or PermanentSinkError, each with a one-line message."""
        body = body_of(kind, idempotency_key, payload)
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            HEADER: sign(self.secret, timestamp, body),
            "Idempotency-Key": idempotency_key,
            "User-Agent": "meterline-webhook",
        }
        self._deadline.set(time.monotonic() + self.timeout)
        try:
            with self.client.stream("POST", self.url, content=body, headers=headers) as response:
                status = response.status_code
                if 200 <= status < 300:
                    return None
                answer = _answer(response)
        except httpx.TimeoutException as exc:
            raise TransientSinkError(
                f"webhook {self.shown} did not answer within {self.timeout:g} s"
                " (METERLINE_WEBHOOK_TIMEOUT_S)"
            ) from exc
        except httpx.HTTPError as exc:
            raise TransientSinkError(
                f"webhook {self.shown} unreachable: {one_line(str(exc)) or type(exc).__name__}"
            ) from exc
        finally:
            self._deadline.set(None)
        text = f"webhook {self.shown} answered {status}" + (f": {answer}" if answer else "")
        if status >= 500 or status in (408, 429):
            raise TransientSinkError(text)
        raise PermanentSinkError(text)

    def close(self) -> None:
        self.client.close()


def _answer(response: httpx.Response) -> str:
    """The start of an error answer's body, on one line (the rest is not read)."""
    head = b""
    for chunk in response.iter_bytes():
        head += chunk
        if len(head) > ANSWER_CHARS * 4:
            break
    return one_line(head.decode("utf-8", errors="replace"))
