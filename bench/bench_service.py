"""Benchmark of `POST /v1/events` (issue 17): events per second the service accepts with
1, 8 and 64 concurrent clients sending batches of 1, 100 and 1,000 events, against the
file ingest (`meterline ingest`) of the same number of events.

    .venv/bin/python bench/bench_service.py                      # every cell, 10 s each
    .venv/bin/python bench/bench_service.py --clients 8 --batches 1000 --seconds 20

Runs by hand, not in the test suite. It makes a fresh embedded warehouse and SQLite ledger
in a temporary folder (`meterline init`, `catalog load`, `apikeys create`), starts
`meterline serve` on a free port in a process of its own (the rate limit lifted, flush
settings from --flush-events/--flush-ms), and for each cell has the clients (threads, one
httpx connection each) send NDJSON batches of new events for --seconds; it counts what
came back accepted and the latency of each request (p50, p99). Then the file ingest: the
same number of events as the largest cell stored, as one JSON-lines file into a fresh
warehouse, by `meterline ingest` (a process of its own, timed from start to end, the
start-up included, as a nightly run pays it).

The clients run on the same machine as the service, and take CPU from it: on a machine
of 2 shared cores the numbers are a floor. Target (issue 17): 50,000 events/s at batches
of 1,000.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
METERS = ("fin_resolution",)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def meterline(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "meterline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"meterline {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def events(n: int, prefix: str) -> bytes:
    """`n` new events of the last day (inside the ingest window), as NDJSON."""
    base = datetime.now(UTC) - timedelta(days=1)
    lines = []
    for i in range(n):
        lines.append(
            json.dumps(
                {
                    "event_id": f"{prefix}-{i}",
                    "customer_id": f"cus_{i % 5000:05d}",
                    "meter": "fin_resolution",
                    "timestamp": (base + timedelta(seconds=i % 80_000)).isoformat(),
                    "properties": {"channel": ("chat", "email", "phone")[i % 3]},
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


def stores(folder: Path) -> dict[str, str]:
    return {
        "METERLINE_WAREHOUSE_URL": f"chdb://{folder / 'warehouse'}",
        "METERLINE_LEDGER_URL": f"sqlite:///{folder / 'ledger.db'}",
    }


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    return env | {"PYTHONPATH": str(ROOT)}


def run_cell(base: str, token: str, clients: int, batch: int, seconds: float) -> dict[str, float]:
    accepted = 0
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        nonlocal accepted
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
        with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
            k = 0
            while k == 0 or time.monotonic() < stop:  # at least one request each
                body = events(batch, f"c{clients}b{batch}t{n}r{k}-{uuid.uuid4().hex[:6]}")
                k += 1
                began = time.monotonic()
                response = http.post("/v1/events", content=body)
                took = time.monotonic() - began
                if response.status_code != 200:
                    raise SystemExit(f"HTTP {response.status_code}: {response.text[:300]}")
                with lock:
                    accepted += int(response.json()["accepted"])
                    latencies.append(took)

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    latencies.sort()
    return {
        "events": accepted,
        "requests": len(latencies),
        "seconds": wall,
        "events_per_s": accepted / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def file_ingest(folder: Path, n: int) -> dict[str, float]:
    folder.mkdir()
    env = base_env() | stores(folder)
    meterline(["init"], env, folder)
    meterline(["catalog", "load"], env, folder)
    path = folder / "events.jsonl"
    path.write_bytes(events(n, f"file-{uuid.uuid4().hex[:6]}"))
    began = time.monotonic()
    report = json.loads(meterline(["ingest", str(path), "--json", "--quiet"], env, folder))
    wall = time.monotonic() - began
    return {
        "events": report["accepted"],
        "seconds": wall,
        "events_per_s": report["accepted"] / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--seconds", type=float, default=10.0, help="per cell")
    parser.add_argument("--flush-events", type=int, default=50_000)
    parser.add_argument("--flush-ms", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="meterline-bench-service-") as tmp:
        folder = Path(tmp) / "service"
        folder.mkdir()
        env = base_env() | stores(folder)
        meterline(["init"], env, folder)
        meterline(["catalog", "load"], env, folder)
        created = json.loads(
            meterline(
                ["apikeys", "create", "--name", "bench", "--scope", "ingest", "--json"], env, folder
            )
        )
        token = created["token"]
        port = free_port()
        server_env = env | {
            "METERLINE_SERVICE_RATE_PER_S": "1000000",
            "METERLINE_SERVICE_RATE_BURST": "1000000",
            "METERLINE_SERVICE_FLUSH_EVENTS": str(args.flush_events),
            "METERLINE_SERVICE_FLUSH_MS": str(args.flush_ms),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "meterline.cli", "serve", "--port", str(port)],
            cwd=folder,
            env=server_env,
            stdout=subprocess.DEVNULL,
            stderr=(folder / "serve.log").open("w"),
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit((folder / "serve.log").read_text())
                time.sleep(0.2)
            # One request first: the engine's first queries compile what later ones reuse.
            run_cell(base, token, 1, 10, 0.1)
            print(
                f"{'clients':>7} {'batch':>6} {'events':>9} {'requests':>8} {'events/s':>10}"
                f" {'p50 ms':>8} {'p99 ms':>8}"
            )
            largest = 0
            for clients in args.clients:
                for batch in args.batches:
                    cell = run_cell(base, token, clients, batch, args.seconds)
                    largest = max(largest, int(cell["events"]))
                    print(
                        f"{clients:>7} {batch:>6} {cell['events']:>9,.0f} {cell['requests']:>8,.0f}"
                        f" {cell['events_per_s']:>10,.0f} {cell['p50_ms']:>8.0f} {cell['p99_ms']:>8.0f}",
                        flush=True,
                    )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
        ingest = file_ingest(Path(tmp) / "file", max(largest, 1000))
        print(
            f"file ingest (meterline ingest, one JSON-lines file, process start included):"
            f" {ingest['events']:,.0f} events in {ingest['seconds']:.1f} s ="
            f" {ingest['events_per_s']:,.0f} events/s"
        )


if __name__ == "__main__":
    main()
