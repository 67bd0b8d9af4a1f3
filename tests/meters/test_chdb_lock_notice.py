"""A wait for another process's chDB folder lock is said once, not silence: a command run
while `meterline serve` held the folder waited METERLINE_WAREHOUSE_LOCK_TIMEOUT_S (300 s)
without a word before its error. Pure: the lock and chDB's connect are stubbed
(tests/meters/test_chdb_lock.py waits on a real lock)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from meters.warehouse import chdb as backend


def test_a_lock_wait_is_announced_once_then_the_engine_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    held = iter([True, True, True, False])
    opened: list[str] = []
    monkeypatch.setattr(backend, "_held_by_another_process", lambda path: next(held))
    monkeypatch.setattr(backend.chdb, "connect", lambda path: opened.append(path) or object())
    monkeypatch.setattr(backend.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(backend, "_engine", None)
    monkeypatch.setattr(backend, "_engine_path", None)
    monkeypatch.setattr(backend, "_engine_users", 0)
    folder = str(tmp_path / "warehouse")
    with caplog.at_level(logging.WARNING, logger="meters.warehouse.chdb"):
        backend._open_engine(folder, 300)
    assert opened == [folder]
    (record,) = caplog.records
    assert "in use by another process" in record.getMessage()
    assert "meterline serve" in record.getMessage() and "300s" in record.getMessage()


def test_no_notice_when_the_folder_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(backend, "_held_by_another_process", lambda path: False)
    monkeypatch.setattr(backend.chdb, "connect", lambda path: object())
    monkeypatch.setattr(backend, "_engine", None)
    monkeypatch.setattr(backend, "_engine_path", None)
    monkeypatch.setattr(backend, "_engine_users", 0)
    with caplog.at_level(logging.WARNING, logger="meters.warehouse.chdb"):
        backend._open_engine(str(tmp_path / "warehouse"), 300)
    assert caplog.records == []
