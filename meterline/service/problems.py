"""Errors as problem details (RFC 9457): ``application/problem+json`` with ``type``,
``title``, ``status`` and ``detail`` (and ``request_id``; ``errors`` for a request that
does not validate). Each ``type`` is a URN naming the problem; docs/service.md lists
them with what to do.

Exceptions of the jobs and the stores are matched by class name along their method
resolution order, most specific first (as meterline.cli.exits maps them to exit codes),
so this module imports none of the layers below the jobs. Anything not listed is a bug:
500, its traceback in the service's log, and the response names the request id to look
for there, nothing more (no message of ours or a driver's reaches the client).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, cast

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("meterline.service")

MEDIA_TYPE = "application/problem+json"
_URN = "urn:meterline:problem:"
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@]*@", re.IGNORECASE)


class Problem(Exception):
    """An error the client is told about: status, a short title, what to do (detail)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def redact(text: str) -> str:
    """Passwords in URLs (``scheme://user:secret@host``) as ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def path_of(request: Request) -> str:
    """The request's path as the server received it, percent-decoded (``request.url``
    drops a tab or line break from it, as urllib reads URLs)."""
    return str(request.scope.get("path") or request.url.path)


def printable(text: str, limit: int = 300) -> str:
    """``text`` as a log line or a message may show it: each character that is not
    printable (a line break, an escape sequence, a NUL: a path holds any after its
    percent-decoding) written as its Python escape, at most ``limit`` characters."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def response(problem: Problem, request: Request | None = None) -> Response:
    """The problem document of `problem`; or, where the app renders its own page for it
    (``app.state.problem_page``: the console's HTML error page under /console), that."""
    page = getattr(request.app.state, "problem_page", None) if request is not None else None
    if page is not None:
        rendered = page(problem, request)
        if rendered is not None:
            return cast(Response, rendered)
    body: dict[str, Any] = {
        "type": _URN + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    if request_id:
        body["request_id"] = request_id
    body.update(problem.extra)
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=MEDIA_TYPE
    )


# (status, slug, title, retry-after seconds or None, whether the exception's own message
# is the detail). Messages of ours say what is wrong and what to do; store and driver
# messages stay in the log.
_Entry = tuple[int, str, str, int | None, bool]
_LEDGER_DOWN: _Entry = (503, "unavailable", "The ledger cannot be reached", 5, False)
_WAREHOUSE_DOWN: _Entry = (503, "unavailable", "The warehouse cannot be reached", 5, False)
_TABLE: dict[str, _Entry] = {
    "billing.errors.NotFound": (404, "not-found", "Not found", None, True),
    "meters.ingest.bodies.BodyError": (400, "bad-body", "Not a batch of events", None, True),
    "meterline.jobs.intake.BufferFull": (503, "busy", "Too many events wait", 1, True),
    "meterline.jobs.intake.IntakeClosed": (503, "stopping", "The service is stopping", 5, True),
    "billing.catalog.model.CatalogNotLoaded": (503, "not-ready", "No catalog loaded", 30, True),
    "billing.errors.SchemaNotReady": (503, "not-ready", "The ledger is not ready", 30, True),
    "meters.migrations.SchemaNotReady": (503, "not-ready", "The warehouse is not ready", 30, True),
    "meters.warehouse.base.WarehouseUnavailable": _WAREHOUSE_DOWN,
    "sqlalchemy.exc.OperationalError": _LEDGER_DOWN,
    "sqlalchemy.exc.InterfaceError": _LEDGER_DOWN,
    "sqlalchemy.exc.TimeoutError": _LEDGER_DOWN,
}


def problem_of(exc: BaseException) -> Problem | None:
    """The problem an exception of the jobs or stores is, or None for a bug. An ingest run
    that failed is its cause's problem when that is known, else `unavailable`: nothing
    was stored, and sending the events again is safe."""
    names = [f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__]
    if "meterline.jobs.intake.IngestFailed" in names:
        cause = exc.__cause__
        known = problem_of(cause) if cause is not None else None
        if known is not None:
            return known
        return Problem(
            503,
            "unavailable",
            "The events could not be stored",
            str(exc),
            headers={"Retry-After": "5"},
        )
    for cls in type(exc).__mro__:
        entry = _TABLE.get(f"{cls.__module__}.{cls.__qualname__}")
        if entry is None:
            continue
        status, slug, title, retry, own = entry
        detail = redact(str(exc).strip()) if own else f"{title}; try again shortly"
        headers = {"Retry-After": str(retry)} if retry is not None else None
        return Problem(status, slug, title, detail, headers=headers)
    return None


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return response(exc, request)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (an unknown path, a method not allowed) as problems."""
    assert isinstance(exc, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    if exc.status_code == 404:
        path = printable(path_of(request), 200)
        detail = f"no such endpoint: {request.method} {path} (GET /openapi.json lists them)"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        path = printable(path_of(request), 200)
        detail = f"{request.method} is not allowed on {path} (allowed: {allowed})"
    else:
        detail = str(exc.detail)
    return response(
        Problem(exc.status_code, slug, title, detail, headers=exc.headers or None), request
    )


async def on_invalid(request: Request, exc: Exception) -> Response:
    """A path or query parameter that does not validate: 400, each error named."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "where": ".".join(str(part) for part in error.get("loc", ())),
            "problem": str(error.get("msg", "")),
        }
        for error in exc.errors()
    ]
    detail = "; ".join(f"{e['where']}: {e['problem']}" for e in errors)
    return response(
        Problem(400, "invalid-request", "Invalid request", detail, extra={"errors": errors}),
        request,
    )


async def on_error(request: Request, exc: Exception) -> Response:
    """A known exception of the jobs as its problem; anything else is a bug (500)."""
    problem = problem_of(exc)
    if problem is not None:
        if problem.status >= 500:
            log.warning(
                "%s %s: %s: %s",
                request.method,
                printable(path_of(request)),
                type(exc).__name__,
                printable(redact(str(exc)), 1000),
            )
        return response(problem, request)
    request_id = getattr(request.state, "request_id", "-")
    log.error(
        "%s %s (request %s): internal error: %s: %s",
        request.method,
        printable(path_of(request)),
        request_id,
        type(exc).__name__,
        printable(redact(str(exc)), 1000),
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return response(
        Problem(
            500,
            "internal",
            "Internal error",
            f"an internal error (a bug); the service's log has it under request {request_id}",
        ),
        request,
    )
