"""Fixtures for the production-mode tests: a server warehouse with quick retries, and
the test server itself (tests/support/chdb_http.py)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from meters.migrations import migrate
from meters.warehouse import connect
from meters.warehouse.clickhouse import ClickHouseWarehouse
from tests.support.chdb_http import ChdbHttpServer

# Airflow (imported by the Airflow-Connection tests) reads its home when first imported:
# a folder of its own unless another test folder set one already, as tests/dags does.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="meterline-airflow-"))


@pytest.fixture
def server(clickhouse_server: ChdbHttpServer) -> Iterator[ChdbHttpServer]:
    """The session's test server, with no faults left over from another test."""
    clickhouse_server.clear_faults()
    yield clickhouse_server
    clickhouse_server.clear_faults()


@pytest.fixture
def server_warehouse(server: ChdbHttpServer) -> Iterator[ClickHouseWarehouse]:
    """A migrated database of its own on the test server; retries back off 10 ms."""
    database = f"p_{uuid.uuid4().hex[:12]}"
    wh = connect(server.url(database, retry_backoff="0.01"))
    assert isinstance(wh, ClickHouseWarehouse)
    migrate(wh)
    try:
        yield wh
    finally:
        wh.command(f"DROP DATABASE IF EXISTS {database}")
        wh.close()
