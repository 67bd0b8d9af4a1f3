"""The HTTP layer of the AvaTax stand-in: AvaTax REST v2's routes, Basic auth, JSON
bodies checked against Avalara's model definitions, AvaTax's error shape, the
``x-correlation-id`` header the SDK reads, and planned faults; over the standard
library's ThreadingHTTPServer on 127.0.0.1.

A request's operation runs under the store's lock (atomic); a planned fault that holds
or drops the answer does so after the operation, outside the lock.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .store import AvaTaxFault, RateTable, Store
from .validate import request_problems

#: Faults a test can plan: answer 500 without acting; act, then hold the answer past the
#: client's timeout; act, then close the connection without a byte of the answer.
FAULTS = ("error_500", "timeout", "drop")

_ROUTES: tuple[tuple[str, str, str, str | None], ...] = (
    ("GET", "/api/v2/utilities/ping", "ping", None),
    ("POST", "/api/v2/transactions/create", "create", "CreateTransactionModel"),
    ("GET", "/api/v2/companies/{company}/transactions/{code}", "get", None),
    ("GET", "/api/v2/companies/{company}/transactions/{code}/types/{type}", "get", None),
    (
        "POST",
        "/api/v2/companies/{company}/transactions/{code}/commit",
        "commit",
        "CommitTransactionModel",
    ),
    (
        "POST",
        "/api/v2/companies/{company}/transactions/{code}/void",
        "void",
        "VoidTransactionModel",
    ),
)
_COMPILED = [
    (
        method,
        re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"),
        name,
        model,
        path,
    )
    for method, path, name, model in _ROUTES
]


@dataclass
class Planned:
    fault: str
    when: Callable[[str, str], bool]
    times: int
    delay: float


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    fault: str | None = None
    delay: float = 0.0


def _to_json(value: Any) -> Any:
    """A document with Decimals as JSON numbers: each as the float whose shortest text is
    the decimal itself (checked)."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 2**53:
            return int(value)
        number = float(value)
        if Decimal(repr(number)) != value:
            raise ValueError(f"{value} has no exact JSON number")
        return number
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def _include(query: dict[str, str]) -> set[str] | None:
    raw = query.get("$include")
    if raw is None:
        return None
    return {word.strip().lower() for word in raw.split(",") if word.strip()}


class Api:
    """AvaTax's request semantics over a Store; ``handle`` is one whole request."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.requests: Counter[tuple[str, str]] = Counter()

    def _account(self, headers: dict[str, str]) -> str:
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Basic "):
            raise AvaTaxFault(
                401,
                "AuthenticationIncomplete",
                "Authentication Incomplete.",
                target="HttpRequestHeaders",
            )
        try:
            account, _, key = base64.b64decode(authorization[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            account, key = "", ""
        if self.store.accounts.get(account) != key or not key:
            raise AvaTaxFault(
                401,
                "AuthenticationException",
                "Authentication failed.",
                target="HttpRequestHeaders",
            )
        return account

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query))
        for route_method, pattern, name, model, template in _COMPILED:
            match = pattern.match(path)
            if match is None or route_method != method:
                continue
            self.requests[(method, template)] += 1
            try:
                return self._route(name, model, match.groupdict(), query, headers, body)
            except AvaTaxFault as fault:
                return Answer(fault.status, fault.body())
        self.requests[(method, "<unrecognized>")] += 1
        return Answer(
            404,
            AvaTaxFault(
                404,
                "EntityNotFoundError",
                f"No such endpoint: {method} {path}",
                target="HttpRequest",
            ).body(),
        )

    def _route(
        self,
        name: str,
        model: str | None,
        args: dict[str, str],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Answer:
        if name == "ping":
            try:
                account: str | None = self._account(headers)
            except AvaTaxFault:
                account = None
            return Answer(200, self.store.ping(account))
        self._account(headers)
        doc: Any = None
        if model is not None:
            try:
                doc = json.loads(body or b"null", parse_float=Decimal)
            except ValueError as exc:
                raise AvaTaxFault(
                    400, "JsonFormatError", f"The request body is not JSON: {exc}"
                ) from None
            problems = request_problems(model, doc)
            if problems:
                first = problems[0]
                raise AvaTaxFault(
                    400,
                    first.code,
                    first.message,
                    target="IncorrectData",
                    details=[(p.code, p.message, p.path or None) for p in problems],
                )
        include = _include(query)
        doc_type = args.get("type") or query.get("documentType")
        store = self.store
        with store.lock:
            if name == "create":
                return Answer(201, store.render(store.create(doc), include))
            if name == "get":
                return Answer(
                    200, store.render(store.find(args["company"], args["code"], doc_type), include)
                )
            if name == "commit":
                txn = store.commit(args["company"], args["code"], doc_type, doc)
                return Answer(200, store.render(txn, include))
            if name == "void":
                txn = store.void(args["company"], args["code"], doc_type, doc)
                return Answer(200, store.render(txn, include))
        raise AssertionError(name)  # pragma: no cover


@dataclass
class _State:
    planned: list[Planned] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class AvaTaxStandIn:
    """A local AvaTax REST v2 for tests and the demo (docs/tax.md, "The AvaTax stand-in").

    ``accounts`` maps account ids to license keys; ``companies`` company codes to ids;
    ``rates`` is the rate table tax is computed from. ``plan(fault, when, times, delay)``
    makes the next matching requests fail (FAULTS); ``injected`` counts faults done.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        accounts: dict[str, str] | None = None,
        companies: dict[str, int] | None = None,
        rates: RateTable | None = None,
        clock: Callable[[], datetime] | None = None,
        verbose: bool = False,
    ) -> None:
        self.store = Store(
            accounts=accounts or {"2000000001": "standin-license-key"},
            companies=companies or {"DEFAULT": 7001},
            rates=rates or RateTable(),
            clock=clock,
        )
        self.api = Api(self.store)
        self.state = _State()
        self.verbose = verbose
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def injected(self) -> Counter[str]:
        return self.state.injected

    def plan(
        self,
        fault: str,
        *,
        when: Callable[[str, str], bool] = lambda method, path: True,
        times: int = 1,
        delay: float = 2.0,
    ) -> None:
        """Make the next ``times`` requests for which ``when(method, path)`` holds fail
        with ``fault`` (``path`` without its query string)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
        with self.state.lock:
            self.state.planned.append(Planned(fault, when, times, delay))

    def _take(self, method: str, path: str) -> Planned | None:
        with self.state.lock:
            for planned in self.state.planned:
                if planned.times > 0 and planned.when(method, path):
                    planned.times -= 1
                    self.state.injected[planned.fault] += 1
                    return planned
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                if standin.verbose:
                    super().log_message(format, *args)

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                planned = standin._take(method, urlsplit(self.path).path)
                if planned is not None and planned.fault == "error_500":
                    fault = AvaTaxFault(500, "InternalServerError", "An internal error occurred.")
                    self._answer(Answer(500, fault.body()))
                    return
                answer = standin.api.handle(method, self.path, headers, body)
                if planned is not None and planned.fault == "drop":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if planned is not None and planned.fault == "timeout":
                    time.sleep(planned.delay)
                self._answer(answer)

            def _answer(self, answer: Answer) -> None:
                data = json.dumps(_to_json(answer.body)).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("x-correlation-id", str(uuid.uuid4()))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a planned timeout)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler

    def start(self) -> AvaTaxStandIn:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> AvaTaxStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
