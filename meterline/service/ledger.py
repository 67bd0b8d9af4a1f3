"""The ledger and the audit, read: a customer's invoices, one invoice, one line explained.
The same documents `meterline invoices list|show --json` and `meterline audit explain
--json` print (money as decimal text in major units beside integer minor units). Read
through the read endpoints' ledger (`Settings.for_reads()`: METERLINE_SERVICE_LEDGER_READ_URL
when set)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from meterline.audit.explain import Explanation, explain_line
from meterline.jobs import ledger
from meterline.jobs.apikeys import ApiKeyInfo
from meterline.output import json_text
from meterline.service.auth import requires
from meterline.service.params import customer_param
from meterline.service.problems import Problem

router = APIRouter(prefix="/v1", tags=["ledger"])

#: The ledger's ids are whole numbers from 1 to 2^63-1 (meterline/cli/options.py's rule).
MAX_ID = 2**63 - 1
LedgerId = Annotated[int, Path(ge=1, le=MAX_ID, description="A ledger id (1 to 2^63-1).")]
reader = requires("read", "support")


class _Open(BaseModel):
    """The documents are the ledger views' (billing.views): the fields listed here are
    described, any other is passed on as it is."""

    model_config = ConfigDict(extra="allow")


class InvoiceSummary(_Open):
    id: int
    customer: str
    subscription: str
    period_start: str = Field(description="UTC instant, ISO 8601.")
    period_end: str
    period_start_local: str = Field(description="The period's first day, in its timezone.")
    currency: str
    status: str = Field(description="draft, finalized or void.")
    subtotal: str = Field(description="Decimal text in major units (USD 12.30: 12.30).")
    discounts: str
    adjustments: str
    total: str
    total_minor: int = Field(description="The total in minor units (USD 12.30: 1230).")
    line_count: int
    finalized_at: str | None
    voided_at: str | None
    reissue_of: int | None


class Totals(_Open):
    invoices: int
    total: str
    total_minor: int


class InvoiceList(_Open):
    invoices: list[InvoiceSummary]
    totals: dict[str, Totals] = Field(description="Per currency, over non-void invoices.")


class InvoiceLine(_Open):
    id: int
    kind: str
    description: str | None
    price_id: str | None
    price_version: str | None
    meter: str | None
    group: str | None
    quantity: str
    unit_amount: str | None
    amount: str
    amount_minor: int
    amount_precise: str
    tiers: list[Any]
    breakdown: Any
    service_period_start: str
    service_period_end: str
    idempotency_key: str
    adjusts_line_id: int | None


class InvoiceDetail(InvoiceSummary):
    lines: list[InvoiceLine]
    reissued_by: list[int]


@router.get(
    "/customers/{customer_id:customer}/invoices",
    response_model=InvoiceList,
    summary="A customer's invoices (scope: read or support)",
    description="As `meterline invoices list --customer ID --json`: oldest period first,"
    " with the totals per currency over the non-void ones.",
    responses={404: {"description": "No such customer"}},
)
def customer_invoices(
    customer_id: str,
    key: Annotated[ApiKeyInfo, Depends(reader)],
    request: Request,
    status: Annotated[
        str | None, Query(pattern="^(draft|finalized|void)$", description="Only this status.")
    ] = None,
    period: Annotated[
        str | None,
        Query(pattern=r"^2[01]\d\d-(0[1-9]|1[0-2])$", description="Month YYYY-MM (local start)."),
    ] = None,
) -> dict[str, Any]:
    rows, totals = ledger.list_invoices(
        customer=customer_param(customer_id),
        status=status,
        period=period,
        config=request.app.state.read_config,
    )
    return {"invoices": rows, "totals": totals}


@router.get(
    "/invoices/{invoice_id}",
    response_model=InvoiceDetail,
    summary="One invoice with its lines (scope: read or support)",
    description="As `meterline invoices show ID --json`.",
    responses={404: {"description": "No such invoice"}},
)
def invoice(
    invoice_id: LedgerId,
    key: Annotated[ApiKeyInfo, Depends(reader)],
    request: Request,
) -> dict[str, Any]:
    return ledger.invoice_detail(invoice_id, config=request.app.state.read_config)


@router.get(
    "/invoices/{invoice_id}/lines/{line_id}/explain",
    summary="Why a line was charged what it was (scope: read or support)",
    description="As `meterline audit explain LINE --json`: the line down to its raw"
    " events, re-rated now, with the difference.",
    responses={
        200: {"model": Explanation, "description": "The explanation"},
        404: {"description": "No such invoice line on this invoice"},
    },
    response_class=Response,
)
def explain(
    invoice_id: LedgerId,
    line_id: LedgerId,
    key: Annotated[ApiKeyInfo, Depends(reader)],
    request: Request,
    samples: Annotated[int, Query(ge=0, le=1_000, description="Sample event ids.")] = 5,
) -> Response:
    doc = explain_line(line_id, samples=samples, config=request.app.state.read_config)
    if doc.line.invoice_id != invoice_id:
        raise Problem(
            404,
            "not-found",
            "Not found",
            f"line {line_id} is not on invoice {invoice_id} (it is on invoice"
            f" {doc.line.invoice_id})",
        )
    return Response(json_text(doc), media_type="application/json")
