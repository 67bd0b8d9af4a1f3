"""The pipeline faults a seed may draw, and where a kill may strike.

Drawn from their own random stream (`random.Random(f"{seed}:pipeline")`) so that
shrinking the world's input faults does not change the pipeline's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

PIPELINE_FAULTS = (
    "kill",  # SIGKILL of a step's process at a crash point, then the retry
    "overlap",  # two closes of the same moment at once
    "rerun",  # a step that succeeded run again (a retried task, a second trigger)
    "backfill",  # a backfill over days already rolled up
    "stripe",  # Stripe drops answers, fails with 500, limits with 429, times out
)

#: Crash points per step kind (meters/crashpoints.py lists where each is placed);
#: ":n" is the n-th time the point is reached.
CRASH_POINTS = {
    "ingest": (
        "ingest.after_begin",
        "ingest.after_classify",
        "ingest.after_events",
        "ingest.after_ids",
        "ingest.after_rejected",
        "ingest.after_log",
        "ingest.before_commit",
    ),
    "rollup": ("rollup.after_staging", "rollup.after_swap", "rollup.after_day"),
    "close": ("close.after_post", "close.after_finalize"),
    "deliver": (
        "deliver.after_send",
        "deliver.after_send:3",
        "stripe.after_lines",
        "stripe.after_lines:2",
    ),
}

STRIPE_FAULTS = ("drop_after_forward", "error_500", "rate_limit", "delay")


@dataclass(frozen=True)
class Kill:
    step: str  # "ingest", "rollup", "close" or "deliver"
    nth: int  # which step of that kind (0 = the first)
    point: str


@dataclass(frozen=True)
class PipelinePlan:
    faults: tuple[str, ...]
    kills: tuple[Kill, ...] = ()
    #: (fault, path prefix, times)
    stripe: tuple[tuple[str, str, int], ...] = field(default=())

    def describe(self) -> list[str]:
        out = [f for f in self.faults if f not in ("kill", "stripe")]
        out += [f"kill {k.step}#{k.nth} at {k.point}" for k in self.kills]
        out += [f"stripe {fault} x{times} on {path}" for fault, path, times in self.stripe]
        return out


def draw(seed: int, allowed: tuple[str, ...], ingests: int, rollups: int) -> PipelinePlan:
    """The pipeline faults of batch `seed`. Every choice is drawn whatever `allowed` says
    (then kept only when allowed), and a kill strikes the step at the same share of its
    kind's steps, so a replay with fewer faults or fewer worlds keeps the others."""
    rng = random.Random(f"{seed}:pipeline")
    decisions = {f: rng.random() for f in PIPELINE_FAULTS}
    chosen = tuple(f for f in PIPELINE_FAULTS if f in allowed and decisions[f] < 0.6)
    kills: dict[tuple[str, int], Kill] = {}
    # one to three steps die, each at most once (its retry then runs to the end)
    for step in rng.sample(("ingest", "rollup", "close", "deliver"), rng.randint(1, 3)):
        count = {"ingest": ingests, "rollup": rollups}.get(step, 2)
        nth = min(int(rng.random() * count), max(count - 1, 0))
        point = rng.choice(CRASH_POINTS[step])
        if "kill" in chosen:
            kills[(step, nth)] = Kill(step, nth, point)
    stripe: list[tuple[str, str, int]] = []
    for _ in range(rng.randint(1, 4)):
        fault = rng.choice(STRIPE_FAULTS)
        path = rng.choice(("/v1/invoices", "/v1/customers", "/v1/invoices/"))
        times = rng.randint(1, 2)
        if "stripe" in chosen:
            stripe.append((fault, path, 1 if fault == "delay" else times))
    return PipelinePlan(chosen, tuple(kills.values()), tuple(stripe))
