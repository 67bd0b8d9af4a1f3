"""Run seeds: build each world, play it with its faults, check it, and shrink a failing
one to the smallest world that still fails.

`simulate_seed(seed, shape, root)` -> Outcome; `shrink(outcome, root)` -> the smallest
failing Outcome found (fewer customers, then fewer input and pipeline faults, each
kept only when the seed still fails). Every Outcome names the one command that replays
it (`meterline simulate --replay SEED ...`).
"""

from __future__ import annotations

import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from meterline.settings import SettingsError
from meterline.simulation.faults import PIPELINE_FAULTS, draw
from meterline.simulation.world import Shape, batch_of, make_world


@dataclass
class Outcome:
    seed: int
    shape: Shape
    customers: int
    events: int
    faults: list[str]
    #: the seeds played with it (its batch, or itself alone)
    batch: tuple[int, ...] = ()
    failures: list[str] = field(default_factory=list)
    #: the wall time of its batch's run (every world of a batch shares it)
    batch_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: the fault kinds its world and its batch drew (what shrinking may drop)
    drawn: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    #: a smaller world that fails too, when shrinking found one
    shrunk: Outcome | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def replay(self) -> str:
        """The one command that plays this world again (alone, with its batch's pipeline
        faults, shrunk to its shape)."""
        return " ".join(
            filter(None, ("meterline simulate --replay", str(self.seed), self.shape.label()))
        )

    @property
    def replay_batch(self) -> str:
        """The command that plays its whole batch again, exactly as it ran."""
        return " ".join(
            filter(
                None,
                (
                    f"meterline simulate --start {self.batch[0]} --seeds {len(self.batch)}",
                    self.shape.label(),
                ),
            )
        )

    def to_json(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "customers": self.customers,
            "events": self.events,
            "faults": self.faults,
            "failures": self.failures,
            "batch": [self.batch[0], self.batch[-1]] if self.batch else [],
            "batch_seconds": round(self.batch_seconds, 2),
            "replay": (self.shrunk or self).replay,
            "replay_batch": self.replay_batch,
            "shrunk": None
            if self.shrunk is None
            else {
                "customers": self.shrunk.customers,
                "faults": self.shrunk.faults,
                "failures": self.shrunk.failures,
            },
        }


def _path_starts(prefix: str) -> Callable[[str, str], bool]:
    return lambda _method, path: path.startswith(prefix)


@contextmanager
def stripe_endpoint(seed: int, plan_faults: tuple[tuple[str, str, int], ...]) -> Iterator[str]:
    """A fresh Stripe stand-in behind the fault proxy, with the run's Stripe faults."""
    from meterline.demo.stripe_standin import StripeStandIn
    from meterline.demo.stripe_standin.faults import FaultProxy

    with StripeStandIn(seed=seed) as api, FaultProxy(api.base_url, delay=2.0) as proxy:
        for fault, prefix, times in plan_faults:
            proxy.plan(fault, times=times, when=_path_starts(prefix))
        yield proxy.base_url


def simulate_batch(
    seeds: Sequence[int],
    shape: Shape,
    root: Path,
    on_step: Callable[[str], None] | None = None,
) -> list[Outcome]:
    """Build the worlds of `seeds` (one batch: batch_of(seed) is the same for all), play
    them side by side with the batch's pipeline faults, and check each. An exception in
    the pipeline fails every world of the batch (with its last lines), never the
    simulator."""
    from meterline.simulation.checks import check_all
    from meterline.simulation.play import Player, merged_deliveries, rollup_days

    started = time.perf_counter()
    worlds = [make_world(seed, shape) for seed in seeds]
    batch = batch_of(seeds[0])
    allowed = shape.pipeline_faults if shape.pipeline_faults is not None else PIPELINE_FAULTS
    deliveries = merged_deliveries(worlds)
    ingests = sum(not d.after_close for d in deliveries)
    plan = draw(batch, allowed, ingests, len(rollup_days(worlds[0].month)))
    outcomes = {
        w.seed: Outcome(
            w.seed,
            shape,
            len(w.customers),
            len(w.events),
            [*w.faults, *(f for f in plan.describe() if not f.startswith("kill "))],
            tuple(seeds),
            drawn=(w.faults, plan.faults),
        )
        for w in worlds
    }
    name = f"run_{batch}_{uuid.uuid4().hex[:8]}"
    run_failures: list[str] = []
    try:
        with stripe_endpoint(batch, plan.stripe) as base:
            played = Player(worlds, plan, root, name, base, on_step).run()
            t0 = time.perf_counter()
            found = check_all(played, deliveries)
            played.notes.append(f"checks {time.perf_counter() - t0:.1f}s")
            run_failures = found.run
            for seed, failures in found.worlds.items():
                if seed in outcomes:
                    outcomes[seed].failures += failures
                else:
                    run_failures += [f"seed {seed} (not played): {f}" for f in failures]
            for o in outcomes.values():
                o.notes = played.notes
                o.faults += [f"kill {k}" for k in played.kills]
    except SettingsError:
        raise  # the settings or the folder, not the seed: exit code 2, one line
    except Exception as exc:
        lines = traceback.format_exception(exc)
        run_failures = [
            f"the run raised {type(exc).__name__}: {exc}".strip(),
            "".join(lines[-3:]).strip(),
        ]
    finally:
        _clean(root, name)
    seconds = time.perf_counter() - started
    for o in outcomes.values():
        o.failures = [*run_failures, *o.failures]
        o.batch_seconds = seconds
    return [outcomes[s] for s in seeds]


def simulate_seed(seed: int, shape: Shape, root: Path) -> Outcome:
    """The world of `seed` alone, with its batch's pipeline faults."""
    return simulate_batch([seed], shape, root)[0]


def _clean(root: Path, name: str) -> None:
    """Drop the run's warehouse database and ledger folder."""
    from meters.warehouse import connect

    try:
        warehouse = connect(f"chdb://{root / 'warehouse'}")
        try:
            warehouse.command(f"DROP DATABASE IF EXISTS {name}")
        finally:
            warehouse.close()
    except Exception:  # best effort: the next run of the seed starts from scratch anyway
        pass
    shutil.rmtree(root / name, ignore_errors=True)


def shrink(
    outcome: Outcome,
    root: Path,
    budget: int = 8,
    run: Callable[[int, Shape, Path], Outcome] | None = None,
) -> Outcome | None:
    """A smaller world that still fails, or None: the world alone (without its batch),
    then fewer customers, then without each fault kind it drew, keeping a change only
    while the seed still fails; at most `budget` replays. Worlds draw each part from its
    own stream (world.stream), so a shrunk world keeps what it still has."""
    play = run or simulate_seed
    seed = outcome.seed
    drawn_input, drawn_pipeline = outcome.drawn
    start = replace(outcome.shape, input_faults=drawn_input, pipeline_faults=drawn_pipeline)
    left = budget

    def still_fails(shape: Shape) -> Outcome | None:
        nonlocal left
        if left <= 0:
            return None
        left -= 1
        tried = play(seed, shape, root)
        return None if tried.ok else tried

    best = still_fails(start)
    if best is None:
        return None  # it fails only beside the other worlds of its batch
    count = best.customers
    while count > 1:
        count = max(1, count // 2)
        found = still_fails(replace(best.shape, customers=count))
        if found is None:
            break
        best = found
    for fault in drawn_input:
        kept = tuple(f for f in best.shape.input_faults if f != fault)
        best = still_fails(replace(best.shape, input_faults=kept)) or best
    for fault in drawn_pipeline:
        kept = tuple(f for f in best.shape.pipeline_faults or () if f != fault)
        best = still_fails(replace(best.shape, pipeline_faults=kept)) or best
    return best


def _labelled(report: Callable[[str], None], label: str) -> Callable[[str], None]:
    return lambda detail: report(f"{label}: {detail}")


class FolderRefused(SettingsError):
    """The working folder cannot hold the simulator's stores (exit code 2)."""


def check_folder(root: Path) -> None:
    """Refuse, before any run, a working folder the stores cannot live in: a path whose
    `#`, `?` or `%` a store URL would misread, one that cannot be created or written,
    and a `warehouse` folder holding something other than a chDB warehouse."""
    text = str(root)
    if not text.strip():
        raise FolderRefused("--folder is empty: name a folder")
    bad = sorted(set("#?%") & set(text))
    if bad:
        raise FolderRefused(
            f"{root}: a folder whose path holds {' or '.join(bad)} cannot name a store (it "
            "would be read as part of a URL); choose another --folder"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise FolderRefused(
            f"{exc.filename or root}: {exc.strerror or exc}; choose a folder you can write"
        ) from None
    warehouse = root / "warehouse"
    if warehouse.exists() and (
        not warehouse.is_dir()
        or (any(warehouse.iterdir()) and not (warehouse / "metadata").is_dir())
    ):
        raise FolderRefused(
            f"{warehouse} is not a chDB warehouse folder (it holds other files); choose "
            "another --folder"
        )


def simulate(
    seeds: range,
    root: Path,
    *,
    shape: Shape | None = None,
    shrink_failures: bool = True,
    on_seed: Callable[[Outcome], None] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> list[Outcome]:
    """Run every seed, in batches (world.BATCH); the first failing seed of a batch is
    shrunk (when asked: alone first, then smaller); every outcome is reported."""
    check_folder(root)
    outcomes = []
    batches: dict[int, list[int]] = {}
    for seed in seeds:
        batches.setdefault(batch_of(seed), []).append(seed)
    for number, group in enumerate(batches.values(), start=1):
        label = f"batch {number} of {len(batches)} (seeds {group[0]}..{group[-1]})"
        step = None if on_step is None else _labelled(on_step, label)
        played = simulate_batch(group, shape or Shape(), root, step)
        failing = [o for o in played if not o.ok]
        if failing and shrink_failures:
            # One seed per batch is shrunk: the first that fails (when the run itself
            # failed, every world did, for one cause).
            if step is not None:
                step(f"shrinking seed {failing[0].seed}")
            failing[0].shrunk = shrink(failing[0], root)
        for outcome in played:
            outcomes.append(outcome)
            if on_seed is not None:
                on_seed(outcome)
    return outcomes
