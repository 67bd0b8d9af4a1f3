"""The CI range of the seeded simulator: seeds 0-99 (two batches of 50 worlds), through
the real `meterline simulate` command, two processes at once (one chDB folder each).
Pipeline faults are drawn per batch: batch 50 draws every kind, batch 0 kills, backfills
and fails Stripe calls, so the range covers each (asserted below). Wider ranges run by hand
(docs/simulation.md); the CI range was 0-199 until the whole suite neared its time limit.

Every seed must pass every check (meterline/simulation/checks.py); a failing seed's
replay command is in the assertion message. Across the range, every input fault and
every pipeline fault must have been drawn at least once, and kills must have struck
each kind of step, so the range proves what the README says it proves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from meterline.simulation.faults import PIPELINE_FAULTS
from meterline.simulation.world import INPUT_FAULTS

CI_SEEDS = (range(0, 50), range(50, 100))


def run(seeds: range, folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "meterline.cli", "simulate", "--start", str(seeds.start),
         "--seeds", str(len(seeds)), "--json", "--no-shrink", "--folder", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_the_ci_seed_range_passes_every_check(tmp_path: Path) -> None:
    procs = [run(seeds, tmp_path / f"sim{n}") for n, seeds in enumerate(CI_SEEDS)]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=1800)
        assert out.strip(), err[-3000:]
        report = json.loads(out.strip().splitlines()[-1])
        outcomes += report["outcomes"]
        failed = [o for o in report["outcomes"] if not o["ok"]]
        assert not failed, "\n".join(
            f"seed {o['seed']}: {o['failures'][:5]}\n  replay: {o['replay']}\n"
            f"  replay its batch: {o['replay_batch']}"
            for o in failed[:5]
        )
        assert proc.returncode == 0, err[-3000:]
    assert sorted(o["seed"] for o in outcomes) == list(range(100))
    drawn = " | ".join(f for o in outcomes for f in o["faults"])
    for fault in (*INPUT_FAULTS, *(f for f in PIPELINE_FAULTS if f != "kill")):
        assert fault in drawn, f"no seed of the CI range drew {fault}"
    assert "killed" in drawn, "no seed of the CI range killed a step"
