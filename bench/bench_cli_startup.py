"""Benchmark of the command line's start: `meterline --help` (subcommands are imported on
first use) against a process that imports every command module, as the CLI did before.

    .venv/bin/python bench/bench_cli_startup.py            # 15 runs of each
    .venv/bin/python bench/bench_cli_startup.py --runs 30 --importtime

Each run is a fresh interpreter (what a user waits for); the script prints the median and
the spread of wall-clock times, their ratio, and with --importtime the slowest imports of
`meterline --help` from `python -X importtime`. The target is under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELP = ["-m", "meterline.cli", "--help"]
EVERYTHING = [
    "-c",
    "import meterline.cli as c\n"
    "for name in c.COMMANDS: c.load_command(name)\n"
    "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n",
]


def timed(args: list[str], runs: int) -> list[float]:
    env = os.environ | {"PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
        )
        times.append(time.perf_counter() - began)
    return times


def slowest_imports(args: list[str], top: int) -> list[tuple[int, str]]:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line[12:].split("|"))
            if cumulative.isdigit():
                rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--importtime", action="store_true", help="Show the slowest imports.")
    args = parser.parse_args()

    timed(HELP, 2)  # warm the file cache and the bytecode
    lazy = timed(HELP, args.runs)
    eager = timed(EVERYTHING, args.runs)
    for label, times in (("meterline --help", lazy), ("every command imported", eager)):
        print(
            f"{label:>24}: median {statistics.median(times):.3f} s"
            f" (min {min(times):.3f}, max {max(times):.3f}, {len(times)} runs)"
        )
    print(f"{'ratio':>24}: {statistics.median(eager) / statistics.median(lazy):.1f}x")
    if args.importtime:
        print("slowest imports of `meterline --help` (cumulative microseconds):")
        for micros, name in slowest_imports(HELP, 10):
            print(f"  {micros:>8,}  {name}")


if __name__ == "__main__":
    main()
