"""An HTTP proxy that forwards to an upstream base URL and injects
faults on demand, to prove a client survives what the network and Stripe do to it.

    with StripeStandIn() as api, FaultProxy(api.base_url) as proxy:
        proxy.plan("drop_after_forward", when=lambda method, path: path == "/v1/invoices")
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": proxy.base_url})

Faults (each planned `times` times, for the requests `when(method, path)` accepts; the
path has no query string; plans are consulted in the order they were made):

* `drop_after_forward`: forward the request, let the upstream answer, then close the
  client's connection without a byte of the answer (the work is done, the answer lost);
* `error_500`: answer 500 with Stripe's api_error body, without forwarding;
* `rate_limit`: answer 429 with `Retry-After: 1` and Stripe's rate_limit body, without
  forwarding;
* `delay`: forward, then hold the answer `delay` seconds (longer than the client's
  timeout) before sending it, if the client is still there.

`injected` counts the faults injected per fault; `injections` lists (fault, method, path);
`forwarded` counts the requests that reached the upstream.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from meterline.demo.stripe_standin.server import LoopbackHandler, LoopbackServer, ServerThread

FAULTS = ("drop_after_forward", "error_500", "rate_limit", "delay")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "host",
}


@dataclass
class _Plan:
    fault: str
    times: int
    when: Callable[[str, str], bool] | None
    delay: float


class FaultProxy:
    def __init__(self, upstream: str, *, delay: float = 2.0, upstream_timeout: float = 30.0):
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"FaultProxy forwards to http:// base URLs only, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_timeout = upstream_timeout
        self.default_delay = delay
        self._lock = threading.Lock()
        self._plans: list[_Plan] = []
        self._stopping = threading.Event()
        self.injected: Counter[str] = Counter()
        self.injections: list[tuple[str, str, str]] = []
        self.forwarded = 0
        self._serving: ServerThread | None = None

    # -- the plan -----------------------------------------------------------------------

    def plan(
        self,
        fault: str,
        *,
        times: int = 1,
        when: Callable[[str, str], bool] | None = None,
        delay: float | None = None,
    ) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._plans.append(
                _Plan(fault, times, when, self.default_delay if delay is None else delay)
            )

    def clear(self) -> None:
        """Forget the faults still planned."""
        with self._lock:
            self._plans.clear()

    @property
    def pending(self) -> int:
        """Faults planned and not yet injected."""
        with self._lock:
            return sum(p.times for p in self._plans)

    def _take(self, method: str, path: str) -> _Plan | None:
        with self._lock:
            for plan in self._plans:
                if plan.when is None or plan.when(method, path):
                    plan.times -= 1
                    if plan.times == 0:
                        self._plans.remove(plan)
                    self.injected[plan.fault] += 1
                    self.injections.append((plan.fault, method, path))
                    return plan
            return None

    # -- forwarding ---------------------------------------------------------------------

    def _forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(
            self.upstream_host, self.upstream_port, timeout=self.upstream_timeout
        )
        try:
            connection.request(method, target, body=body or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            with self._lock:
                self.forwarded += 1
            return response.status, kept, payload
        finally:
            connection.close()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._stopping.clear()
        self._serving = ServerThread(_ProxyServer(self), "fault-proxy")
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._serving is not None:
            self._serving.stop()
            self._serving = None

    @property
    def base_url(self) -> str:
        if self._serving is None:
            raise RuntimeError("the proxy is not running")
        return f"http://127.0.0.1:{self._serving.port}"

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _stripe_error(status: int, error: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps({"error": error}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Request-Id", "req_fault_" + uuid.uuid4().hex[:16]),
    ]
    return status, headers, body


class _ProxyHandler(LoopbackHandler):
    server: _ProxyServer

    def _serve(self) -> None:
        proxy = self.server.proxy
        body = self.read_body()
        if body is None:
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        path = urlsplit(self.path).path
        plan = proxy._take(self.command, path)
        fault = plan.fault if plan else None
        if fault == "error_500":
            answer = _stripe_error(
                500,
                {
                    "type": "api_error",
                    "message": "An unknown error occurred (injected by the fault proxy).",
                },
            )
        elif fault == "rate_limit":
            status, answer_headers, payload = _stripe_error(
                429,
                {
                    "type": "invalid_request_error",
                    "code": "rate_limit",
                    "message": "Too many requests hit the API too quickly (injected by the "
                    "fault proxy).",
                },
            )
            answer = (status, [*answer_headers, ("Retry-After", "1")], payload)
        else:
            answer = proxy._forward(self.command, self.path, headers, body)
        if fault == "drop_after_forward":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "delay":
            assert plan is not None
            if proxy._stopping.wait(plan.delay):
                self.close_connection = True
                return
        self._answer(*answer)

    def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            # The client gave up (a delay past its timeout): the answer has nowhere to go.
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ProxyServer(LoopbackServer):
    def __init__(self, proxy: FaultProxy):
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
