"""Wiring shared by the CLI, the demo and the DAG tasks: settings -> warehouse, ledger,
catalog. The one warehouse opener (`open_warehouse`) and the one ledger opener
(`ledger_session`).

Migrations are explicit: only `meterline init` (meterline.jobs.init) creates a store or
creates or upgrades a schema. Both openers check first that the store exists (an
embedded store: its chDB folder or SQLite file; StoreMissing, exit code 2, names the URL
and says to run `meterline init`, so a misspelt path never becomes a new empty store)
and that its schema version is the one this code ships: meters.migrations.SchemaNotReady
(warehouse) or billing.errors.SchemaNotReady (ledger), exit code 2 on the command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from meterline.settings import Settings, SettingsError, settings
from meters.catalog import MeterCatalog
from meters.ingest.ingestor import IngestOptions
from meters.migrations import migrate, require_current
from meters.warehouse import connect
from meters.warehouse.base import Warehouse

if TYPE_CHECKING:
    from pydantic import SecretStr
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from meterline.sinks.stripe import StripeConfig
    from meterline.sinks.tax import AvalaraConfig


class StoreMissing(SettingsError):
    """An embedded store named by a setting does not exist: the chDB folder of
    METERLINE_WAREHOUSE_URL or the SQLite file of METERLINE_LEDGER_URL. Only `meterline
    init` (and `meterline ledger migrate`) create one; every other command stops (exit
    code 2) rather than create an empty store at a misspelt path."""


class NotAStore(SettingsError):
    """A setting names a file or folder that holds something else than a store of ours:
    a SQLite ledger URL naming a file that is not a SQLite database, a chDB warehouse URL
    naming a folder that holds files but no chDB store (exit code 2). Found by the breaker:
    `sqlite:////etc/passwd` ended in an internal error, and a command pointed at a delivery
    folder left the engine's metadata/ and tmp/ folders in it."""


# What the chDB engine keeps in a store folder from its first open on.
CHDB_STORE_MARK = "metadata"


def embedded_path(url: str) -> Path | None:
    """The local file or folder an embedded store's URL names: ``chdb://PATH`` (relative,
    or ``chdb:///absolute``) is a folder, ``sqlite:///PATH`` a file; None for a server
    URL, an in-memory SQLite database or a ``file:`` URI (which SQLite resolves itself)."""
    if url.startswith("chdb://"):
        return Path(url[len("chdb://") :].split("?", 1)[0])
    if url.split(":", 1)[0].split("+", 1)[0] == "sqlite":
        from sqlalchemy.engine import make_url

        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            return Path(database)
    return None


def require_warehouse_store(config: Settings | None = None) -> None:
    """StoreMissing when METERLINE_WAREHOUSE_URL names a chDB folder that does not exist
    (a server's database is checked by the schema check instead)."""
    url = (config or settings()).warehouse_url
    path = embedded_path(url)
    if path is not None and not (path / CHDB_STORE_MARK).is_dir():
        if path.is_dir() and any(path.iterdir()):
            raise NotAStore(
                f"METERLINE_WAREHOUSE_URL {url}: the folder {path} holds no chDB warehouse"
                " (other files are there): check the URL"
            )
        raise StoreMissing(
            f"METERLINE_WAREHOUSE_URL {url}: no embedded warehouse at {path}"
            + (" (it is a file)" if path.exists() and not path.is_dir() else "")
            + ": check the URL, or run `meterline init` to create it there"
        )


def refuse_foreign_folder(config: Settings | None = None) -> None:
    """NotAStore when the chDB folder `meterline init` would create the warehouse in
    already holds files but no chDB store: init never scatters the engine's files into
    a folder of something else (a delivery folder, a home folder)."""
    url = (config or settings()).warehouse_url
    path = embedded_path(url)
    if path is None or (path / CHDB_STORE_MARK).is_dir():
        return
    if path.is_dir() and any(path.iterdir()):
        raise NotAStore(
            f"METERLINE_WAREHOUSE_URL {url}: the folder {path} is not empty and holds no"
            " chDB warehouse: choose an empty or new folder"
        )
    if path.exists() and not path.is_dir():
        raise NotAStore(f"METERLINE_WAREHOUSE_URL {url}: {path} is a file, not a folder")


def refuse_foreign_file(url: str) -> None:
    """NotAStore when a SQLite ledger URL names a file that is not a SQLite database
    (an empty file is one: SQLite makes it a database on first write).

    The file is read through SQLite (which checks its 16-byte header as it reads page
    1, sqlite.org/fileformat.html, 1.3), never opened and closed by this code: closing
    any descriptor of a file drops every POSIX lock the process holds on it, its SQLite
    connections' included (sqlite.org/howtocorrupt.html, 2.2). A long-running process
    (`meterline serve`, which checks the ledger on every request while its key store's
    connections stay open) then lost its shared lock on the WAL ledger: another process's
    last close deleted the WAL under it, and the service read an old snapshot (a revoked
    API key stayed live, a new one was refused) and its writes could be lost. SQLite's
    own opens share the process's locks."""
    path = embedded_path(url)
    if path is None or not path.is_file():
        return
    import sqlite3

    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=60)
        try:
            probe.execute("PRAGMA schema_version").fetchone()
        finally:
            probe.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_NOTADB:
            return  # unreadable, locked, ...: the ledger's own open reports it
        raise NotAStore(
            f"METERLINE_LEDGER_URL {url}: {path} is not a SQLite database: check the URL"
        ) from None


def require_ledger_store(config: Settings | None = None) -> None:
    """StoreMissing when METERLINE_LEDGER_URL names a SQLite file that does not exist
    (a PostgreSQL database is checked by the schema check instead)."""
    url = (config or settings()).ledger_url
    refuse_foreign_file(url)
    path = embedded_path(url)
    if path is not None and not path.is_file():
        raise StoreMissing(
            f"METERLINE_LEDGER_URL {url}: no ledger database at {path}"
            + (" (it is a folder)" if path.exists() else "")
            + ": check the URL, or run `meterline init` to create it there"
        )


@contextmanager
def open_warehouse(
    config: Settings | None = None, *, check_schema: bool = True
) -> Iterator[Warehouse]:
    """The configured warehouse, closed on exit. It must exist (an embedded folder:
    StoreMissing, exit code 2) and its schema must be the one this code ships
    (meters.migrations.require_current: SchemaNotReady, exit code 2, says to run
    `meterline init`); only the init job opens it with ``check_schema=False``, which
    creates an embedded folder that does not exist.

    Raises WarehouseUnavailable / WarehouseLockTimeout when it cannot be reached (4)."""
    config = config or settings()
    if check_schema:
        require_warehouse_store(config)
    else:
        refuse_foreign_folder(config)
    warehouse = connect(config.warehouse_url, lock_timeout_s=config.warehouse_lock_timeout_s)
    try:
        if check_schema:
            require_current(warehouse)
        yield warehouse
    finally:
        warehouse.close()


def init_warehouse(warehouse: Warehouse) -> list[str]:
    """Create or upgrade the warehouse schema; idempotent. The names applied. Called by
    the init job (meterline.jobs.init) only."""
    return migrate(warehouse)


def ingest_options(config: Settings | None = None) -> IngestOptions:
    """The ingest window and batch size from settings."""
    config = config or settings()
    return IngestOptions(
        max_event_age=timedelta(days=config.max_event_age_days),
        future_tolerance=timedelta(seconds=config.future_tolerance_s),
        batch_rows=config.ingest_batch_rows,
    )


def meter_catalog(config: Settings | None = None) -> MeterCatalog:
    """The meters of the catalog loaded in the ledger (`meterline catalog load FILE`),
    the one catalog ingest, rollup, close and the audit read (meterline.jobs.catalog)."""
    from meterline.jobs.catalog import loaded_meters

    return loaded_meters(config or settings())


@contextmanager
def ledger_engine(config: Settings | None = None) -> Iterator[Engine]:
    """An engine on the configured ledger, disposed on exit; no schema check, and a
    SQLite file that does not exist is created (the init job's; every other path uses
    ``ledger_session``, or ``require_ledger_store`` first).

    Raises SettingsError when the SQLite ledger's folder cannot be created, NotAStore when
    its file is not a SQLite database (exit code 2)."""
    from billing.db import create_ledger_engine

    url = (config or settings()).ledger_url
    refuse_foreign_file(url)
    try:
        engine = create_ledger_engine(url)
    except OSError as exc:
        raise SettingsError(
            f"METERLINE_LEDGER_URL: cannot create the ledger's folder {exc.filename}:"
            f" {exc.strerror}; choose a folder that exists or can be created"
        ) from None
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def ledger_session(config: Settings | None = None, *, write: bool = False) -> Iterator[Session]:
    """A session on the configured ledger; with ``write``, one transaction committed on
    success (rolled back on error). The ledger must be at the schema revision this code
    ships, SQLite and PostgreSQL alike (`meterline init` creates or upgrades it).

    Raises StoreMissing when the SQLite file does not exist (exit code 2: run `meterline
    init`), billing.errors.SchemaNotReady when its schema is not this code's (2, the message
    says what to run); a ledger that cannot be reached raises SQLAlchemy's
    OperationalError (4, meterline.cli.exits)."""
    from billing.db import session_factory
    from billing.migrate import require_head

    require_ledger_store(config)
    with ledger_engine(config) as engine:
        require_head(engine)
        make = session_factory(engine, invoice_sinks=invoice_sinks(config or settings()))
        with make.begin() if write else make() as session:
            yield session


def invoice_sinks(config: Settings) -> tuple[str, ...]:
    """The sinks the ledger's invoice events go to under these settings: Stripe, and
    the tax sink when METERLINE_TAX_SINK names it (docs/tax.md)."""
    from billing.outbox import SINKS, TAX_SINK

    return (*SINKS, TAX_SINK) if config.tax_sink == TAX_SINK else SINKS


def avalara_config(config: Settings | None = None) -> AvalaraConfig | None:
    """How to reach AvaTax: the METERLINE_AVALARA_* settings; None when the account id
    or license key is missing (the tax sink is not configured)."""
    from meterline.sinks.tax import AvalaraConfig

    cfg = config or settings()
    key = cfg.avalara_license_key
    if not cfg.avalara_account_id or key is None or not key.get_secret_value().strip():
        return None
    if cfg.avalara_company_code is None or cfg.avalara_origin_address is None:
        return None
    return AvalaraConfig(
        account_id=cfg.avalara_account_id.strip(),
        license_key=key,
        company_code=cfg.avalara_company_code,
        origin=dict(cfg.avalara_origin_address),
        api_base=cfg.avalara_api_base,
        timeout_s=cfg.avalara_timeout_s,
        request_attempts=cfg.avalara_request_attempts,
        document_prefix=cfg.avalara_document_prefix,
    )


#: The Airflow Connection holding Stripe's key (password) and API base (host), used when
#: METERLINE_STRIPE_API_KEY is not set (docs/production.md).
STRIPE_CONNECTION = "stripe_default"


def stripe_config(config: Settings | None = None) -> StripeConfig | None:
    """How to reach Stripe: METERLINE_STRIPE_* settings, else Airflow's
    ``stripe_default`` Connection (inside an Airflow task, or when
    AIRFLOW_CONN_STRIPE_DEFAULT is set); None when neither names a key."""
    from pydantic import SecretStr

    from meterline.sinks.stripe import StripeConfig

    cfg = config or settings()
    key = cfg.stripe_api_key
    base = cfg.stripe_api_base
    if key is None:
        found = _airflow_stripe_connection()
        if found is None:
            return None
        key, host = found
        if host:
            base = host if "://" in host else f"https://{host}"
    if not key.get_secret_value().strip():
        return None
    return StripeConfig(
        api_key=SecretStr(key.get_secret_value().strip()),
        api_base=base.rstrip("/"),
        timeout_s=cfg.stripe_timeout_s,
        request_attempts=cfg.stripe_request_attempts,
        concurrency=cfg.stripe_concurrency,
        collection_method=cfg.stripe_collection_method,
        days_until_due=cfg.stripe_days_until_due,
    )


def _airflow_stripe_connection() -> tuple[SecretStr, str | None] | None:
    import os

    from pydantic import SecretStr

    if not ("AIRFLOW_CTX_DAG_ID" in os.environ or "AIRFLOW_CONN_STRIPE_DEFAULT" in os.environ):
        return None
    try:
        from airflow.sdk import Connection

        conn = Connection.get(STRIPE_CONNECTION)
    except Exception:  # no such Connection, or not inside Airflow: not configured
        return None
    if not conn.password:
        return None
    return SecretStr(conn.password), conn.host
