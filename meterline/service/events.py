"""``POST /v1/events``: a batch of usage events, stored as file ingest stores them
(meterline.jobs.intake), answered per event once they are stored."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from meterline.jobs.apikeys import ApiKeyInfo
from meterline.jobs.intake import BodyKind, EventIntake, EventsResult
from meterline.service.auth import requires
from meterline.service.problems import Problem

router = APIRouter(prefix="/v1", tags=["events"])

KINDS: dict[str, BodyKind] = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
}


def _unsupported(detail: str) -> Problem:
    return Problem(415, "unsupported-media-type", "Unsupported media type", detail)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def body_kind(content_type: str | None, content_encoding: str | None = None) -> BodyKind:
    """What the body is read as, from its headers. A 415 Problem for another media type,
    a charset other than UTF-8 (JSON is UTF-8, RFC 8259 section 8.1) or a content coding
    (gzip, ...: the body would be read as the bytes of its compressed form, line by line,
    and every line rejected and kept)."""
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    if media not in KINDS:
        raise _unsupported(
            f"Content-Type {_shown(media) if media else '(none)'}: send application/json (a"
            " JSON array of events) or application/x-ndjson (one event per line)"
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise _unsupported(
                f"charset {_shown(value.strip())}: send the events as UTF-8 (charset=utf-8, or"
                " no charset)"
            )
    coding = (content_encoding or "").strip().lower()
    if coding not in ("", "identity"):
        raise _unsupported(
            f"Content-Encoding {_shown(coding)}: send the body uncompressed (no Content-Encoding)"
        )
    return KINDS[media]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 past `limit` bytes (before reading it, when
    Content-Length says so)."""
    too_large = Problem(
        413,
        "too-large",
        "Request body too large",
        f"the body is larger than {limit:,} bytes (METERLINE_SERVICE_MAX_BODY_BYTES): send"
        " the events in several requests",
    )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/events",
    response_model=EventsResult,
    summary="Send usage events (scope: ingest)",
    description=(
        "A JSON array of events (Content-Type application/json) or one event per line"
        " (application/x-ndjson), each with event_id, customer_id, meter, timestamp and"
        " optionally value, properties and source, as in a usage file. Validated,"
        " deduplicated by event_id and counted exactly as file ingest does; the response"
        " comes once the events are stored, with each event's outcome: accepted,"
        " duplicate (sent before with the same content: sending a batch again is safe),"
        " or rejected with its reason (kept with `meterline rejected`)."
    ),
    responses={
        400: {"description": "The body is not a JSON array or NDJSON"},
        413: {"description": "The body is larger than METERLINE_SERVICE_MAX_BODY_BYTES"},
        415: {"description": "Another Content-Type or charset, or a Content-Encoding"},
        503: {"description": "The warehouse is busy or unreachable: nothing was stored"},
    },
)
async def post_events(
    request: Request,
    key: ApiKeyInfo = Depends(requires("ingest")),  # noqa: B008
) -> EventsResult:
    kind = body_kind(request.headers.get("content-type"), request.headers.get("content-encoding"))
    body = await read_body(request, request.app.state.config.service_max_body_bytes)
    intake: EventIntake = request.app.state.intake
    source = f"api:{key.name}:{request.state.request_id}"
    future = await run_in_threadpool(intake.submit, body, kind, source)
    return await asyncio.wrap_future(future)
