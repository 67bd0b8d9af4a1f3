"""Bearer API keys, scopes and the per-key rate limit.

Every /v1 endpoint needs ``Authorization: Bearer <token>`` of a live key
(`meterline apikeys create`) with one of the endpoint's scopes: no key, or a token of no
live key, is 401 (with ``WWW-Authenticate: Bearer``); a key without the scope is 403.
Then the key's token bucket (METERLINE_SERVICE_RATE_PER_S, _BURST) must hold a token,
else 429 with ``Retry-After``. The buckets live in this process: behind a load balancer
with N processes a key may make N times the rate.

The token is never logged, nor its hash, nor the header: what the logs name is the key's
id and name (request.state.key).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from meterline.jobs.apikeys import ApiKeyInfo, KeyStore
from meterline.service.problems import Problem

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key's token (`meterline apikeys create --name N --scope S`).",
)


class TokenBuckets:
    """One token bucket per key: `burst` tokens, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}

    def take(self, key_id: int, now: float | None = None) -> float:
        """Take a token: 0.0 when one was there, else the seconds until one will be."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self.rate


def _unauthorized(detail: str, error: str | None = None) -> Problem:
    challenge = 'Bearer realm="meterline"' + (f', error="{error}"' if error else "")
    return Problem(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": challenge}
    )


def requires(*scopes: str) -> Callable[..., Awaitable[ApiKeyInfo]]:
    """A dependency: the calling key, which holds one of `scopes` and is within its rate."""
    needed = frozenset(scopes)

    async def caller(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> ApiKeyInfo:
        if credentials is None:
            raise _unauthorized(
                "this endpoint needs an API key: send Authorization: Bearer <token>"
                " (`meterline apikeys create` makes one)"
            )
        store: KeyStore = request.app.state.keys
        key = await run_in_threadpool(store.verify, credentials.credentials)
        if key is None:
            raise _unauthorized(
                "the bearer token is not a live API key (unknown, mistyped or revoked)",
                "invalid_token",
            )
        request.state.key = key
        if not needed & set(key.scopes):
            raise Problem(
                403,
                "forbidden",
                "Forbidden",
                f"API key {key.id} ({key.name}) has scope(s) {', '.join(key.scopes)}; this"
                f" endpoint needs {' or '.join(sorted(needed))}",
            )
        wait = request.app.state.buckets.take(key.id)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise Problem(
                429,
                "rate-limited",
                "Too many requests",
                f"API key {key.id} ({key.name}) is over its rate of"
                f" {request.app.state.buckets.rate:g} requests per second: retry after"
                f" {retry} s (send more events per request instead of more requests)",
                headers={"Retry-After": str(retry)},
            )
        return key

    return caller
