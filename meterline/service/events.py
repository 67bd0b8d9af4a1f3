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


def body_kind(content_type: str | None) -> BodyKind:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in KINDS:
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"Content-Type {media or '(none)'}: send application/json (a JSON array of"
            " events) or application/x-ndjson (one event per line)",
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
        415: {"description": "Another Content-Type"},
        503: {"description": "The warehouse is busy or unreachable: nothing was stored"},
    },
)
async def post_events(
    request: Request,
    key: ApiKeyInfo = Depends(requires("ingest")),  # noqa: B008
) -> EventsResult:
    kind = body_kind(request.headers.get("content-type"))
    body = await read_body(request, request.app.state.config.service_max_body_bytes)
    intake: EventIntake = request.app.state.intake
    source = f"api:{key.name}:{request.state.request_id}"
    future = await run_in_threadpool(intake.submit, body, kind, source)
    return await asyncio.wrap_future(future)
