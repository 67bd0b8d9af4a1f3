"""The check that a SQLite ledger URL names a SQLite database (refuse_foreign_file) never
costs the process its locks on the ledger.

Found running `meterline serve`: every request checked the ledger file by opening and
closing it in Python, which drops every POSIX lock the process holds on the file, its
SQLite connections' too (sqlite.org/howtocorrupt.html, 2.2). The next `meterline apikeys
create` then deleted the WAL under the service at its close, and the service kept reading
an old snapshot: a key revoked afterwards stayed live, a key created afterwards was
refused, and a write of another process made then was lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from meterline.connections import NotAStore, refuse_foreign_file

_WRITE_AND_CLOSE = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode = WAL")
c.execute("INSERT INTO k VALUES (2)")
c.close()
"""


def test_the_check_keeps_the_process_locks_on_a_live_wal_ledger(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    held = sqlite3.connect(db, isolation_level=None)
    held.execute("PRAGMA journal_mode = WAL")
    held.execute("CREATE TABLE k (v INTEGER)")
    held.execute("INSERT INTO k VALUES (1)")

    refuse_foreign_file(f"sqlite:///{db}")  # as each request of the service does

    subprocess.run([sys.executable, "-c", _WRITE_AND_CLOSE, str(db)], check=True)
    # Another process's last close deletes the WAL only when no one else holds the
    # ledger: this process still does, so the WAL stays and its write is seen here.
    assert (tmp_path / "ledger.db-wal").exists()
    assert held.execute("SELECT count(*) FROM k").fetchone() == (2,)
    held.close()


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_text("hello\n")
    with pytest.raises(NotAStore, match="is not a SQLite database"):
        refuse_foreign_file(f"sqlite:///{garbage}")
    assert garbage.read_text() == "hello\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.db"]


def test_an_empty_file_and_a_missing_one_pass(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    refuse_foreign_file(f"sqlite:///{empty}")
    assert empty.stat().st_size == 0
    refuse_foreign_file(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()
