"""One AvaTax client for the tax sink: Avalara's official SDK (``avalara``,
``AvataxClient``), with our retry rule, exact decimals and AvaTax's error shape.

What the SDK does (avalara 26.10.0, client_methods.py): each method is one
``requests`` call to ``{base}/api/v2/...`` with Basic auth (account id, license key),
the ``X-Avalara-Client`` header, the model as the JSON body and our ``include`` as the
query string; it returns the ``requests.Response`` unparsed (no exception for a 4xx or
5xx). Its logging decorator reads the answer's ``x-correlation-id`` header and raises
KeyError when there is none (an answer that did not come from AvaTax, e.g. a proxy's);
it logs through the logger we give it, without request or response bodies.

Here: answers are parsed with decimals exact (``parse_float=Decimal``); an error answer
``{"error": {"code", "message", "target", "details": [...]}}`` (AvaTax's ErrorResult)
raises AvaTaxError with its code (its texts on one line, cut at CODE_MAX and TEXT_MAX
characters). A connection error, a timeout, a 5xx, a 429, an answer without the
correlation header, or a success whose body is not a JSON object is retried (tenacity, up to
``request_attempts`` tries; a 429's ``Retry-After`` is honoured) and then raised as
AvaTaxUnavailable. Retrying a create is safe because its code names the transaction:
AvaTax keeps one per company, code and type (the sink looks it up when the create says
it exists). The license key is a SecretStr: never printed, logged or put in an error.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
from avalara import AvataxClient
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

#: The SDK this client is written and tested for.
SDK_VERSION = "26.10.0"
#: Longest wait honoured from a Retry-After header (seconds).
MAX_RETRY_AFTER_S = 60.0
#: The SDK logs each request (method, URL, status, correlation id, time) through this: a
#: library's logger, outside ``meterline`` (the command line shows only meterline's own
#: records, one line each; the SDK's errors are multi-line JSON, and the sink reports
#: every failure itself).
SDK_LOG = logging.getLogger("avalara.sdk")
#: What the sink asks AvaTax to return: each line with its tax per jurisdiction.
INCLUDE = "Lines,Details"
#: Longest error code and message text kept of an answer (AvaTax's are far shorter).
CODE_MAX = 100
TEXT_MAX = 500


@dataclass(frozen=True)
class AvalaraConfig:
    """How to reach AvaTax and what to send (the METERLINE_AVALARA_* settings)."""

    account_id: str
    license_key: SecretStr
    company_code: str
    origin: Mapping[str, str]
    api_base: str = "https://rest.avatax.com"
    timeout_s: float = 30.0
    request_attempts: int = 4
    document_prefix: str = "meterline-"
    #: Customers whose invoices are taxed at once.
    concurrency: int = 4

    def __repr__(self) -> str:  # the key never shows, even in a debugger's repr
        return (
            f"AvalaraConfig(api_base={self.api_base!r}, account_id={self.account_id!r},"
            f" company_code={self.company_code!r}, license_key=**********)"
        )


class AvaTaxError(Exception):
    """AvaTax answered with an error: ``status`` (HTTP), ``code`` (ErrorCodeId's name),
    ``message`` and the details' messages."""

    def __init__(self, status: int, code: str, message: str, details: list[str]) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        extra = "; ".join(d for d in details if d and d != message)
        super().__init__(f"AvaTax {status} {code}: {message}" + (f" ({extra})" if extra else ""))


class AvaTaxUnavailable(Exception):
    """AvaTax could not be reached or answered 5xx/429 on every try."""


class _Retry(Exception):
    """A try that may succeed again (connection, timeout, 5xx, 429, no correlation id)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _said(value: Any, limit: int = TEXT_MAX) -> str:
    """A text of an answer as one line of at most ``limit`` characters (an error's code
    or message goes into a one-line error and the outbox's record)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_of(response: requests.Response, body: Any) -> AvaTaxError:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = _said(response.text[:TEXT_MAX])
        return AvaTaxError(response.status_code, "Unknown", text or response.reason or "", [])
    details: list[str] = []
    listed = error.get("details")
    for detail in listed if isinstance(listed, list) else []:
        if isinstance(detail, dict):
            for key in ("message", "description"):
                text = _said(detail.get(key) or "")
                if text and text not in details:
                    details.append(text)
    return AvaTaxError(
        response.status_code,
        _said(error.get("code") or "Unknown", CODE_MAX),
        _said(error.get("message") or ""),
        details[:5],
    )


class AvaTaxApi:
    """The SDK client plus retries, exact parsing and a request count."""

    def __init__(self, config: AvalaraConfig, *, backoff_s: float = 0.5) -> None:
        self.config = config
        self.client = AvataxClient(
            app_name="meterline",
            app_version="1",
            machine_name="meterline",
            environment=config.api_base,
            timeout_limit=config.timeout_s,
            logger=SDK_LOG,
        ).add_credentials(config.account_id, config.license_key.get_secret_value())
        self._backoff_s = backoff_s
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            return exc.retry_after
        return wait_random_exponential(multiplier=self._backoff_s, max=20)(state)

    def _once(self, what: str, fn: Callable[..., requests.Response], *args: Any) -> Any:
        with self._lock:
            self.requests[what] += 1
        try:
            response = fn(*args)
        except requests.RequestException as exc:
            raise _Retry(f"AvaTax unreachable ({type(exc).__name__}: {exc})") from exc
        except KeyError as exc:
            # The SDK's logger found no x-correlation-id: not an answer of AvaTax's.
            raise _Retry(f"an answer without AvaTax's correlation header ({exc})") from exc
        status = response.status_code
        try:
            body = response.json(parse_float=Decimal) if response.content else None
        except (ValueError, RecursionError):  # not JSON, or nested beyond the parser
            body = None
        if status == 429 or status >= 500:
            after = response.headers.get("Retry-After")
            try:
                wait = min(max(float(after), 0.0), MAX_RETRY_AFTER_S) if after else None
            except ValueError:
                wait = None
            raise _Retry(str(_error_of(response, body)), wait)
        if status >= 400:
            raise _error_of(response, body)
        if not isinstance(body, dict):
            # AvaTax answers every request the sink makes with a JSON object: anything
            # else (none, a list, a page of a proxy's) did not come from it.
            what = "no JSON body" if body is None else f"a JSON {type(body).__name__}"
            raise _Retry(f"AvaTax answered {status} with {what}, not a JSON object")
        return body

    def call(self, what: str, fn: Callable[..., requests.Response], *args: Any) -> Any:
        """``fn(*args)`` (an SDK method) with retries; the parsed JSON answer. Raises
        AvaTaxError for an error answer, AvaTaxUnavailable when every try failed."""
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(_Retry),
                stop=stop_after_attempt(self.config.request_attempts),
                wait=self._wait,
                reraise=True,
            ):
                with attempt:
                    return self._once(what, fn, *args)
        except _Retry as exc:
            raise AvaTaxUnavailable(str(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, code: str, doc_type: str) -> dict[str, Any] | None:
        """The transaction ``code`` of ``doc_type`` with its lines and details; None when
        AvaTax has none (404 EntityNotFoundError)."""
        try:
            found = self.call(
                "GET transaction",
                self.client.get_transaction_by_code_and_type,
                self.config.company_code,
                code,
                doc_type,
                {"$include": INCLUDE},
            )
        except AvaTaxError as exc:
            if exc.status == 404 or exc.code == "EntityNotFoundError":
                return None
            raise
        return dict(found)

    def create(self, model: Mapping[str, Any]) -> dict[str, Any]:
        """CreateTransaction (``commit`` as the model says); the transaction created."""
        return dict(
            self.call(
                "POST transactions/create",
                self.client.create_transaction,
                dict(model),
                {"$include": INCLUDE},
            )
        )

    def void(self, code: str, doc_type: str) -> dict[str, Any]:
        """VoidTransaction with reason DocVoided; the transaction as it now is."""
        return dict(
            self.call(
                "POST transaction/void",
                self.client.void_transaction,
                self.config.company_code,
                code,
                {"code": "DocVoided"},
                {"documentType": doc_type, "$include": INCLUDE},
            )
        )
