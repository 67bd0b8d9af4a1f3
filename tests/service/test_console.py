"""The support console (meterline/service/console.py): server-rendered pages signed in with
an API key kept in an HttpOnly cookie. With starlette's TestClient: the pages render, the
numbers on them are the ledger's (the /v1 documents), every console link resolves, and
acknowledging a finding needs scope support, the form's token and a reason. And once in
a real headless Chromium driven over its DevTools protocol, against uvicorn on a free
port: sign in through the form, then the customer page and a line's explanation."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from meterline.audit.reconcile import reconcile_period
from meterline.jobs.apikeys import create_api_key
from meterline.service import create_app
from tests.scenarios.conftest import ledger_world, world  # noqa: F401
from tests.scenarios.harness import Scenario, Sub, World, day, event, resolutions, run, utc
from tests.service.test_serve import free_port

pytestmark = pytest.mark.single_warehouse

AS_OF = "2026-11-20T12:00:00Z"


class Desk:
    def __init__(self, place: World, client: TestClient, tokens: dict[str, str]) -> None:
        self.place, self.client, self.tokens = place, client, tokens

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['read']}"}

    def sign_in(self, scope: str) -> None:
        self.client.cookies.clear()
        signed = self.client.post(
            "/console/login",
            data={"token": self.tokens[scope], "next": "/console"},
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text


@pytest.fixture
def desk(ledger_world: World) -> Iterator[Desk]:  # noqa: F811
    """November billed and finalized for c1 (seats and resolutions), the app on it, and a
    key per scope."""
    scenario = Scenario(
        name="support console",
        customers=[Sub("c1", "basic", start="2026-11-01")],
        events=[
            event("c1-s1", "c1", "seats", "2026-11-01 00:00", value=2),
            *resolutions("c1", "c1-r", 5, "2026-11-10 09:00", channel="chat"),
            *resolutions("c1", "c1-t", 3, "2026-11-15 09:00", channel="chat"),
        ],
        rollup_days=[day("2026-11-01"), day("2026-11-10"), day("2026-11-15")],
        as_of=utc("2026-12-04 00:00"),
        expected=[],
    )
    run(ledger_world, scenario)
    tokens = {
        scope: create_api_key(f"desk-{scope}", [scope], config=ledger_world.config).token
        for scope in ("ingest", "read", "support")
    }
    with TestClient(create_app(ledger_world.config)) as client:
        yield Desk(ledger_world, client, tokens)


def minors(html: str, attribute: str) -> dict[str, int]:
    """{attribute value: data-minor} of the elements that carry both."""
    found = re.findall(rf'{attribute}="([^"]*)"[^>]*data-minor="(-?\d+)"', html)
    return {unescape(k): int(v) for k, v in found}


def console_links(html: str) -> set[str]:
    return {unescape(h) for h in re.findall(r'href="(/console[^"]*)"', html)}


def test_pages_need_a_key_with_read_or_support_kept_in_a_strict_cookie(desk: Desk) -> None:
    client = desk.client
    away = client.get("/console/customers/c1", follow_redirects=False)
    assert away.status_code == 303
    assert away.headers["location"] == "/console/login?next=%2Fconsole%2Fcustomers%2Fc1"
    assert client.get(away.headers["location"]).status_code == 200
    bad = client.post("/console/login", data={"token": "mlk_nope", "next": "/console"})
    assert bad.status_code == 401 and "not a live API key" in bad.text
    ingest = client.post("/console/login", data={"token": desk.tokens["ingest"]})
    assert ingest.status_code == 401 and "neither scope read nor support" in ingest.text
    signed = client.post(
        "/console/login",
        data={"token": desk.tokens["read"], "next": "https://elsewhere.example/x"},
        follow_redirects=False,
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/console"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"meterline_console={desk.tokens['read']};")
    assert {"HttpOnly", "Path=/console", "SameSite=strict"} <= {
        part.strip() for part in cookie.split(";")
    }
    page = client.get("/console")
    assert page.status_code == 200 and "Find a customer" in page.text
    assert "no-store" in page.headers["cache-control"]
    assert desk.tokens["read"] not in page.text
    # A bearer header is not a sign-in for pages, nor is the cookie one for /v1.
    client.cookies.clear()
    assert client.get("/console", headers=desk.bearer(), follow_redirects=False).status_code == 303
    client.cookies.set("meterline_console", desk.tokens["read"])
    assert client.get("/v1/customers/c1/invoices").status_code == 401
    # Signing out forgets it.
    out = client.post("/console/logout", follow_redirects=False)
    assert out.status_code == 303 and 'meterline_console=""' in out.headers["set-cookie"]


def test_the_pages_show_the_ledgers_numbers_and_their_links_resolve(desk: Desk) -> None:
    client = desk.client
    desk.sign_in("read")
    found = client.get("/console", params={"q": "C1"}, follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == "/console/customers/c1"
    named = client.get("/console", params={"q": "ustomer C"}, follow_redirects=False)
    assert named.headers["location"] == "/console/customers/c1"  # the name "Customer c1"
    assert "No customer" in client.get("/console", params={"q": "zzz"}).text

    page = client.get("/console/customers/c1", params={"as_of": AS_OF})
    assert page.status_code == 200, page.text
    usage = client.get("/v1/customers/c1/usage", params={"as_of": AS_OF}, headers=desk.bearer())
    (sub,) = usage.json()["subscriptions"]
    assert minors(page.text, "data-usage-total") == {sub["subscription"]: sub["amount_minor"]}
    assert minors(page.text, "data-price") == {
        p["price_id"]: p["amount_minor"] for p in sub["prices"]
    }
    # day by day: 20 days to the 20th; the last is the usage as of AS_OF, the 9th is before
    # any resolution, the 10th has the first five
    days = re.findall(r'data-day="(\d{4}-\d\d-\d\d)"', page.text)
    assert days[0] == "2026-11-01" and days[-1] == "2026-11-20" and len(days) == 20
    so_far = [int(v) for v in re.findall(r'data-so-far="USD" data-minor="(-?\d+)"', page.text)]
    assert so_far[-1] == sub["amount_minor"]
    assert so_far == sorted(so_far) and so_far[9] > so_far[8]
    assert "<svg" in page.text and page.text.count('class="bar"') == 20

    invoices = client.get("/v1/customers/c1/invoices", headers=desk.bearer()).json()["invoices"]
    assert minors(page.text, "data-invoice") == {str(i["id"]): i["total_minor"] for i in invoices}
    (inv,) = invoices
    assert f">USD {inv['total_minor'] / 100:,.2f}</td>" in page.text

    detail = client.get(f"/v1/invoices/{inv['id']}", headers=desk.bearer()).json()
    shown = client.get(f"/console/invoices/{inv['id']}")
    assert shown.status_code == 200
    assert minors(shown.text, "data-line") == {
        str(x["id"]): x["amount_minor"] for x in detail["lines"]
    }
    assert re.search(rf'data-total data-minor="{inv["total_minor"]}"', shown.text)

    for line in detail["lines"]:
        api = client.get(
            f"/v1/invoices/{inv['id']}/lines/{line['id']}/explain",
            params={"samples": 10},
            headers=desk.bearer(),
        ).json()
        explained = client.get(f"/console/invoices/{inv['id']}/lines/{line['id']}")
        assert explained.status_code == 200, explained.text
        text = explained.text
        assert re.search(rf'id="charged" data-minor="{line["amount_minor"]}"', text)
        assert re.search(rf'id="recomputed" data-minor="{api["recomputed"]["amount_minor"]}"', text)
        assert f'<span class="badge {api["status"]}" id="verdict">' in text
        for sample in api["sample_events"]:
            assert sample["event_id"] in text
        if line["meter"] == "resolution":
            assert api["sample_events"] and "c1-r" in text

    # every console link of these pages answers 200
    seen: set[str] = set()
    todo = console_links(page.text) | console_links(shown.text)
    while todo:
        link = todo.pop()
        if link in seen or link.startswith("/console/customers/c1/findings"):
            continue
        seen.add(link)
        answer = client.get(link)
        assert answer.status_code == 200, (link, answer.text[-500:])
        todo |= console_links(answer.text) - seen
    assert len(seen) >= 4

    assert client.get("/console/invoices/999999").status_code == 404
    missing = client.get("/console/customers/nobody")
    assert missing.status_code == 404 and "no customer" in missing.text
    wrong = client.get(f"/console/invoices/999999/lines/{detail['lines'][0]['id']}")
    assert wrong.status_code == 404 and "not on invoice 999999" in wrong.text


def test_acknowledging_a_finding_needs_support_a_form_token_and_a_reason(desk: Desk) -> None:
    client, place = desk.client, desk.place
    place.warehouse.command(
        "ALTER TABLE usage_rollup UPDATE value_sum = value_sum + 1"
        " WHERE meter = 'resolution' AND customer_id = 'c1' SETTINGS mutations_sync = 2"
    )
    report = reconcile_period("2026-11", customer="c1", config=place.config)
    failing = [f for f in report.findings if f.fails]
    assert failing
    target = failing[0]
    path = f"/console/customers/c1/findings/{target.id}/acknowledge"

    desk.sign_in("read")
    listed = client.get("/console/customers/c1/findings", params={"period": "2026-11"})
    assert listed.status_code == 200 and target.id in listed.text
    assert 'name="reason"' not in listed.text  # read: no form
    refused = client.post(path, data={"period": "2026-11", "reason": "x", "csrf": ""})
    assert refused.status_code == 403 and "this needs support" in refused.text

    desk.sign_in("support")
    listed = client.get("/console/customers/c1/findings")  # the latest invoice's month
    assert listed.status_code == 200 and 'name="reason"' in listed.text
    csrf = re.search(
        r'name="csrf" value="([0-9a-f]{64})"><input type="hidden" name="period"', listed.text
    )
    assert csrf
    token = csrf.group(1)
    forged = client.post(path, data={"period": "2026-11", "reason": "known", "csrf": "0" * 64})
    assert forged.status_code == 403 and "token is wrong" in forged.text
    empty = client.post(path, data={"period": "2026-11", "reason": "  ", "csrf": token})
    assert empty.status_code == 400 and "give the reason" in empty.text
    unknown = client.post(
        "/console/customers/c1/findings/f-000000000000/acknowledge",
        data={"period": "2026-11", "reason": "known", "csrf": token},
    )
    assert unknown.status_code == 404 and "no finding f-000000000000" in unknown.text
    assert not [
        f for f in reconcile_period("2026-11", config=place.config).findings if f.acknowledged
    ]

    done = client.post(
        path,
        data={"period": "2026-11", "reason": "rollup test data", "csrf": token},
        follow_redirects=False,
    )
    assert done.status_code == 303
    after = client.get(done.headers["location"])
    assert f"Finding {target.id} acknowledged" in after.text
    assert "rollup test data" in after.text
    (ack,) = [
        f.acknowledged
        for f in reconcile_period("2026-11", customer="c1", config=place.config).findings
        if f.id == target.id
    ]
    assert ack is not None and ack.reason == "rollup test data"
    assert ack.by.startswith("apikey:") and ack.by.endswith(":desk-support")


# --- in a real browser --------------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "the console test drives headless Chromium, which is not installed: install the"
        " Debian package `chromium` (apt-get install -y chromium)",
        pytrace=False,
    )


class Browser:
    """Headless Chromium over its DevTools protocol (one page, JSON messages over a
    websocket): navigate, wait for the page, evaluate an expression."""

    def __init__(self, tmp: Path) -> None:
        self.process = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={tmp / 'chromium'}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        deadline = time.monotonic() + 60
        port = None
        while port is None:
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            line = self.process.stderr.readline()
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = match.group(1) if match else None
        pages = [
            t
            for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            if t["type"] == "page"
        ]
        self.stack = ExitStack()
        self.ws = self.stack.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None))
        self.next_id = 0

    def call(self, method: str, **params: Any) -> Any:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, url_path: str) -> None:
        deadline = time.monotonic() + 60
        while True:
            state = self.evaluate("[location.pathname, document.readyState]")
            if state == [url_path, "complete"]:
                return
            assert time.monotonic() < deadline, state
            time.sleep(0.1)

    def open(self, url: str, lands_on: str | None = None) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(lands_on or unquote(urlsplit(url).path))

    def close(self) -> None:
        self.stack.close()
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def served(desk: Desk) -> Iterator[str]:
    """The same app under uvicorn, in a thread of this process (the warehouse is this
    process's embedded one), on a free port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(desk.place.config), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_in_chromium_sign_in_then_the_customer_page_and_a_line_explained(
    desk: Desk, served: str, tmp_path: Path
) -> None:
    usage = desk.client.get(
        "/v1/customers/c1/usage", params={"as_of": AS_OF}, headers=desk.bearer()
    ).json()
    (inv,) = desk.client.get("/v1/customers/c1/invoices", headers=desk.bearer()).json()["invoices"]
    detail = desk.client.get(f"/v1/invoices/{inv['id']}", headers=desk.bearer()).json()

    browser = Browser(tmp_path)
    try:
        browser.open(f"{served}/console/customers/c1?as_of={AS_OF}", "/console/login")
        browser.evaluate(
            f"document.querySelector('input[name=token]').value = {json.dumps(desk.tokens['read'])};"
            " document.querySelector('form.card').submit(); true"
        )
        browser.wait_for("/console/customers/c1")
        assert browser.evaluate("document.cookie") == ""  # HttpOnly: not for scripts
        seen = browser.evaluate(
            "({total: document.querySelector('[data-usage-total]').innerText.trim(),"
            " invoice: document.querySelector('[data-invoice]').innerText.trim(),"
            " days: document.querySelectorAll('#daily tbody tr').length,"
            " bars: document.querySelectorAll('svg rect.bar').length,"
            " link: document.querySelector('#invoices a').getAttribute('href')})"
        )
        (sub,) = usage["subscriptions"]
        assert seen["total"] == f"USD {sub['amount_minor'] / 100:,.2f}"
        assert seen["invoice"] == f"USD {inv['total_minor'] / 100:,.2f}"
        assert seen["days"] == 20 and seen["bars"] == 20
        assert seen["link"] == f"/console/invoices/{inv['id']}"

        # follow the invoice link, then a line's "Why this amount?" link, by clicking
        browser.evaluate("document.querySelector('#invoices a').click(); true")
        browser.wait_for(f"/console/invoices/{inv['id']}")
        line = next(x for x in detail["lines"] if x["meter"] == "resolution")
        browser.evaluate(
            f"document.querySelector('a[href=\"/console/invoices/{inv['id']}/lines/{line['id']}\"]')"
            ".click(); true"
        )
        browser.wait_for(f"/console/invoices/{inv['id']}/lines/{line['id']}")
        shown = browser.evaluate(
            "({charged: document.querySelector('#charged').dataset.minor,"
            " text: document.querySelector('#charged').innerText,"
            " verdict: document.querySelector('#verdict').innerText,"
            " samples: [...document.querySelectorAll('#samples code')].map((c) => c.innerText)})"
        )
        assert int(shown["charged"]) == line["amount_minor"]
        assert shown["text"].startswith(f"USD {line['amount_minor'] / 100:,.2f} for 8")
        assert shown["verdict"] == "agrees"
        assert shown["samples"] and all(s.startswith(("c1-r", "c1-t")) for s in shown["samples"])
    finally:
        browser.close()
