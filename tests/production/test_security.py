"""Security: database credentials come only from settings or Airflow Connections and are
never written to a log, an error or the console; every value reaches SQL as a bound
parameter, so hostile customer ids, meter names and properties are stored and shown as
data (on both backends)."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from meterline import settings as settings_module
from meterline.cli import main as cli
from meters.catalog import MeterCatalog, meters_from_dict
from meters.ingest.ingestor import ingest_events
from meters.migrations import migrate
from meters.quantities import period_quantities, raw_period_quantities
from meters.rollup import rebuild_day
from meters.warehouse import clickhouse as clickhouse_backend
from meters.warehouse import connect
from meters.warehouse.base import Warehouse, WarehouseError
from tests.conftest import warehouse_url
from tests.support.chdb_http import ChdbHttpServer, User

SECRET = "Pw-'\"$x%41 7Qz9!@:/"
USER = "meterline_writer"


def leaked_forms() -> list[str]:
    basic = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    return [SECRET, quote(SECRET, safe=""), quote(SECRET), basic, SECRET.replace("'", "\\'")]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for form in leaked_forms():
            assert form not in text, (
                f"the password leaked: ...{text[max(0, text.find(form) - 80) :][:200]}"
            )


@pytest.fixture
def writer(server: ChdbHttpServer) -> Iterator[ChdbHttpServer]:
    server.users[USER] = User(password=SECRET)
    try:
        yield server
    finally:
        del server.users[USER]


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    settings_module.settings.cache_clear()
    yield monkeypatch
    settings_module.settings.cache_clear()


def test_credentials_never_reach_logs_errors_or_output(
    writer: ChdbHttpServer,
    catalog: MeterCatalog,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    fresh_settings: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything: ours, clickhouse-connect's, urllib3's
    database = f"sec_{uuid.uuid4().hex[:10]}"
    url = writer.url(database, user=USER, password=SECRET, retry_backoff="0.01")
    texts: list[str] = []

    wh = connect(url)
    try:
        texts += [repr(wh), str(vars(wh))]
        migrate(wh)
        writer.inject("drop_mid_body", r"INSERT INTO `?_ingest_")  # a retry, and its warning
        ingest_events(
            wh,
            catalog,
            [
                {
                    "event_id": "e1",
                    "customer_id": "c",
                    "meter": "seats",
                    "timestamp": "2026-11-02T10:00:00Z",
                    "value": "2",
                    "properties": {"seat_type": "expert"},
                }
            ],
            ingested_at=datetime(2026, 11, 3, tzinfo=UTC),
        )
        with pytest.raises(WarehouseError) as failed:
            wh.query_rows("SELECT * FROM no_such_table")
        texts.append(str(failed.value))
    finally:
        wh.close()

    bad = writer.url(database, user=USER, password=SECRET + "x", retries="0")
    with pytest.raises(
        WarehouseError, match="refused the login of user 'meterline_writer'"
    ) as refused:
        connect(bad)
    texts.append(str(refused.value))

    # The command line, with the password in METERLINE_WAREHOUSE_URL.
    fresh_settings.setenv("METERLINE_WAREHOUSE_URL", url)
    fresh_settings.setenv("METERLINE_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps(
            {
                "event_id": "e2",
                "customer_id": "c",
                "meter": "seats",
                "timestamp": "2026-11-02T11:00:00Z",
                "value": "1",
                "properties": {"seat_type": "expert"},
            }
        )
        + "\n"
    )
    runner = CliRunner()
    for args in (
        ["init"],
        ["catalog", "load"],
        ["ingest", str(events), "--json", "--as-of", "2026-11-03T00:00:00Z"],
        ["rejected", "--json"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        texts.append(result.output)
    fresh_settings.setenv("METERLINE_WAREHOUSE_URL", bad)
    settings_module.settings.cache_clear()
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 2 and "refused the login" in result.output
    texts.append(result.output)

    captured = capfd.readouterr()
    assert "retrying" in caplog.text  # the retry was logged, without the password
    assert_no_secret(caplog.text, captured.out, captured.err, *texts)
    assert all(SECRET not in str(r.args) for r in caplog.records)

    cleanup = connect(url)
    cleanup.command(f"DROP DATABASE IF EXISTS {database}")
    cleanup.close()


def test_inside_airflow_the_connection_supplies_the_credentials(
    writer: ChdbHttpServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In a task, the Connection clickhouse_default (here from an AIRFLOW_CONN_ variable)
    gives host, port, user, password and database; the URL's are not used."""
    caplog.set_level(logging.DEBUG)
    database = f"af_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLICKHOUSE_DEFAULT",
        json.dumps(
            {
                "conn_type": "clickhouse",
                "host": "127.0.0.1",
                "port": writer.port,
                "login": USER,
                "password": SECRET,
                "schema": database,
            }
        ),
    )
    monkeypatch.setattr(clickhouse_backend, "inside_airflow_task", lambda: True)
    wh = connect("clickhouse://nobody:wrong@unused.invalid:1/ignored")
    try:
        assert isinstance(wh, clickhouse_backend.ClickHouseWarehouse)
        assert (wh.source, wh.database) == ("airflow:clickhouse_default", database)
        assert wh.query_rows("SELECT currentDatabase()") == [(database,)]
        assert writer.statements(r"SELECT currentDatabase", database)[-1].user == USER
        assert_no_secret(caplog.text, repr(wh), str(vars(wh)))
    finally:
        wh.command(f"DROP DATABASE IF EXISTS {database}")
        wh.close()


def test_outside_a_task_the_url_is_used_even_with_a_connection_defined(
    server: ChdbHttpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLICKHOUSE_DEFAULT", "clickhouse://x:y@unused.invalid:1/z")
    wh = connect(server.url("default"))
    try:
        assert wh.source == "url"  # type: ignore[attr-defined]
    finally:
        wh.close()


# --- hostile values are data ------------------------------------------------------------

NASTY = [
    "'; DROP TABLE usage_events; --",
    "\\'); DROP DATABASE default; --",
    "{customer_id:String}",
    "$$heredoc$$ $x$",
    '`backtick` "double"',
    "line\nbreak\ttab\rreturn",
    "back\\slash\\",
    "\\N",
    "%(name)s %s %%",
    "SELECT 1 FORMAT JSON",
    "unicode ☃ — ü 𝄞",
    "param_customer_id=1&query=DROP",
]
DAY = date(2026, 11, 2)
NIGHT = datetime(2026, 11, 3, 0, 30, tzinfo=UTC)
HOSTILE_METERS = meters_from_dict(
    {
        "meters": [
            {
                "name": "api_calls",
                "aggregation": "sum",
                "properties": {"endpoint": None, "plan": None},
                "dimensions": ["endpoint"],
            },
            {
                "name": "active_users",
                "aggregation": "unique_count",
                "properties": {"user": None},
                "unique_property": "user",
            },
        ]
    },
    "hostile",
)


def printable(text: str) -> str:
    """Ids must be printable (control characters are refused: bad_event_id and
    bad_customer_id); property values may hold any text."""
    return text.replace("\n", " ").replace("\t", " ").replace("\r", " ")


CUSTOMERS = [printable(t) for t in NASTY]


def hostile_events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, text in enumerate(NASTY):
        at = f"{DAY.isoformat()}T{i % 24:02d}:15:00Z"
        customer = printable(text)
        out.append(
            {
                "event_id": f"{customer} #{i}",
                "customer_id": customer,
                "meter": "api_calls",
                "timestamp": at,
                "value": str(i + 1),
                "properties": {"endpoint": text, "plan": text},
            }
        )
        out.append(
            {
                "event_id": f"u{i}",
                "customer_id": customer,
                "meter": "active_users",
                "timestamp": at,
                "properties": {"user": text},
            }
        )
        out.append({"event_id": f"m{i}", "customer_id": "c", "meter": text, "timestamp": at})
        out.append(
            {
                "event_id": f"k{i}",
                "customer_id": "c",
                "meter": "api_calls",
                "timestamp": at,
                "properties": {text: "x"},
            }
        )
    return out


def test_hostile_strings_are_stored_and_shown_as_data(
    warehouse: Warehouse, fresh_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wh = warehouse
    tables = wh.query_rows(
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    )
    total = ingest_events(wh, HOSTILE_METERS, hostile_events(), ingested_at=NIGHT).total
    n = len(NASTY)
    assert (total.accepted, total.rejected) == (2 * n, 2 * n)
    assert total.rejected_by_reason == {"unknown_meter": n, "bad_properties": n}

    stored = wh.query_rows(
        "SELECT event_id, customer_id, properties FROM usage_events "
        "WHERE meter = 'api_calls' ORDER BY value"
    )
    assert [r[1] for r in stored] == CUSTOMERS
    assert [dict(r[2]) for r in stored] == [{"endpoint": t, "plan": t} for t in NASTY]
    assert [r[0].rsplit(" #", 1)[0] for r in stored] == CUSTOMERS

    rebuild_day(wh, HOSTILE_METERS, DAY)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = start + timedelta(days=30)
    rolled = period_quantities(wh, HOSTILE_METERS, start=start, end=end)
    raw = raw_period_quantities(wh, HOSTILE_METERS, start=start, end=end)
    key = lambda r: (r.customer_id, r.meter, sorted(r.dimensions.items()))  # noqa: E731
    assert sorted(rolled, key=key) == sorted(raw, key=key)
    sums = {
        (r.customer_id, r.dimensions["endpoint"]): r.quantity
        for r in rolled
        if r.meter == "api_calls"
    }
    assert sums == {(c, t): i + 1 for i, (c, t) in enumerate(zip(CUSTOMERS, NASTY, strict=True))}
    uniques = {r.customer_id: r.quantity for r in rolled if r.meter == "active_users"}
    assert uniques == dict.fromkeys(CUSTOMERS, 1)
    picked = period_quantities(wh, HOSTILE_METERS, start=start, end=end, customer_ids=CUSTOMERS[:3])
    assert {r.customer_id for r in picked} == set(CUSTOMERS[:3])

    # Nothing was dropped or created by any of it.
    assert (
        wh.query_rows(
            "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"
        )
        == tables
    )

    # `meterline rejected` shows the refused rows' raw payloads, verbatim.
    fresh_settings.setenv("METERLINE_WAREHOUSE_URL", warehouse_url(wh))
    result = CliRunner().invoke(cli, ["rejected", "--json", "--limit", "1000"])
    assert result.exit_code == 0, result.output
    shown = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    raws = [json.loads(r["raw"]) for r in shown]
    assert sorted(r["meter"] for r in raws if r["event_id"].startswith("m")) == sorted(NASTY)
    assert sorted(
        next(iter(json.loads(r["properties"]))) for r in raws if r["event_id"].startswith("k")
    ) == sorted(NASTY)
