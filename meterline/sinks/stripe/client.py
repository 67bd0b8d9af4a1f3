"""One Stripe API client for the sink: the official SDK, with our retry rule.

The SDK's own retries are off (``max_network_retries=0``): each request is retried here
with tenacity, on what Stripe documents as safe to retry with the same idempotency key
(https://docs.stripe.com/error-low-level): a connection error or timeout (the request
may or may not have reached Stripe), a 5xx answer, a 409 (the same key still in flight),
and 429 rate limiting, after the
``Retry-After`` seconds it names (else exponential backoff with jitter). Every POST
carries the caller's idempotency key, so a retried create is replayed by Stripe, never
doubled. Anything else (400, 401, 402, 404) is not retried.

The API key is a ``SecretStr``: it is never printed, logged or put in an error.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import stripe
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

T = TypeVar("T")

#: The API version this sink is written and tested for (the pinned SDK's own).
API_VERSION = stripe.api_version
#: Longest wait honoured from a Retry-After header (seconds).
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class StripeConfig:
    """How to reach Stripe. ``api_base`` is https://api.stripe.com in production."""

    api_key: SecretStr
    api_base: str = "https://api.stripe.com"
    timeout_s: float = 30.0
    request_attempts: int = 4
    concurrency: int = 8
    collection_method: str = "charge_automatically"
    days_until_due: int = 30

    def __repr__(self) -> str:  # the key never shows, even in a debugger's repr
        return f"StripeConfig(api_base={self.api_base!r}, key=**********)"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    if isinstance(exc, stripe.StripeError):
        # 409: a request with the same idempotency key is still running at Stripe.
        return (exc.http_status or 0) >= 500 or exc.http_status == 409
    return False


def retry_after(exc: BaseException | None) -> float | None:
    """The Retry-After seconds of a 429 answer, if it names them."""
    if not isinstance(exc, stripe.StripeError):
        return None
    value = (exc.headers or {}).get("Retry-After") or (exc.headers or {}).get("retry-after")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S) if value is not None else None
    except ValueError:
        return None


class StripeApi:
    """The SDK client plus retries and a request count (what Stripe's rate limit
    meters; the benchmark reports it per invoice)."""

    def __init__(self, config: StripeConfig, *, backoff_s: float = 0.5) -> None:
        self.config = config
        self.client = stripe.StripeClient(
            config.api_key.get_secret_value(),
            base_addresses={"api": config.api_base},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=config.timeout_s),
        )
        self._backoff_s = backoff_s
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = retry_after(exc)
        if after is not None:
            return after
        return wait_random_exponential(multiplier=self._backoff_s, max=20)(state)

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with retries; ``what`` names the request in the count."""
        for attempt in Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.config.request_attempts),
            wait=self._wait,
            reraise=True,
        ):
            with attempt:
                with self._lock:
                    self.requests[what] += 1
                return fn(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover
