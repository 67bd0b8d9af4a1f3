"""`meterline serve` for real: uvicorn on a free port in a process of its own (with its own
embedded warehouse: chDB opens one folder per process), hit over HTTP with httpx, stopped
with SIGTERM; the events it answered for are stored when it has stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from meterline.jobs.apikeys import create_api_key
from meterline.settings import load_settings
from tests.service.conftest import prepare_ledger
from tests.service.test_events import event, ndjson

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def meterline(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def serve(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "meterline.cli", "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return server, f"http://127.0.0.1:{port}"


def wait_until_healthy(server: subprocess.Popen[str], base: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, server.communicate()[1]
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the service did not start in 120 s"
        time.sleep(0.2)


def test_meterline_serve_over_http(tmp_path: Path) -> None:
    stores = {
        "METERLINE_WAREHOUSE_URL": f"chdb://{tmp_path / 'warehouse'}",
        "METERLINE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env |= stores | {"PYTHONPATH": str(ROOT), "METERLINE_SERVICE_FLUSH_MS": "10"}
    done = meterline(["init"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    prepare_ledger(stores["METERLINE_LEDGER_URL"], tmp_path)
    config = load_settings(
        warehouse_url=stores["METERLINE_WAREHOUSE_URL"], ledger_url=stores["METERLINE_LEDGER_URL"]
    )
    token = create_api_key("e2e", ["ingest", "read"], config=config).token

    server, base = serve(env, tmp_path)
    auth = {"Authorization": f"Bearer {token}"}
    rows = [event(f"h{i}") for i in range(50)]
    try:
        wait_until_healthy(server, base)
        with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
            sent = client.post(
                "/v1/events",
                content=ndjson(rows),
                headers={"Content-Type": "application/x-ndjson"},
            )
            assert sent.status_code == 200, sent.text
            assert sent.json()["accepted"] == 50
            listed = client.get("/v1/customers/cus_00001/invoices")
            assert listed.status_code == 200 and listed.json()["invoices"] == []
            assert client.get("/openapi.json").json()["paths"]["/v1/events"]
            refused = client.get("/v1/invoices/1", headers={"Authorization": "Bearer nope"})
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            _, log = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            _, log = server.communicate()
    # uvicorn shuts down cleanly, then ends by the signal it caught (its own rule).
    assert server.returncode in (0, -signal.SIGTERM), log
    assert "meterline service stopped" in log
    assert "POST /v1/events 200" in log and "key=1:e2e" in log
    assert token not in log and token.rsplit("_", 1)[1] not in log

    # The service has let the warehouse go: the same events as a file are duplicates.
    path = tmp_path / "same.jsonl"
    path.write_bytes(ndjson(rows))
    done = meterline(["ingest", str(path), "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["received"], report["duplicates"]) == (50, 50)

    # Killed in the middle of a run (its events inserted, the run not committed): the
    # request is never answered, and nothing of it counts: the next ingest rolls the run
    # back, and the events sent again are all accepted.
    server, base = serve(env | {"METERLINE_CRASH_AT": "ingest.after_events"}, tmp_path)
    lost = [event(f"k{i}") for i in range(10)]
    try:
        wait_until_healthy(server, base)
        with pytest.raises(httpx.TransportError):
            httpx.post(
                f"{base}/v1/events",
                content=ndjson(lost),
                headers={**auth, "Content-Type": "application/x-ndjson"},
                timeout=120,
            )
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()
    assert server.returncode == -signal.SIGKILL
    path = tmp_path / "lost.jsonl"
    path.write_bytes(ndjson(lost))
    done = meterline(["ingest", str(path), "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["received"], report["accepted"]) == (10, 10)
    assert len(report["rolled_back"]) == 1 and report["rolled_back"][0]["sources"][0].startswith(
        "api:e2e:"
    )
