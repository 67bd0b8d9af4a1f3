"""The HTTP service and its console, with bad input: bodies that are no batch of events
or come compressed or in another charset, keys missing, forged, revoked or of another
scope, path parameters with odd characters, instants that are naive, far off or no
instant, console requests without a sign-in, a form token or a reason, and forms of
another site. Each gets its status with one clear line (problem+json for the API, an
HTML page under /console), no traceback, nothing stored, and the log stays one line per
request with no control character or secret in it.

One app for the module (starlette's TestClient, a SQLite ledger, a warehouse database of
its own), so the file runs in seconds."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import billing
from billing.db import create_ledger_engine, session_factory
from meterline.jobs.apikeys import create_api_key, revoke_api_key
from meterline.service import create_app
from meters.warehouse.base import Warehouse
from tests.billing.factories import CUSTOMERS, write_customers
from tests.conftest import fresh_warehouse
from tests.service.conftest import Service, prepare_ledger, service_settings
from tests.service.test_events import event, ndjson

pytestmark = pytest.mark.single_warehouse

PROBLEM = "application/problem+json"
# A customer id the customers file allows with a "/" in it (and its subscription).
SLASHED = "acme/eu"


@pytest.fixture(scope="module")
def app(chdb_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("service-breaker")
    url = f"sqlite:///{tmp}/ledger.db"
    prepare_ledger(url, tmp)
    slashed = {**CUSTOMERS[1], "customer_id": SLASHED, "subscription_id": "sub/eu"}
    engine = create_ledger_engine(url)
    try:
        with session_factory(engine).begin() as session:
            billing.load_customers_file(session, write_customers(tmp / "more.jsonl", [slashed]))
    finally:
        engine.dispose()
    with fresh_warehouse(chdb_folder) as wh:
        config = service_settings(wh, url)
        tokens = {
            scope: create_api_key(f"brk-{scope}", [scope], config=config).token
            for scope in ("ingest", "read", "support")
        }
        with TestClient(create_app(config)) as client:
            yield Service(client, config, wh, tokens)


def assert_problem(response: Any, status: int, slug: str, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM, response.headers
    doc = response.json()
    assert doc["type"] == f"urn:meterline:problem:{slug}" and doc["status"] == status
    detail = doc["detail"]
    assert "\n" not in detail and "Traceback" not in detail and len(detail) < 400, detail
    for word in words:
        assert word in detail, detail
    return doc


def assert_page(response: Any, status: int, *words: str) -> str:
    """An HTML error page of the console (not a problem document)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html"), response.headers
    for word in words:
        assert word in response.text, response.text
    assert "Traceback" not in response.text
    return str(response.text)


def ingest_sources(wh: Warehouse) -> set[str]:
    return {row[0] for row in wh.query_rows("SELECT source FROM ingest_log")}


# --- POST /v1/events: bodies ---------------------------------------------------------------

ONE = ndjson([event("brk-1")])
NESTED = b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]"

REFUSED_BODIES = [
    # (name, content type, extra headers, body, status, slug, words)
    ("gzip ndjson", "application/x-ndjson", {"Content-Encoding": "gzip"}, gzip.compress(ONE),
     415, "unsupported-media-type", "Content-Encoding 'gzip'"),
    ("gzip array", "application/json", {"Content-Encoding": "gzip"},
     gzip.compress(b"[" + ONE + b"]"), 415, "unsupported-media-type", "uncompressed"),
    ("utf-16 ndjson", "application/x-ndjson; charset=utf-16", {}, ONE.decode().encode("utf-16"),
     415, "unsupported-media-type", "charset 'utf-16'"),
    ("latin-1 array", 'application/json; charset="ISO-8859-1"', {}, b"[]",
     415, "unsupported-media-type", "UTF-8"),
    ("text/plain", "text/plain", {}, ONE, 415, "unsupported-media-type", "Content-Type 'text/plain'"),
    ("no type", "", {}, ONE, 415, "unsupported-media-type", "(none)"),
    ("object", "application/json", {}, json.dumps(event("brk-2")).encode(), 400, "bad-body",
     "not a JSON array"),
    ("invalid JSON", "application/json", {}, b"[{not json", 400, "bad-body", "not valid JSON"),
    ("nested", "application/json", {}, NESTED, 400, "bad-body", "nested too deeply"),
    ("not UTF-8", "application/json", {}, b'[{"event_id": "b-\xff"}]', 400, "bad-body", "UTF-8"),
    ("utf-16 array", "application/json", {}, b"[]".decode().encode("utf-16"), 400, "bad-body",
     "UTF-8"),
    ("text after", "application/json", {}, b"[] []", 400, "bad-body", "more after"),
    ("10 MB", "application/x-ndjson", {}, b"x" * (10 * 1024 * 1024), 413, "too-large", "5,242,880"),
]  # fmt: skip


def test_bodies_that_are_no_batch_of_events_are_refused_with_nothing_stored(app: Service) -> None:
    before = ingest_sources(app.warehouse)
    for name, kind, extra, body, status, slug, words in REFUSED_BODIES:
        headers = {**app.auth("ingest"), **extra}
        if kind:
            headers["Content-Type"] = kind
        response = app.client.post("/v1/events", content=body, headers=headers)
        try:
            assert_problem(response, status, slug, words)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    assert ingest_sources(app.warehouse) == before


def test_blank_lines_and_a_byte_order_mark_are_read_as_a_file_is(app: Service) -> None:
    body = b"\xef\xbb\xbf" + ndjson([event("brk-bom")]) + b"\n   \n" + ndjson([event("brk-3")])
    response = app.post_events(body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert [(e["line"], e["status"]) for e in doc["events"]] == [(1, "accepted"), (4, "accepted")]


# --- keys and scopes -----------------------------------------------------------------------


def test_keys_missing_forged_revoked_or_of_another_scope(app: Service) -> None:
    path = "/v1/customers/cus_00001/invoices"
    assert_problem(app.client.get(path), 401, "unauthorized", "Authorization: Bearer")
    for header in (
        "Bearer mlk_000000000000_" + "A" * 43,
        "Bearer " + "x" * 10_000,
        "Bearer " + app.tokens["read"][:-1] + "B",
        "Basic dXNlcjpwYXNz",
    ):
        response = app.client.get(path, headers={"Authorization": header})
        assert response.status_code == 401 and response.headers["content-type"] == PROBLEM
    revoked = create_api_key("brk-revoked", ["read"], config=app.config)
    ok = app.client.get(path, headers={"Authorization": f"Bearer {revoked.token}"})
    assert ok.status_code == 200
    revoke_api_key(revoked.key.id, config=app.config)
    gone = app.client.get(path, headers={"Authorization": f"Bearer {revoked.token}"})
    assert_problem(gone, 401, "unauthorized", "revoked")
    assert_problem(app.client.get(path, headers=app.auth("ingest")), 403, "forbidden", "read")
    posted = app.post_events(ONE, scope="read")
    assert_problem(posted, 403, "forbidden", "needs ingest")


# --- path and query parameters -------------------------------------------------------------


def test_a_customer_id_with_a_slash_is_served(app: Service) -> None:
    """The customers file allows `acme/eu`; its %2F arrives decoded, and every customer
    route answered 'no such endpoint'."""
    base = "/v1/customers/acme%2Feu"
    listed = app.client.get(f"{base}/invoices", headers=app.auth("read"))
    assert listed.status_code == 200 and listed.json()["invoices"] == []
    usage = app.client.get(f"{base}/usage?as_of=2026-11-20", headers=app.auth("read"))
    assert usage.status_code == 200, usage.text
    assert [s["subscription"] for s in usage.json()["subscriptions"]] == ["sub/eu"]
    unknown = app.client.get("/v1/customers/cus%2F00001/preview", headers=app.auth("read"))
    assert_problem(unknown, 404, "not-found", "no customer 'cus/00001'")


@pytest.mark.parametrize(
    ("customer", "words"),
    [
        ("%00", "U+0000"),  # PostgreSQL refuses a NUL in a text parameter: was a 500
        ("a%0Ab", "U+000A"),
        ("%E2%80%AE" + "x", "U+202E"),
        ("%20cus_00001", "starts or ends with a space"),
        ("x" * 1000, "1,000 characters"),
    ],
)
def test_a_customer_id_the_ledger_cannot_hold_is_400(
    app: Service, customer: str, words: str
) -> None:
    for endpoint in ("invoices", "usage", "preview"):
        response = app.client.get(f"/v1/customers/{customer}/{endpoint}", headers=app.auth("read"))
        doc = assert_problem(response, 400, "invalid-request", "path.customer_id", words)
        assert doc["errors"][0]["where"] == "path.customer_id"


@pytest.mark.parametrize("invoice", ["0", "-1", "9223372036854775808", "abc", "1e3", "%EF%BC%91"])
def test_an_id_that_is_no_ledger_id_is_400(app: Service, invoice: str) -> None:
    response = app.client.get(f"/v1/invoices/{invoice}", headers=app.auth("read"))
    assert_problem(response, 400, "invalid-request", "path.invoice_id")


@pytest.mark.parametrize(
    ("as_of", "words"),
    [
        ("2026-11-20T12:00:00", "not RFC 3339 with an offset"),  # naive
        ("9999-12-31T23:59:59-14:00", "outside 2000-01-01"),  # was OverflowError: a 500
        ("0001-01-01T00:00:00+14:00", "outside 2000-01-01"),
        ("2200-01-01", "outside 2000-01-01"),
        ("2026-02-30", "not a real date"),
        ("2026-11-20T12:00:00+24:00", "not a real date"),
        ("\uff12\uff10\uff12\uff16-11-20", "not RFC 3339"),  # full-width digits
        ("next tuesday", "not RFC 3339"),
        ("x" * 2000, "..."),
    ],
)
def test_an_as_of_that_is_no_instant_is_400(app: Service, as_of: str, words: str) -> None:
    for endpoint in ("usage", "preview"):
        response = app.client.get(
            f"/v1/customers/cus_00001/{endpoint}", params={"as_of": as_of}, headers=app.auth("read")
        )
        assert_problem(response, 400, "invalid-request", "query.as_of", words)


def test_the_log_is_one_printable_line_per_request_and_holds_no_secret(
    app: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    forged = "%0A2026-12-01 00:00:00,000 INFO meterline.service: FORGED%1B[31m%00"
    app.client.get(f"/v1/customers/{forged}/usage", headers=app.auth("read"))
    app.client.get(f"/nowhere/{forged}")
    app.client.get("/v1/customers/" + "y" * 5000 + "/usage", headers=app.auth("read"))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("meterline")]
    assert len(lines) >= 3
    for line in lines:
        assert line.isprintable() and len(line) < 600, repr(line)
        assert not any(token in line for token in app.tokens.values())
    assert any("/\\n2026-12-01" in line and "FORGED\\x1b[31m\\x00" in line for line in lines)


# --- the console ---------------------------------------------------------------------------


def console(app: Service, scope: str | None) -> TestClient:
    app.client.cookies.clear()
    if scope is not None:
        app.client.cookies.set("meterline_console", app.tokens[scope])
    return app.client


def form_token(app: Service, scope: str) -> str:
    key = app.tokens[scope].encode()
    return hmac.new(key, b"console:acknowledge", hashlib.sha256).hexdigest()


def test_console_sign_in_missing_forged_or_of_another_scope(app: Service) -> None:
    client = console(app, None)
    away = client.get("/console/customers/acme%2Feu/findings", follow_redirects=False)
    assert away.status_code == 303
    assert away.headers["location"].startswith("/console/login?next=%2Fconsole%2Fcustomers")
    client.cookies.set("meterline_console", "mlk_000000000000_" + "A" * 43)
    assert client.get("/console", follow_redirects=False).status_code == 303
    client = console(app, "ingest")
    assert_page(client.get("/console"), 403, "needs read or support")


def test_console_errors_are_pages_not_problem_documents(app: Service) -> None:
    client = console(app, "read")
    assert_page(client.get("/console/invoices/0"), 400, "path.invoice_id")
    assert_page(client.get("/console/nowhere"), 404, "no such endpoint")
    assert_page(client.put("/console/login"), 405, "not allowed")
    assert_page(client.get("/console/customers/cus_00001?as_of=2026-11-20T12:00:00"), 400, "as_of")
    assert_page(client.get("/console/customers/%00/findings"), 400, "U+0000")
    assert_page(client.get("/console", params={"q": "a\x00b"}), 400, "U+0000")
    assert_page(client.get("/console", params={"q": "z" * 300}), 400, "at most 200")
    found = client.get("/console", params={"q": "acme/eu"}, follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == "/console/customers/acme/eu"


def test_a_form_of_another_site_is_refused(app: Service) -> None:
    """Signing in needs no cookie, so SameSite=Strict does not keep another site's form
    from signing a person in with the other site's key (login CSRF)."""
    client = console(app, None)
    cross = {"Sec-Fetch-Site": "cross-site"}
    signed = client.post(
        "/console/login",
        data={"token": app.tokens["support"]},
        headers=cross,
        follow_redirects=False,
    )
    assert_page(signed, 403, "another site")
    assert "set-cookie" not in signed.headers
    client = console(app, "support")
    path = "/console/customers/acme%2Feu/findings/f-0123456789ab/acknowledge"
    data = {"period": "2026-11", "reason": "known", "csrf": form_token(app, "support")}
    assert_page(client.post(path, data=data, headers=cross), 403, "another site")
    assert_page(client.post("/console/logout", headers=cross), 403, "another site")
    same = client.post(
        "/console/login",
        data={"token": app.tokens["read"]},
        headers={"Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert same.status_code == 303


def test_acknowledging_needs_support_a_form_token_and_a_reason_that_is_text(app: Service) -> None:
    path = "/console/customers/acme%2Feu/findings/f-0123456789ab/acknowledge"
    token = form_token(app, "support")
    client = console(app, "read")
    assert_page(client.post(path, data={"period": "2026-11", "reason": "r"}), 403, "needs support")
    client = console(app, "support")
    no_token = client.post(path, data={"period": "2026-11", "reason": "known"})
    assert_page(no_token, 403, "form&#39;s token is wrong")
    for reason, words in (
        ("", "give the reason"),
        ("   ", "give the reason"),
        ("known\x00", "U+0000"),  # PostgreSQL refuses it: was a 500 there
        ("\x1b[2J known", "U+001B"),  # would reach `audit reconcile`'s terminal
        ("r" * 2001, "2,001 characters"),
    ):
        again = client.post(path, data={"period": "2026-11", "reason": reason, "csrf": token})
        assert_page(again, 400, words, "Reconcile findings")
    unknown = client.post(path, data={"period": "2026-11", "reason": "known", "csrf": token})
    assert_page(unknown, 404, "no finding f-0123456789ab")


def test_the_findings_page_shows_no_notice_a_link_wrote(app: Service) -> None:
    """`?done=` is the acknowledged finding's id after the form; any other text was
    shown as 'Finding ... acknowledged.' (a link could make the page say anything)."""
    client = console(app, "read")
    page = client.get(
        "/console/customers/acme%2Feu/findings",
        params={"period": "2026-11", "done": "EVERYTHING IS FINE, REFUND ISSUED"},
    )
    assert page.status_code == 200 and "REFUND ISSUED" not in page.text
    done = client.get(
        "/console/customers/acme%2Feu/findings",
        params={"period": "2026-11", "done": "f-0123456789ab"},
    )
    assert "Finding f-0123456789ab acknowledged." in done.text
