"""Engines and sessions for the ledger, on SQLite (embedded) or PostgreSQL.

SQLite: foreign keys on, WAL journal, a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE``: it takes the database's single write lock up front, so two
processes posting at once queue up instead of both reading, then one failing to
upgrade its lock (SQLite's deadlock answer, which does not wait for the busy timeout).
A session opened with ``reading`` only reads: its transaction is a plain (deferred)
``BEGIN``, a snapshot that neither takes nor waits for the write lock (WAL).

PostgreSQL: plain READ COMMITTED; ledger writers queue on one advisory lock per ledger
schema (``billing.bulk.lock_ledger_writes``), and posting serialises on invoice rows
(``FOR UPDATE``) and the unique live-invoice index. ``schema`` sets the search path (tests use one
schema per test).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_S = 60.0
#: Execution option of a connection whose transaction only reads (see ``reading``).
READ_ONLY = "ledger_read_only"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def create_ledger_engine(url: str, *, schema: str | None = None, **kwargs: Any) -> Engine:
    """An engine for the ledger at ``url`` (``sqlite:///PATH`` or ``postgresql+psycopg://``)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if schema is not None:
            raise ValueError("schema is only supported on PostgreSQL")
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.pop("connect_args", {})}
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        connect_args = dict(kwargs.pop("connect_args", {}))
        if schema is not None:
            if not _SCHEMA_NAME.match(schema):
                raise ValueError(f"invalid schema name {schema!r}")
            connect_args["options"] = f"-csearch_path={schema}"
        return create_engine(parsed, connect_args=connect_args, **kwargs)
    raise ValueError(f"unsupported ledger database {backend!r}: use sqlite or postgresql")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite otherwise
        # begins lazily, in DEFERRED mode, only before DML).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        reader = connection.get_execution_options().get(READ_ONLY)
        connection.exec_driver_sql("BEGIN" if reader else "BEGIN IMMEDIATE")


def session_factory(
    engine: Engine, *, invoice_sinks: Sequence[str] | None = None
) -> sessionmaker[Session]:
    """Sessions for the ledger; objects stay readable after commit. ``invoice_sinks``:
    the sinks the sessions' invoice events are delivered to (billing.outbox.record;
    default its SINKS), the tax sink's included when tax goes through it."""
    info = {} if invoice_sinks is None else {"invoice_sinks": tuple(invoice_sinks)}
    return sessionmaker(engine, expire_on_commit=False, info=info)


@contextmanager
def reading(make: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads only. On SQLite its transaction does not take the write lock:
    a reader never queues behind a writer, nor a writer behind it (the Stripe sink's
    threads looked up external ids under BEGIN IMMEDIATE, each waiting for the others'
    lookups and writes in SQLite's busy handler, which sleeps up to 100 ms a try). A
    write in it may fail with "database is locked" instead of waiting: write through
    ``make.begin()``. PostgreSQL: an ordinary session."""
    with make() as session:
        session.connection(execution_options={READ_ONLY: True})
        yield session
