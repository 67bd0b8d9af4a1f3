"""The support console: server-rendered HTML pages on the service's app, for a person
who answers a customer's billing question without a shell or ClickHouse.

Pages (GET unless named; no JavaScript; templates in meterline/service/templates/):

- ``/console/login`` (GET, POST): paste an API key's token once; it is kept in a cookie.
- ``/console?q=`` : find a customer by id or name.
- ``/console/customers/{id}``: the current period's usage so far, day by day with a bar
  chart (inline SVG), and the customer's invoices.
- ``/console/invoices/{id}``: an invoice's lines and amounts, each linking to
- ``/console/invoices/{id}/lines/{line}``: the line explained (meterline.audit.explain).
- ``/console/customers/{id}/findings?period=YYYY-MM``: the reconcile findings of the
  customer's month, and (POST ``.../findings/{finding}/acknowledge``, scope support) a
  form to acknowledge one with a reason.

Sign-in: the token of a live key with scope read or support goes in the cookie
``meterline_console``, HttpOnly, SameSite=Strict, Path=/console, Secure when the request
came over HTTPS, for the browser's session. The cookie is the token itself, not signed:
it is already a secret that the ledger only holds hashed, each request checks it as a
bearer token is checked (a revoked key is signed out on its next page). Forms that write
carry a per-form token: HMAC-SHA256 of the form's purpose keyed by the API token, which
a page of another site can neither read nor compute; with SameSite=Strict the browser
does not send the cookie on another site's request anyway.

Reads go through the read endpoints' ledger (``app.state.read_config``); an
acknowledgement is written through the owner's (``app.state.config``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool

from meterline.audit.explain import explain_line
from meterline.audit.findings import FINDING_ID, acknowledge, check_finding_id, reason_problem
from meterline.audit.reconcile import find_finding, reconcile_period
from meterline.jobs import ledger
from meterline.jobs.apikeys import ApiKeyInfo, KeyStore
from meterline.jobs.console import DailyUsage, daily_usage, search_customers
from meterline.jobs.ids import search_text_problem
from meterline.output import format_amount, format_minor, format_money, format_quantity
from meterline.service.params import customer_param
from meterline.service.problems import Problem, problem_of
from meterline.service.usage import parse_as_of

COOKIE = "meterline_console"
MAX_ID = 2**63 - 1
LedgerId = Annotated[int, Path(ge=1, le=MAX_ID)]
_MONTH = re.compile(r"^2[01]\d\d-(0[1-9]|1[0-2])$")
_CSRF_FIELD = "csrf"

router = APIRouter(prefix="/console", include_in_schema=False)


def _minor(minor: int, currency: str) -> str:
    return format_minor(minor, currency)


def _money(value: Decimal | str, currency: str) -> str:
    return format_money(Decimal(value), currency)


def _qty(value: Decimal | str | int) -> str:
    return format_quantity(Decimal(value))


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("meterline.service", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["minor"] = _minor
    env.filters["money"] = _money
    env.filters["amount"] = lambda value, currency: format_amount(Decimal(value), currency)
    env.filters["qty"] = _qty
    env.filters["utc"] = _utc
    env.filters["q"] = lambda text: quote(str(text), safe="")
    return env


_ENV = _environment()
STYLE = (_ENV.loader.get_source(_ENV, "console.css")[0]) if _ENV.loader else ""


class _SignIn(Exception):
    """No live key in the cookie: to the login page."""


class _Page(Exception):
    """An error page: status and what to do."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def install(app: FastAPI) -> None:
    """Add the console's pages and its error pages to the app: under /console, every
    error (a parameter that does not validate, an unknown page, a bug) is an HTML page
    with the API's status and detail, not a problem document."""
    app.include_router(router)
    app.add_exception_handler(_SignIn, _to_login)
    app.add_exception_handler(_Page, _error_page)
    app.state.problem_page = _problem_page


def _problem_page(problem: Problem, request: Request) -> Response | None:
    """The error page of a problem met under /console; None elsewhere (problem+json)."""
    path = request.url.path
    if path != "/console" and not path.startswith("/console/"):
        return None
    page = render(
        request, "error.html.j2", problem.status, title=problem.title, detail=problem.detail
    )
    for name, value in problem.headers.items():
        if name.lower() != "www-authenticate":
            page.headers[name] = value
    return page


def _same_site(request: Request) -> None:
    """A form of another site (a cross-site POST: Sec-Fetch-Site, which browsers send
    and a page cannot set) is refused before it signs anyone in or out or writes: with
    SameSite=Strict the cookie stays home, but signing in needs no cookie."""
    if request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
        raise _Page(
            403,
            "Refused",
            "a form of another site cannot sign in or change anything here: open the"
            " console's own page and use its form",
        )


def page_html(
    template: str, *, key: ApiKeyInfo | None = None, csrf: str = "", **values: Any
) -> str:
    """A console page's HTML: ``template`` (meterline/service/templates) with ``values``."""
    return _ENV.get_template(template).render(style=STYLE, key=key, csrf=csrf, **values)


def render(
    request: Request, template: str, status: int = 200, key: ApiKeyInfo | None = None, **values: Any
) -> HTMLResponse:
    html = page_html(template, key=key, csrf=csrf_token(request, "page"), **values)
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
            " img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


async def _to_login(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?next={quote(target, safe='')}", status_code=303)


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Page)
    return render(request, "error.html.j2", exc.status, title=exc.title, detail=exc.detail)


def csrf_token(request: Request, purpose: str) -> str:
    """The form token for `purpose` in this sign-in: HMAC-SHA256 keyed by the API token
    (empty when nobody is signed in)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return ""
    return hmac.new(token.encode(), f"console:{purpose}".encode(), hashlib.sha256).hexdigest()


def _caller(request: Request, *scopes: str) -> ApiKeyInfo:
    """The signed-in key, which holds one of `scopes` and is within its rate."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise _SignIn()
    store: KeyStore = request.app.state.keys
    key = store.verify(token)
    if key is None:
        raise _SignIn()
    request.state.key = key
    if not set(scopes) & set(key.scopes):
        raise _Page(
            403,
            "Not allowed",
            f"API key {key.id} ({key.name}) has scope(s) {', '.join(key.scopes)}; this needs"
            f" {' or '.join(scopes)}. Sign in with a key that has it.",
        )
    wait = request.app.state.buckets.take(key.id)
    if wait > 0:
        raise _Page(429, "Too many requests", f"try again in {max(1, math.ceil(wait))} s")
    return key


def _jobs_error(exc: Exception) -> _Page:
    """The error page of an exception of the jobs (the API's problem); a bug re-raised."""
    problem = problem_of(exc)
    if problem is None:
        raise exc
    return _Page(problem.status, problem.title, problem.detail)


# --- sign in and out ---------------------------------------------------------------------


def _next(target: str | None) -> str:
    """Only a path of the console (no other site)."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html.j2", next=_next(next), error=None)


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/console",
) -> Response:
    _same_site(request)
    store: KeyStore = request.app.state.keys
    key = store.verify(token.strip()) if token.strip() else None
    if key is None or not {"read", "support"} & set(key.scopes):
        why = (
            "that is not a live API key (unknown, mistyped or revoked)"
            if key is None
            else f"API key {key.id} ({key.name}) has neither scope read nor support"
        )
        return render(request, "login.html.j2", 401, next=_next(next), error=why)
    response = RedirectResponse(_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console",
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    _same_site(request)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


# --- pages -------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def search(request: Request, q: str | None = None) -> Response:
    key = _caller(request, "read", "support")
    config = request.app.state.read_config
    problem = search_text_problem(q.strip()) if q and q.strip() else None
    if problem is not None:
        raise _Page(400, "Not a search", problem)
    found = search_customers(q or "", config=config) if q else []
    if q and len(found) == 1:
        return RedirectResponse(f"/console/customers/{quote(found[0].customer)}", 303)
    return render(request, "search.html.j2", key=key, q=q or "", found=found)


def _chart(days: DailyUsage, currency: str) -> dict[str, Any]:
    """The bars: what each day added to the amount so far (minor units), scaled."""
    added: list[tuple[str, int]] = []
    before = 0
    for d in days.days:
        minor = sum(s.amount_minor for s in d.usage.subscriptions if s.currency == currency)
        added.append((d.day.isoformat(), minor - before))
        before = minor
    top = max([abs(a) for _, a in added] + [1])
    width = 24
    bars = [
        {
            "x": 40 + i * width,
            "h": round(140 * max(a, 0) / top),
            "day": day,
            "minor": a,
            "label": day[-2:],
        }
        for i, (day, a) in enumerate(added)
    ]
    return {"bars": bars, "width": 60 + len(bars) * width, "top": top, "currency": currency}


def customer(request: Request, customer_id: str, as_of: str | None = None) -> Response:
    """The customer's page (registered last, below: its path matches any id)."""
    key = _caller(request, "read", "support")
    customer_param(customer_id)
    config = request.app.state.read_config
    moment = parse_as_of(as_of)
    try:
        days = daily_usage(customer_id, moment, config=config)
        invoices, totals = ledger.list_invoices(customer=customer_id, config=config)
    except Exception as exc:
        raise _jobs_error(exc) from exc
    currencies = sorted({s.currency for s in days.now.subscriptions if s.status == "current"})
    daily = []
    before: dict[str, int] = {}
    for d in days.days:
        so_far = {
            c: sum(s.amount_minor for s in d.usage.subscriptions if s.currency == c)
            for c in currencies
        }
        quantities = [
            (m.meter, m.dimensions, m.quantity) for s in d.usage.subscriptions for m in s.meters
        ]
        daily.append(
            {
                "day": d.day,
                "as_of": d.as_of,
                "so_far": so_far,
                "added": {c: so_far[c] - before.get(c, 0) for c in currencies},
                "quantities": quantities,
            }
        )
        before = so_far
    months = sorted({str(i["period_start_local"])[:7] for i in invoices}, reverse=True)
    return render(
        request,
        "customer.html.j2",
        key=key,
        customer=customer_id,
        usage=days.now,
        daily=daily,
        currencies=currencies,
        charts=[_chart(days, c) for c in currencies],
        invoices=invoices,
        totals=totals,
        months=months,
    )


@router.get("/invoices/{invoice_id}", response_class=HTMLResponse)
def invoice(request: Request, invoice_id: LedgerId) -> Response:
    key = _caller(request, "read", "support")
    try:
        doc = ledger.invoice_detail(invoice_id, config=request.app.state.read_config)
    except Exception as exc:
        raise _jobs_error(exc) from exc
    return render(request, "invoice.html.j2", key=key, invoice=doc)


@router.get("/invoices/{invoice_id}/lines/{line_id}", response_class=HTMLResponse)
def line(request: Request, invoice_id: LedgerId, line_id: LedgerId) -> Response:
    key = _caller(request, "read", "support")
    try:
        doc = explain_line(line_id, samples=10, config=request.app.state.read_config)
    except Exception as exc:
        raise _jobs_error(exc) from exc
    if doc.line.invoice_id != invoice_id:
        raise _Page(
            404,
            "Not found",
            f"line {line_id} is not on invoice {invoice_id} (it is on invoice"
            f" {doc.line.invoice_id})",
        )
    return render(request, "explain.html.j2", key=key, x=doc, cur=doc.invoice.currency)


def _month(period: str | None, customer_id: str, request: Request) -> str:
    if period is not None:
        if not _MONTH.match(period):
            raise _Page(
                400,
                "Not a month",
                f"{period!r} is not a month YYYY-MM from 2000-01 to 2199-12 (e.g. 2026-10)",
            )
        return period
    rows, _ = ledger.list_invoices(customer=customer_id, config=request.app.state.read_config)
    if rows:
        return str(max(str(r["period_start_local"]) for r in rows))[:7]
    return datetime.now(UTC).strftime("%Y-%m")


@router.get("/customers/{customer_id:customer}/findings", response_class=HTMLResponse)
def findings(
    request: Request,
    customer_id: str,
    period: Annotated[str | None, Query()] = None,
    done: str | None = None,
) -> Response:
    key = _caller(request, "read", "support")
    customer_param(customer_id)
    try:
        month = _month(period, customer_id, request)
        report = reconcile_period(month, customer=customer_id, config=request.app.state.read_config)
    except _Page:
        raise
    except Exception as exc:
        raise _jobs_error(exc) from exc
    return render(
        request,
        "findings.html.j2",
        key=key,
        customer=customer_id,
        period=month,
        report=report,
        may_acknowledge="support" in key.scopes,
        ack_csrf=csrf_token(request, "acknowledge"),
        done=done if done is not None and FINDING_ID.match(done) else None,
        error=None,
    )


@router.post("/customers/{customer_id:customer}/findings/{finding_id}/acknowledge")
async def acknowledge_finding(
    request: Request,
    customer_id: str,
    finding_id: str,
    period: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    _same_site(request)
    key = await run_in_threadpool(_caller, request, "support")
    customer_param(customer_id)
    if not hmac.compare_digest(csrf, csrf_token(request, "acknowledge")):
        raise _Page(403, "Form expired", "the form's token is wrong: reload the page and retry")
    if not _MONTH.match(period):
        raise _Page(
            400,
            "Not a month",
            f"{period!r} is not a month YYYY-MM from 2000-01 to 2199-12 (e.g. 2026-10)",
        )
    try:
        wanted = check_finding_id(finding_id)
    except ValueError as exc:
        raise _Page(400, "Not a finding", str(exc)) from None
    problem = reason_problem(reason)
    if problem is not None:
        return await run_in_threadpool(_findings_again, request, key, customer_id, period, problem)
    try:
        await run_in_threadpool(
            find_finding,
            wanted,
            period=period,
            customer=customer_id,
            config=request.app.state.read_config,
        )
        await run_in_threadpool(
            lambda: acknowledge(
                wanted,
                reason=reason,
                by=f"apikey:{key.id}:{key.name}",
                at=datetime.now(UTC),
                config=request.app.state.config,
            )
        )
    except Exception as exc:
        raise _jobs_error(exc) from exc
    target = (
        f"/console/customers/{quote(customer_id, safe='')}/findings?period={period}&done={wanted}"
    )
    return RedirectResponse(target, status_code=303)


def _findings_again(
    request: Request, key: ApiKeyInfo, customer_id: str, period: str, error: str
) -> Response:
    report = reconcile_period(period, customer=customer_id, config=request.app.state.read_config)
    return render(
        request,
        "findings.html.j2",
        400,
        key=key,
        customer=customer_id,
        period=period,
        report=report,
        may_acknowledge=True,
        ack_csrf=csrf_token(request, "acknowledge"),
        done=None,
        error=error,
    )


# Last: a customer id may hold a "/", so this path matches every page under /customers/
# (Starlette tries routes in order: the findings' routes above come first).
router.add_api_route(
    "/customers/{customer_id:customer}", customer, methods=["GET"], response_class=HTMLResponse
)


def dims(d: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(d.items())) or "all"


_ENV.filters["dims"] = dims
