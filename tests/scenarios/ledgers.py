"""Helpers for scenario worlds on either ledger database (the `ledger_world` fixture of
tests/scenarios/conftest.py): loading a catalog then customers into the world's ledger,
and plain SQL on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

import billing
from billing.db import create_ledger_engine, session_factory
from billing.migrate import upgrade
from meterline.connections import meter_catalog
from tests.scenarios.harness import CATALOG, Sub, World


def load(world: World, customers: list[Sub], catalog: Path = CATALOG) -> None:
    """The catalog, then the customers (checked against it), into the world's ledger."""
    world.config = world.config.model_copy(update={"catalog_path": catalog})
    upgrade(world.config.ledger_url)
    engine = create_ledger_engine(world.config.ledger_url)
    try:
        with session_factory(engine).begin() as session:
            billing.load_catalog(session, catalog)
        path = world.tmp / "customers.jsonl"
        path.write_text("".join(json.dumps(c.row()) + "\n" for c in customers))
        with session_factory(engine).begin() as session:
            billing.load_customers_file(session, path)
    finally:
        engine.dispose()
    world.meters = meter_catalog(world.config)


def ledger_sql(world: World, statement: str, **params: Any) -> None:
    """Change the ledger behind the loader's back, as a row loaded before the loader
    checked prices, or a catalog changed since, would have it."""
    engine = create_ledger_engine(world.config.ledger_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()
