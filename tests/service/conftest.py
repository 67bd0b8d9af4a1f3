"""The HTTP service under test: the real app (meterline.service.create_app) in starlette's
TestClient, on a warehouse database of the session's chDB folder (tests/conftest.py) and a
ledger of its own (SQLite; PostgreSQL too where a test takes `ledger_url`, when
METERLINE_TEST_POSTGRES_URL is set), with the demo catalog loaded and an API key per
scope.

The app holds its warehouse open while the client is open (as `meterline serve` does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import billing
from billing.db import create_ledger_engine, session_factory
from billing.migrate import upgrade
from meterline.jobs.apikeys import create_api_key
from meterline.service import create_app
from meterline.settings import Settings, load_settings
from meters.warehouse.base import Warehouse
from tests.billing.conftest import ledger_url  # noqa: F401  (SQLite, and PostgreSQL when set)
from tests.billing.factories import CATALOG, write_customers
from tests.conftest import warehouse_url


@dataclass
class Service:
    """A running app, its settings and warehouse, and a token per scope."""

    client: TestClient
    config: Settings
    warehouse: Warehouse
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def post_events(
        self, body: bytes | str, *, ndjson: bool = True, scope: str = "ingest", **kw: Any
    ) -> Any:
        kind = "application/x-ndjson" if ndjson else "application/json"
        headers = {"Content-Type": kind, **self.auth(scope), **kw.pop("headers", {})}
        return self.client.post("/v1/events", content=body, headers=headers, **kw)


def prepare_ledger(url: str, tmp: Path) -> None:
    """Migrated, with the demo catalog and the factories' customers."""
    upgrade(url)
    engine = create_ledger_engine(url)
    try:
        with session_factory(engine).begin() as session:
            billing.load_catalog(session, CATALOG)
            billing.load_customers_file(session, write_customers(tmp / "customers.jsonl"))
    finally:
        engine.dispose()


def service_settings(wh: Warehouse, ledger: str, **overrides: Any) -> Settings:
    return load_settings(
        warehouse_url=warehouse_url(wh),
        ledger_url=ledger,
        catalog_path=CATALOG,
        **{"service_flush_ms": 20, **overrides},
    )


StartService = Callable[..., Service]


@pytest.fixture
def start_service(warehouse: Warehouse, tmp_path: Path) -> Iterator[StartService]:
    """Start the app: `start_service(ledger=URL, **settings)` (default: a SQLite ledger of
    the test's own), with a key per scope (`ingest`, `read`, `support`)."""
    stack = ExitStack()

    def start(ledger: str | None = None, **overrides: Any) -> Service:
        url = ledger or f"sqlite:///{tmp_path}/ledger.db"
        prepare_ledger(url, tmp_path)
        config = service_settings(warehouse, url, **overrides)
        tokens = {
            scope: create_api_key(f"test-{scope}", [scope], config=config).token
            for scope in ("ingest", "read", "support")
        }
        client = stack.enter_context(TestClient(create_app(config)))
        return Service(client, config, warehouse, tokens)

    with stack:
        yield start


@pytest.fixture
def service(start_service: StartService) -> Service:
    """The app on a SQLite ledger, default limits but a 20 ms flush."""
    return start_service()
