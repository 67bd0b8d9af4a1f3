"""The embedded backend waits for another process's folder lock instead of failing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HOLDER = """
import sys, time
from meters.warehouse import connect
wh = connect("chdb://" + sys.argv[1], lock_timeout_s=30)
wh.command("CREATE TABLE IF NOT EXISTS held (a UInt8) ENGINE = MergeTree ORDER BY a")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
wh.command("INSERT INTO held VALUES (1)")
wh.close()
"""

WAITER = """
import json, sys, time
from meters.warehouse.base import WarehouseLockTimeout
from meters.warehouse import connect
start = time.monotonic()
try:
    wh = connect("chdb://" + sys.argv[1], lock_timeout_s=float(sys.argv[2]))
    rows = wh.query_rows("SELECT count() FROM held")
    print(json.dumps({"ok": True, "waited": time.monotonic() - start, "rows": rows[0][0]}))
except WarehouseLockTimeout as exc:
    print(json.dumps({"ok": False, "waited": time.monotonic() - start, "error": str(exc)}))
"""


def _hold(folder: Path, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _wait(folder: Path, timeout: float) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", WAITER, str(folder), str(timeout)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_waits_for_the_lock_then_sees_the_data(tmp_path: Path) -> None:
    holder = _hold(tmp_path, 3)
    started = time.monotonic()
    result = _wait(tmp_path, 60)
    holder.wait(timeout=60)
    assert result["ok"] is True
    assert result["rows"] == 1  # it opened only after the holder wrote and released
    assert time.monotonic() - started >= 1.0


def test_lock_wait_times_out_with_a_clear_error(tmp_path: Path) -> None:
    holder = _hold(tmp_path, 6)
    try:
        result = _wait(tmp_path, 0.5)
    finally:
        holder.wait(timeout=60)
    assert result["ok"] is False
    assert "locked by another process" in str(result["error"])
    assert "METERLINE_WAREHOUSE_LOCK_TIMEOUT_S" in str(result["error"])
