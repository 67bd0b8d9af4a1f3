"""The read endpoints through a PostgreSQL role that may only SELECT: the grants of
deploy/postgres-reader.sql (the compose stack's meterline_reader), applied to a test
schema and a role of the test's own before the ledger's tables exist (as PostgreSQL's
first start applies them before `meterline init`), then METERLINE_SERVICE_LEDGER_READ_URL
on that role. The invoices, an explanation, usage and preview read through it; a write
through it is refused by PostgreSQL; the API keys and the events stay on the owner's URL.
PostgreSQL only (METERLINE_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg.errors
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from meterline.jobs.apikeys import create_api_key
from meterline.service import create_app
from tests.billing.conftest import PG_ENV, pg_url_with_schema
from tests.scenarios.conftest import ledger_world, world  # noqa: F401
from tests.scenarios.harness import Scenario, Sub, World, day, event, resolutions, run, utc
from tests.service import test_events
from tests.service.test_ledger_reads import cli_json

pytestmark = [pytest.mark.single_warehouse, pytest.mark.postgres]
READER_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres-reader.sql"
ON_POSTGRES = pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)


def reader_statements(role: str, schema: str, owner: str, password: str) -> list[tuple[str, bool]]:
    """deploy/postgres-reader.sql's statements after its `\\connect`, for `role` on
    `schema` owned by `owner`: (statement, whether psql's \\gexec runs its result)."""
    body = READER_SQL.read_text().split("\n\\connect meterline\n", 1)[1]
    names = [
        (r"\bmeterline_reader\b", role),
        (r"\bSCHEMA public\b", f"SCHEMA {schema}"),
        (r"\bFOR ROLE meterline\b", f"FOR ROLE {owner}"),
        (r":'reader_password'", f"'{password}'"),
    ]
    statements: list[tuple[str, bool]] = []
    pending: list[str] = []
    for line in body.splitlines():
        if not line or line.startswith("--"):
            continue
        if line == "\\gexec":
            statements.append((" ".join(pending), True))
            pending = []
            continue
        assert not line.startswith("\\"), f"a psql command this test does not run: {line}"
        pending.append(line)
        if line.endswith(";"):
            statements.append((" ".join(pending).removesuffix(";"), False))
            pending = []
    assert not pending and len(statements) >= 5
    out = []
    for statement, gexec in statements:
        for pattern, name in names:
            statement = re.sub(pattern, name, statement)
        assert not re.search(r"\b(meterline|public)\b|:'", statement), statement
        out.append((statement, gexec))
    return out


@pytest.fixture
def reader_url(ledger_url: str) -> Iterator[str]:
    """A login role of the test's own with the file's grants on the ledger's schema (still
    empty: the default privileges must cover the tables created next); dropped after."""
    base = os.environ[PG_ENV]
    options = make_url(ledger_url).query["options"]
    schema = str(options).removeprefix("-csearch_path=")
    role = f"meterline_reader_test_{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            owner = conn.scalar(text("SELECT current_user"))
            assert owner
            for statement, gexec in reader_statements(role, schema, owner, password):
                result = conn.exec_driver_sql(statement)
                if gexec:
                    for (generated,) in result.fetchall():
                        conn.exec_driver_sql(generated)
        url = make_url(base).set(username=role, password=password)
        yield pg_url_with_schema(url.render_as_string(hide_password=False), schema)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")  # its grants, default privileges
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


@pytest.fixture
def billed(reader_url: str, ledger_world: World) -> Iterator[tuple[World, TestClient, str]]:  # noqa: F811
    """November billed and finalized for c1; the app reading through the reader role."""
    scenario = Scenario(
        name="reads as the reader role",
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
    config = ledger_world.config.model_copy(update={"service_ledger_read_url": reader_url})
    assert config.for_reads().ledger_url == reader_url
    with TestClient(create_app(config)) as client:
        yield ledger_world, client, reader_url


def auth(place: World, scopes: list[str]) -> dict[str, str]:
    token = create_api_key(f"k-{uuid.uuid4().hex[:6]}", scopes, config=place.config).token
    return {"Authorization": f"Bearer {token}"}


@ON_POSTGRES
def test_the_read_endpoints_work_through_the_read_only_role(
    billed: tuple[World, TestClient, str],
) -> None:
    place, client, reader = billed
    headers = auth(place, ["read"])
    listed = client.get("/v1/customers/c1/invoices", headers=headers)
    assert listed.status_code == 200, listed.text
    assert listed.json() == cli_json(place, ["invoices", "list", "--customer", "c1"])
    (invoice,) = listed.json()["invoices"]
    detail = client.get(f"/v1/invoices/{invoice['id']}", headers=headers)
    assert detail.status_code == 200, detail.text
    for line in detail.json()["lines"]:
        explained = client.get(
            f"/v1/invoices/{invoice['id']}/lines/{line['id']}/explain", headers=headers
        )
        assert explained.status_code == 200, explained.text
        assert explained.json() == cli_json(place, ["audit", "explain", str(line["id"])])
    for name in ("usage", "preview"):
        as_of = "2026-11-20T12:30:00Z"
        got = client.get(f"/v1/customers/c1/{name}", params={"as_of": as_of}, headers=headers)
        assert got.status_code == 200, got.text
        assert got.json() == cli_json(place, [name, "c1", "--as-of", as_of])

    # They did read as the reader: without its SELECT they fail, while the key (read on
    # the owner's URL) still passes.
    schema = make_url(reader).query["options"]
    role = make_url(reader).username
    admin = create_engine(os.environ[PG_ENV], isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f"REVOKE SELECT ON ALL TABLES IN SCHEMA {str(schema).split('=')[1]} FROM {role}"
            )
    finally:
        admin.dispose()
    refused = client.get(f"/v1/invoices/{invoice['id']}", headers=headers)
    assert refused.status_code == 500, refused.text


@ON_POSTGRES
def test_a_write_through_the_read_only_role_is_refused(
    billed: tuple[World, TestClient, str],
) -> None:
    _, _, reader = billed
    engine = create_engine(reader, isolation_level="AUTOCOMMIT")
    writes = [
        "UPDATE invoices SET status = status",
        "DELETE FROM invoice_lines",
        "INSERT INTO meterline_ledger_version (version_num) VALUES ('x')",
        "UPDATE api_keys SET name = name",
        "CREATE TABLE reader_was_here (id integer)",
    ]
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM invoices")) == 1  # it reads
            for write in writes:  # its transactions are read-only by default ...
                with pytest.raises(DBAPIError) as refused:
                    conn.exec_driver_sql(write)
                assert isinstance(refused.value.orig, psycopg.errors.ReadOnlySqlTransaction)
            # ... and with that turned off, it holds no privilege to write
            conn.exec_driver_sql("SET default_transaction_read_only = off")
            for write in writes:
                with pytest.raises(DBAPIError) as refused:
                    conn.exec_driver_sql(write)
                assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege), write
    finally:
        engine.dispose()


@ON_POSTGRES
def test_events_still_go_through_the_owner(billed: tuple[World, TestClient, str]) -> None:
    place, client, _ = billed
    event = test_events.event("owner-1", customer_id="c1", meter="resolution")
    posted = client.post(
        "/v1/events",
        content=test_events.ndjson([event]),
        headers={"Content-Type": "application/x-ndjson", **auth(place, ["ingest"])},
    )
    assert posted.status_code == 200, posted.text
    assert [e["status"] for e in posted.json()["events"]] == ["accepted"]
