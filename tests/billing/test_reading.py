"""billing.db.reading on SQLite: a reader's transaction neither takes nor waits for the
write lock (a writer holds it meanwhile), and sees what was committed when it began;
an ordinary session still takes the lock (BEGIN IMMEDIATE) and waits for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from billing.db import create_ledger_engine, reading, session_factory


def test_a_reader_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'ledger.db'}")

    @event.listens_for(engine, "connect")
    def _short_wait(dbapi_connection: object, _record: object) -> None:
        # After the ledger's own (60 s): a session that waits for the lock fails fast.
        dbapi_connection.execute("PRAGMA busy_timeout = 200")  # type: ignore[attr-defined]

    make = session_factory(engine)
    with make.begin() as session:
        session.execute(text("CREATE TABLE t (n INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
    with make.begin() as writer:
        writer.execute(text("INSERT INTO t VALUES (2)"))  # holds the write lock
        with reading(make) as reader:
            assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 1
        with pytest.raises(OperationalError, match="locked"), make() as other:
            other.execute(text("SELECT count(*) FROM t"))
    with reading(make) as reader:
        assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 2
    engine.dispose()
