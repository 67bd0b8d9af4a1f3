"""The ledger and the audit over HTTP: a billed period's invoices, one invoice and a
line's explanation are the documents `meterline invoices list|show --json` and `meterline
audit explain --json` print, byte for byte as JSON values; unknown ids are 404s. On SQLite
and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from meterline.cli import main
from meterline.jobs.apikeys import create_api_key
from meterline.service import create_app
from meterline.settings import settings
from tests.scenarios.conftest import ledger_world, world  # noqa: F401
from tests.scenarios.harness import Sub, World, day, event, resolutions, run, utc
from tests.service.test_events import assert_problem

pytestmark = pytest.mark.single_warehouse


@pytest.fixture
def billed(ledger_world: World) -> Iterator[tuple[World, TestClient, dict[str, str]]]:  # noqa: F811
    """November billed and finalized for c1 (seats and resolutions), and the app on it."""
    from tests.scenarios.harness import Scenario

    scenario = Scenario(
        name="service reads",
        customers=[Sub("c1", "basic", start="2026-11-01")],
        events=[
            event("c1-s1", "c1", "seats", "2026-11-01 00:00", value=2),
            *resolutions("c1", "c1-r", 5, "2026-11-10 09:00", channel="chat"),
        ],
        rollup_days=[day("2026-11-01"), day("2026-11-10")],
        as_of=utc("2026-12-04 00:00"),
        expected=[],
    )
    run(ledger_world, scenario)
    token = create_api_key("reader", ["read"], config=ledger_world.config).token
    with TestClient(create_app(ledger_world.config)) as client:
        yield ledger_world, client, {"Authorization": f"Bearer {token}"}


def cli_json(place: World, args: list[str]) -> Any:
    env = {
        "METERLINE_WAREHOUSE_URL": place.config.warehouse_url,
        "METERLINE_LEDGER_URL": place.config.ledger_url,
    }
    settings.cache_clear()
    try:
        result = CliRunner().invoke(main, [*args, "--json"], env=env)
    finally:
        settings.cache_clear()
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_invoices_and_explanations_are_the_clis_documents(
    billed: tuple[World, TestClient, dict[str, str]],
) -> None:
    place, client, auth = billed
    listed = client.get("/v1/customers/c1/invoices", headers=auth)
    assert listed.status_code == 200, listed.text
    assert listed.json() == cli_json(place, ["invoices", "list", "--customer", "c1"])
    (summary,) = listed.json()["invoices"]
    assert summary["status"] == "finalized"
    # money: decimal text in major units beside integer minor units
    assert summary["total"] == "65.00" and summary["total_minor"] == 6500

    detail = client.get(f"/v1/invoices/{summary['id']}", headers=auth)
    assert detail.status_code == 200
    assert detail.json() == cli_json(place, ["invoices", "show", str(summary["id"])])
    lines = detail.json()["lines"]
    assert sum(line["amount_minor"] for line in lines) == summary["total_minor"]

    for line in lines:
        path = f"/v1/invoices/{summary['id']}/lines/{line['id']}/explain"
        explained = client.get(path, headers=auth)
        assert explained.status_code == 200, explained.text
        assert explained.headers["content-type"] == "application/json"
        assert explained.json() == cli_json(place, ["audit", "explain", str(line["id"])])
        assert explained.json()["difference"]["amount_minor"] == 0


def test_filters_and_unknown_ids(billed: tuple[World, TestClient, dict[str, str]]) -> None:
    place, client, auth = billed
    (invoice,) = client.get("/v1/customers/c1/invoices", headers=auth).json()["invoices"]
    assert (
        client.get("/v1/customers/c1/invoices?status=draft", headers=auth).json()["invoices"] == []
    )
    assert (
        len(client.get("/v1/customers/c1/invoices?period=2026-11", headers=auth).json()["invoices"])
        == 1
    )
    assert_problem(
        client.get("/v1/customers/c1/invoices?period=2026-13", headers=auth),
        400,
        "invalid-request",
        "query.period",
    )
    assert_problem(
        client.get("/v1/customers/nobody/invoices", headers=auth),
        404,
        "not-found",
        "no customer 'nobody'",
    )
    assert_problem(client.get("/v1/invoices/999999", headers=auth), 404, "not-found", "999999")
    line = client.get(f"/v1/invoices/{invoice['id']}", headers=auth).json()["lines"][0]
    assert_problem(
        client.get(f"/v1/invoices/999999/lines/{line['id']}/explain", headers=auth),
        404,
        "not-found",
        f"not on invoice 999999 (it is on invoice {invoice['id']})",
    )
    assert_problem(
        client.get(f"/v1/invoices/{invoice['id']}/lines/999999/explain", headers=auth),
        404,
        "not-found",
        "999999",
    )


@pytest.mark.parametrize(
    "as_of", ["2026-11-20T12:30:00Z", "2026-11-21", "2026-12-01T00:00:00+00:00"]
)
def test_usage_and_preview_are_the_clis_documents(
    billed: tuple[World, TestClient, dict[str, str]], as_of: str
) -> None:
    place, client, auth = billed
    for name in ("usage", "preview"):
        response = client.get(f"/v1/customers/c1/{name}", params={"as_of": as_of}, headers=auth)
        assert response.status_code == 200, response.text
        assert response.json() == cli_json(place, [name, "c1", "--as-of", as_of])


def test_usage_and_preview_refuse_what_the_cli_refuses(
    billed: tuple[World, TestClient, dict[str, str]],
) -> None:
    _, client, auth = billed
    for name in ("usage", "preview"):
        for bad, fragment in (
            ("2026-11-20T12:00:00", "offset"),
            ("2026-13-01", "not a real date"),
            ("1999-12-31", "outside 2000-01-01 to 2199-12-31"),
        ):
            response = client.get(f"/v1/customers/c1/{name}", params={"as_of": bad}, headers=auth)
            assert_problem(response, 400, "invalid-request", "query.as_of", fragment)
        assert_problem(
            client.get(f"/v1/customers/nobody/{name}", headers=auth), 404, "not-found", "nobody"
        )
        assert client.get(f"/v1/customers/c1/{name}", headers=auth).status_code == 200
