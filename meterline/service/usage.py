"""A customer's usage so far and the invoice it would end with: the documents `meterline
usage ID --json` and `meterline preview ID --json` print (meterline.jobs.usage,
meterline.jobs.preview; docs/usage-preview.md has their rules), read through the read
endpoints' ledger (`Settings.for_reads()`: METERLINE_SERVICE_LEDGER_READ_URL when set)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from meterline.jobs.apikeys import ApiKeyInfo
from meterline.jobs.preview import CustomerPreview, customer_preview
from meterline.jobs.usage import CustomerUsage, customer_usage
from meterline.output import json_text
from meterline.service.auth import requires
from meterline.service.params import customer_param, invalid
from meterline.service.problems import Problem

router = APIRouter(prefix="/v1", tags=["usage"])
reader = requires("read", "support")

# The instants meterline takes (the command line's rule, meterline/cli/options.py): RFC
# 3339 with its offset, or a date meaning its midnight UTC; 2000-01-01 to 2199-12-31.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
FIRST = datetime(2000, 1, 1, tzinfo=UTC)
END = datetime(2200, 1, 1, tzinfo=UTC)

AS_OF = Query(
    description="RFC 3339 with its offset (2026-11-20T12:00:00Z), or a date (its midnight"
    " UTC); default: now.",
)


def parse_as_of(text: str | None) -> datetime:
    """The instant asked for; now when none (the one clock read: the caller asked for
    now). A 400 problem for a time without an offset or outside 2000-2199."""
    if text is None:
        return datetime.now(UTC)
    value = text.strip()

    def refuse(why: str) -> Problem:
        return invalid("query.as_of", why)

    text = text if len(text) <= 40 else text[:37] + "..."

    try:
        if _DATE.fullmatch(value):
            moment = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        elif _RFC3339.fullmatch(value):
            local = datetime.fromisoformat(value.upper().replace(" ", "T"))
            if not FIRST.year <= local.year < END.year:
                raise refuse(f"{text!r} is outside 2000-01-01 to 2199-12-31")
            moment = local.astimezone(UTC)  # no overflow: year 1 and 9999 are far
        else:
            raise refuse(
                f"{text!r} is not RFC 3339 with an offset (2026-11-20T12:00:00Z) or a date"
            )
    except ValueError:
        raise refuse(f"{text!r} is not a real date and time") from None
    if not FIRST <= moment < END:
        raise refuse(f"{text!r} is outside 2000-01-01 to 2199-12-31")
    return moment


@router.get(
    "/customers/{customer_id:customer}/usage",
    summary="A customer's usage so far in its current periods (scope: read or support)",
    description="As `meterline usage ID --as-of T --json`: per subscription, its current"
    " period's quantities and cost per price, rated by close's code over the rollup and"
    " the raw events not rolled up yet, with `computed_through`.",
    responses={
        200: {"model": CustomerUsage, "description": "The usage"},
        404: {"description": "No such customer"},
    },
    response_class=Response,
)
def usage(
    customer_id: str,
    key: Annotated[ApiKeyInfo, Depends(reader)],
    request: Request,
    as_of: Annotated[str | None, AS_OF] = None,
) -> Response:
    customer = customer_param(customer_id)
    doc = customer_usage(customer, parse_as_of(as_of), config=request.app.state.read_config)
    return Response(json_text(doc), media_type="application/json")


@router.get(
    "/customers/{customer_id:customer}/preview",
    summary="The invoices the current periods would end with (scope: read or support)",
    description="As `meterline preview ID --as-of T --json`: the invoice each current"
    " period would be finalized with if no more usage arrived, line for line.",
    responses={
        200: {"model": CustomerPreview, "description": "The preview"},
        404: {"description": "No such customer"},
    },
    response_class=Response,
)
def preview(
    customer_id: str,
    key: Annotated[ApiKeyInfo, Depends(reader)],
    request: Request,
    as_of: Annotated[str | None, AS_OF] = None,
) -> Response:
    customer = customer_param(customer_id)
    doc = customer_preview(customer, parse_as_of(as_of), config=request.app.state.read_config)
    return Response(json_text(doc), media_type="application/json")
