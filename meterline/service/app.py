"""The application: `create_app(settings)` wires the routes, the errors (problem+json),
the key store, the event intake and the per-key rate limit. `meterline serve` runs it
under uvicorn; tests run it with starlette's TestClient.

While it runs, the app holds the warehouse open (an embedded chDB folder is this
process's alone: other meterline commands on the same folder wait for its lock, so run
them against a ClickHouse server, or stop the service first) and one engine on the
ledger for the API keys.

The read endpoints (invoices, explain, usage, preview) open the ledger of
`Settings.for_reads()`: METERLINE_SERVICE_LEDGER_READ_URL when set, a PostgreSQL role
that may only SELECT (docker-compose.yml's meterline_reader), else METERLINE_LEDGER_URL.
What a request writes (the events' accounting, the API keys) stays on
METERLINE_LEDGER_URL.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from meterline.jobs.apikeys import KeyStore
from meterline.jobs.intake import EventIntake
from meterline.jobs.ledger import check_ledger
from meterline.service import console, events, ledger, problems, usage
from meterline.service.auth import TokenBuckets
from meterline.service.problems import path_of, printable
from meterline.settings import Settings, settings

log = logging.getLogger("meterline.service")


@dataclass
class Stores:
    """What the service holds open while it runs: the API keys' ledger engine and the
    event intake (the warehouse, and the flusher thread)."""

    keys: KeyStore
    intake: EventIntake

    def close(self) -> None:
        try:
            self.intake.close()
        finally:
            self.keys.close()


def open_stores(config: Settings) -> Stores:
    """Open the ledger and the warehouse, checked as every command checks them (a store
    that does not exist or is not at this code's schema, no catalog loaded: the openers'
    errors), the read endpoints' ledger too when it is another URL, and start the intake."""
    reads = config.for_reads()
    if reads.ledger_url != config.ledger_url:
        check_ledger(reads)
    keys = KeyStore(config)
    keys.open()
    intake = EventIntake(config)
    try:
        intake.start()
    except BaseException:
        keys.close()
        raise
    return Stores(keys, intake)


def create_app(config: Settings | None = None, *, stores: Stores | None = None) -> FastAPI:
    """The HTTP service on the stores `config` names (default: the process's settings).
    Its lifespan opens them (or takes `stores`, opened by the caller) and closes them."""
    config = config or settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = stores or open_stores(config)
        app.state.keys = opened.keys
        app.state.intake = opened.intake
        log.info("meterline service ready (warehouse and ledger open)")
        try:
            yield
        finally:
            opened.close()
            log.info("meterline service stopped")

    app = FastAPI(
        title="meterline",
        version=version("meterline"),
        summary="Usage events in; invoices, explanations and usage out.",
        description="Every /v1 endpoint needs an API key (`Authorization: Bearer <token>`,"
        " `meterline apikeys create`) with the scope it names. Errors are problem details"
        " (RFC 9457, application/problem+json). docs/service.md has every endpoint with an"
        " example.",
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.read_config = config.for_reads()
    app.state.buckets = TokenBuckets(config.service_rate_per_s, config.service_rate_burst)
    app.add_exception_handler(problems.Problem, problems.on_problem)
    app.add_exception_handler(StarletteHTTPException, problems.on_http_error)
    app.add_exception_handler(RequestValidationError, problems.on_invalid)
    app.middleware("http")(_request_log)
    app.include_router(events.router)
    app.include_router(ledger.router)
    app.include_router(usage.router)
    console.install(app)

    @app.get("/healthz", tags=["service"], summary="Liveness, for health checks (no key)")
    def healthz(request: Request) -> JSONResponse:
        intake: EventIntake | None = getattr(request.app.state, "intake", None)
        ok = intake is not None and intake.running
        return JSONResponse(
            {"status": "ok" if ok else "starting or stopping", "version": app.version},
            status_code=200 if ok else 503,
        )

    return app


async def _request_log(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """A request id for each request (X-Request-Id); an exception of the jobs as its
    problem, any other as a 500 (problems.on_error); and one log line: method, path,
    status, time and the key's id and name. Never a header (the token is one)."""
    request.state.request_id = uuid.uuid4().hex[:16]
    started = time.monotonic()
    try:
        response = await call_next(request)
    except Exception as exc:
        response = await problems.on_error(request, exc)
    response.headers["X-Request-Id"] = request.state.request_id
    key = getattr(request.state, "key", None)
    log.info(
        "%s %s %d %.1f ms key=%s request=%s",
        printable(request.method, 20),
        printable(path_of(request)),
        response.status_code,
        (time.monotonic() - started) * 1000,
        f"{key.id}:{key.name}" if key is not None else "-",
        request.state.request_id,
    )
    return response
