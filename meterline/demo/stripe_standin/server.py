"""The HTTP layer of the Stripe stand-in: routes, API keys, idempotency keys, Stripe's
error shape, over the standard library's ThreadingHTTPServer on 127.0.0.1.

A request runs with the store's lock held from decoding to answer, so it is atomic, and
an idempotency key's first request is complete before its retry is looked at.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import stripe.params as sp
from stripe._api_version import _ApiVersion

from .store import IdempotentResult, Store, StripeError
from .validate import ParamError, check_modelled, decode_form, validate_params

API_VERSION = _ApiVersion.CURRENT
IDEMPOTENCY_KEY_MAX_LENGTH = 255
UNRECOGNIZED = "<unrecognized>"

_LINE = {
    "amount": None,
    "description": None,
    "metadata": None,
    "period": None,
    "invoice_item": None,
}
_CREDIT_NOTE_LINE = {
    "type": None,
    "amount": None,
    "invoice_line_item": None,
    "description": None,
    "quantity": None,
    "unit_amount": None,
    "metadata": None,
}
_LIST = {"limit": None, "starting_after": None, "ending_before": None}


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    params: type
    operation: str
    # The parameters the stand-in models: key -> None, or the modelled keys of its hashes.
    modelled: dict[str, Any]

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + self.template.replace("{id}", "([A-Za-z0-9_]+)") + "$")


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/customers",
        sp.CustomerCreateParams,
        "create_customer",
        {"name": None, "email": None, "description": None, "phone": None, "metadata": None},
    ),
    Route(
        "GET",
        "/v1/customers/search",
        sp.CustomerSearchParams,
        "search_customers",
        {"query": None, "limit": None, "page": None},
    ),
    Route("GET", "/v1/customers/{id}", sp.CustomerRetrieveParams, "retrieve_customer", {}),
    Route(
        "POST",
        "/v1/customers/{id}/balance_transactions",
        sp.CustomerCreateBalanceTransactionParams,
        "create_balance_transaction",
        {"amount": None, "currency": None, "description": None, "metadata": None},
    ),
    Route(
        "GET",
        "/v1/customers/{id}/balance_transactions",
        sp.CustomerListBalanceTransactionsParams,
        "list_balance_transactions",
        _LIST,
    ),
    Route(
        "POST",
        "/v1/invoices",
        sp.InvoiceCreateParams,
        "create_invoice",
        {
            "customer": None,
            "currency": None,
            "auto_advance": None,
            "collection_method": None,
            "days_until_due": None,
            "due_date": None,
            "description": None,
            "metadata": None,
            "pending_invoice_items_behavior": None,
        },
    ),
    Route(
        "GET",
        "/v1/invoices",
        sp.InvoiceListParams,
        "list_invoices",
        {
            **_LIST,
            "customer": None,
            "status": None,
            "collection_method": None,
            "created": {"gt": None, "gte": None, "lt": None, "lte": None},
        },
    ),
    Route("GET", "/v1/invoices/{id}", sp.InvoiceRetrieveParams, "retrieve_invoice", {}),
    Route("DELETE", "/v1/invoices/{id}", sp.InvoiceDeleteParams, "delete_invoice", {}),
    Route(
        "POST",
        "/v1/invoices/{id}/add_lines",
        sp.InvoiceAddLinesParams,
        "add_lines",
        {"lines": _LINE, "invoice_metadata": None},
    ),
    Route(
        "POST",
        "/v1/invoices/{id}/remove_lines",
        sp.InvoiceRemoveLinesParams,
        "remove_lines",
        {"lines": {"id": None, "behavior": None}, "invoice_metadata": None},
    ),
    Route("GET", "/v1/invoices/{id}/lines", sp.InvoiceListLinesParams, "list_lines", _LIST),
    Route(
        "POST",
        "/v1/invoices/{id}/finalize",
        sp.InvoiceFinalizeInvoiceParams,
        "finalize_invoice",
        {"auto_advance": None},
    ),
    Route("POST", "/v1/invoices/{id}/void", sp.InvoiceVoidInvoiceParams, "void_invoice", {}),
    Route(
        "POST",
        "/v1/invoices/{id}/pay",
        sp.InvoicePayParams,
        "pay_invoice",
        {"paid_out_of_band": None},
    ),
    Route(
        "POST",
        "/v1/invoiceitems",
        sp.InvoiceItemCreateParams,
        "create_invoice_item",
        {
            "customer": None,
            "invoice": None,
            "amount": None,
            "currency": None,
            "description": None,
            "period": None,
            "metadata": None,
            "discountable": None,
        },
    ),
    Route("DELETE", "/v1/invoiceitems/{id}", sp.InvoiceItemDeleteParams, "delete_invoice_item", {}),
    Route(
        "POST",
        "/v1/credit_notes",
        sp.CreditNoteCreateParams,
        "create_credit_note",
        {
            "invoice": None,
            "amount": None,
            "lines": _CREDIT_NOTE_LINE,
            "reason": None,
            "memo": None,
            "metadata": None,
            "credit_amount": None,
            "out_of_band_amount": None,
            "refund_amount": None,
        },
    ),
    Route(
        "GET",
        "/v1/credit_notes",
        sp.CreditNoteListParams,
        "list_credit_notes",
        {**_LIST, "invoice": None, "customer": None},
    ),
)
_COMPILED = [(route, route.pattern) for route in ROUTES]


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def _error(exc: StripeError) -> tuple[int, dict[str, Any]]:
    return exc.status, exc.body()


def _api_key(headers: dict[str, str]) -> str:
    authorization = headers.get("authorization", "")
    key = ""
    if authorization.startswith("Bearer "):
        key = authorization[len("Bearer ") :].strip()
    elif authorization.startswith("Basic "):
        try:
            decoded = base64.b64decode(authorization[len("Basic ") :]).decode()
        except ValueError:
            decoded = ""
        key = decoded.split(":", 1)[0]
    if not key:
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
            type="authentication_error",
        )
    if not key.startswith("sk_test_"):
        # Never the whole key, however short: its prefix and last 4 characters at most.
        masked = key[:8] + "*" * max(4, len(key) - 12) + key[-4:] if len(key) > 16 else "****"
        raise StripeError(
            401,
            f"Invalid API Key provided: {masked} (the stand-in accepts test-mode secret "
            "keys, sk_test_..., only).",
            type="authentication_error",
        )
    return key


def route_for(method: str, path: str) -> tuple[Route, str | None] | None:
    for route, pattern in _COMPILED:
        if route.method != method:
            continue
        match = pattern.match(path)
        if match is not None:
            return route, (match.group(1) if match.groups() else None)
    return None


class Api:
    """Stripe's request semantics over a Store; `handle` is one whole request."""

    def __init__(self, store: Store):
        self.store = store

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        store = self.store
        with store.lock:
            request_id = store.new_id("req")
            base_headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
            split = urlsplit(target)
            path = unquote(split.path)
            found = route_for(method, path)
            store.request_counts[(method, found[0].template if found else UNRECOGNIZED)] += 1
            try:
                api_key = _api_key(headers)
                version = headers.get("stripe-version")
                if version is not None and version != API_VERSION:
                    raise StripeError(
                        400,
                        f"The Stripe stand-in speaks API version {API_VERSION} only; the "
                        f"request asked for {version}.",
                    )
                if "stripe-account" in headers or "stripe-context" in headers:
                    raise StripeError(
                        400,
                        "The Stripe stand-in models one account: it does not model Connect "
                        "(the Stripe-Account and Stripe-Context headers).",
                    )
                if found is None:
                    raise StripeError(
                        404,
                        f"Unrecognized request URL ({method}: {path}). Please see "
                        "https://stripe.com/docs or we can help at "
                        "https://support.stripe.com/.",
                    )
                route, object_id = found
                pairs = parse_qsl(split.query, keep_blank_values=True)
                if body:
                    pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
                try:
                    raw = decode_form(pairs)
                    params = validate_params(route.params, raw)
                    check_modelled(params, route.modelled, f"{method} {route.template}")
                except ParamError as exc:
                    raise StripeError(400, exc.message, param=exc.param, code=exc.code) from None
            except StripeError as exc:
                status, payload = _error(exc)
                return Answer(status, payload, base_headers)

            idempotency_key = headers.get("idempotency-key") if method == "POST" else None
            if idempotency_key is not None:
                replay = self._idempotent_replay(
                    api_key, idempotency_key, method, path, raw, base_headers
                )
                if replay is not None:
                    return replay
                base_headers["Idempotency-Key"] = idempotency_key

            status, payload = self._run(route, object_id, params)
            if idempotency_key is not None:
                # Stripe saves the first answer once the endpoint has begun executing,
                # errors (500s too) included; requests refused by validation are not saved.
                store.idempotency[(api_key, idempotency_key)] = IdempotentResult(
                    method, path, raw, status, payload, request_id
                )
            return Answer(status, payload, base_headers)

    def _idempotent_replay(
        self,
        api_key: str,
        key: str,
        method: str,
        path: str,
        raw: dict[str, Any],
        base_headers: dict[str, str],
    ) -> Answer | None:
        if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
            exc = StripeError(
                400,
                f"Invalid Idempotency-Key: keys can be at most {IDEMPOTENCY_KEY_MAX_LENGTH} "
                "characters long.",
                type="idempotency_error",
            )
            return Answer(exc.status, exc.body(), base_headers)
        saved = self.store.idempotency.get((api_key, key))
        if saved is None:
            return None
        if (saved.method, saved.path) != (method, path):
            exc = StripeError(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they "
                f"were first used for ('{saved.method} {saved.path}' vs '{method} {path}'). "
                f"Try using a key other than '{key}' if you meant to execute a different "
                "request.",
                type="idempotency_error",
            )
            return Answer(exc.status, exc.body(), base_headers)
        if saved.params != raw:
            exc = StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters "
                f"they were first used with. Try using a key other than '{key}' if you "
                "meant to execute a different request.",
                type="idempotency_error",
            )
            return Answer(exc.status, exc.body(), base_headers)
        headers = {
            **base_headers,
            "Idempotency-Key": key,
            "Idempotent-Replayed": "true",
            "Original-Request": saved.request_id,
        }
        return Answer(saved.status, saved.body, headers)

    def _run(
        self, route: Route, object_id: str | None, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        operation: Callable[..., dict[str, Any]] = getattr(self.store, route.operation)
        try:
            if object_id is None:
                return 200, operation(params)
            return 200, operation(object_id, params)
        except StripeError as exc:
            return _error(exc)
        except Exception:
            traceback.print_exc()
            return _error(
                StripeError(
                    500,
                    "An unknown error occurred in the Stripe stand-in.",
                    type="api_error",
                )
            )


class LoopbackHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, answers sent at once (the stand-in, the tests' fault proxy)."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without NODELAY, Nagle's algorithm and the
        # peer's delayed ACK hold the body back ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read_body(self) -> bytes | None:
        """The request's body; None when the client hung up before all of it came (a
        killed process): no HTTP server acts on a request it did not receive whole, and
        Stripe neither, so the caller drops it unanswered. (Acting on it saved the
        idempotency key with the params that came, and the retry was refused.)"""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True
            return None
        return body


class _Handler(LoopbackHandler):
    server: _Server

    def _serve(self) -> None:
        body = self.read_body()
        if body is None:
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.server.api.handle(self.command, self.path, headers, body)
        # Compact, not indented as Stripe's own: clients parse it, and an indent makes
        # json use its pure-Python encoder (a fifth of the stand-in's time in the demo).
        payload = json.dumps(answer.body, separators=(",", ":")).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class LoopbackServer(ThreadingHTTPServer):
    """A threaded loopback server that lets a client hang up: a connection the client
    closed (what a dropped answer or a client timeout does) is not an error to print."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ServerThread:
    """A loopback server served from a daemon thread until `stop`."""

    def __init__(self, server: LoopbackServer, name: str):
        self.server = server
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Server(LoopbackServer):
    def __init__(self, port: int, api: Api, verbose: bool):
        self.api = api
        self.verbose = verbose
        super().__init__(("127.0.0.1", port), _Handler)


class StripeStandIn:
    """A local server speaking the part of Stripe's API meterline's sink uses.

        with StripeStandIn() as stripe_api:
            client = stripe.StripeClient("sk_test_x",
                                         base_addresses={"api": stripe_api.base_url})

    `store` holds the state (read it in tests with `store.lock` held);
    `request_count` counts the requests served per (method, path template);
    `request_count.total()` is all of them.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        clock: Callable[[], float] | None = None,
        seed: int | None = None,
        search_visibility_delay: float = 0.0,
        verbose: bool = False,
    ):
        self.store = Store(clock=clock, seed=seed, search_visibility_delay=search_visibility_delay)
        self._port = port
        self._verbose = verbose
        self._serving: ServerThread | None = None

    def start(self) -> StripeStandIn:
        server = _Server(self._port, Api(self.store), self._verbose)
        self._serving = ServerThread(server, "stripe-standin")
        return self

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()
            self._serving = None

    @property
    def port(self) -> int:
        if self._serving is None:
            raise RuntimeError("the stand-in is not running")
        return self._serving.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def request_count(self) -> Counter[tuple[str, str]]:
        with self.store.lock:
            return Counter(self.store.request_counts)

    def reset_request_count(self) -> None:
        with self.store.lock:
            self.store.request_counts.clear()

    def __enter__(self) -> StripeStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
