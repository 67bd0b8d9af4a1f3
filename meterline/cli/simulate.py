"""`meterline simulate`: the seeded fault simulator (docs/simulation.md)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click

from meterline.output import progress
from meterline.simulation.faults import PIPELINE_FAULTS
from meterline.simulation.runner import Outcome, simulate
from meterline.simulation.world import BATCH, INPUT_FAULTS, Shape


def _faults(allowed: tuple[str, ...]) -> click.ParamType:
    class Faults(click.ParamType):
        name = "LIST"

        def convert(
            self, value: object, param: click.Parameter | None, ctx: click.Context | None
        ) -> tuple[str, ...]:
            if isinstance(value, tuple):
                return value
            text = str(value).strip()
            names = [] if text == "none" else [f.strip() for f in text.split(",")]
            if "" in names:
                self.fail(
                    f"{text!r} has an empty name; use a comma list of {', '.join(allowed)}, "
                    "or none",
                    param,
                    ctx,
                )
            chosen = tuple(dict.fromkeys(names))  # each once, in the order given
            unknown = [f for f in chosen if f not in allowed]
            if unknown:
                self.fail(
                    f"{', '.join(unknown)}: not a fault; use a comma list of "
                    f"{', '.join(allowed)}, or none",
                    param,
                    ctx,
                )
            return chosen

    return Faults()


@click.command(
    "simulate",
    short_help="Play seeded worlds through the pipeline with injected faults; check every "
    "invariant.",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 1_000_000),
    default=BATCH,
    show_default=True,
    help=f"How many seeds to run (played {BATCH} worlds at a time).",
)
@click.option(
    "--start",
    type=click.IntRange(0, 2**31 - 1),
    default=0,
    show_default=True,
    help="The first seed.",
)
@click.option(
    "--replay",
    type=click.IntRange(0, 2**31 - 1),
    default=None,
    help="Play this one seed's world alone (with its batch's pipeline faults): the command "
    "a failing seed prints.",
)
@click.option(
    "--customers",
    type=click.IntRange(1, 500),
    default=None,
    help="Customers per world (default: 2 to 6, drawn from the seed).",
)
@click.option(
    "--input-faults",
    type=_faults(INPUT_FAULTS),
    default=None,
    help=f"Only these input faults (comma list of {', '.join(INPUT_FAULTS)}; or none).",
)
@click.option(
    "--pipeline-faults",
    type=_faults(PIPELINE_FAULTS),
    default=None,
    help=f"Only these pipeline faults (comma list of {', '.join(PIPELINE_FAULTS)}; or none).",
)
@click.option("--no-shrink", is_flag=True, help="Report a failing seed as it failed.")
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".meterline/simulate"),
    show_default=True,
    help="Working folder (each run's stores are removed after it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def simulate_command(
    seeds: int,
    start: int,
    replay: int | None,
    customers: int | None,
    input_faults: tuple[str, ...] | None,
    pipeline_faults: tuple[str, ...] | None,
    no_shrink: bool,
    folder: Path,
    as_json: bool,
) -> None:
    """Play seeded worlds through the real pipeline (ingest, rollup, close, reconcile,
    delivery to the Stripe stand-in) with faults drawn from each seed, and check every
    invariant against an independent model. Exit code 1 when a seed fails; each failure
    prints the command that replays it."""
    ctx = click.get_current_context()
    if replay is not None:
        given = [
            f"--{name}"
            for name in ("seeds", "start")
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if given:
            raise click.UsageError(f"--replay plays one seed: leave out {' and '.join(given)}")
    if replay is None and start + seeds - 1 > 2**31 - 1:
        raise click.UsageError(f"--start {start} --seeds {seeds} goes past seed 2147483647")
    shape = Shape(
        customers=customers,
        input_faults=INPUT_FAULTS if input_faults is None else input_faults,
        pipeline_faults=pipeline_faults,
    )
    chosen = range(replay, replay + 1) if replay is not None else range(start, start + seeds)
    # The stand-in's and the sink's own warnings (a retried request, a parked invoice)
    # are the faults the simulator injects: its report says what mattered.
    logging.getLogger("meterline").setLevel(logging.ERROR)
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    with progress("simulate", len(chosen), quiet=as_json) as tick:

        def seed_done(outcome: Outcome) -> None:
            outcomes.append(outcome)
            tick(len(outcomes), len(chosen), f"seed {outcome.seed}")
            if not outcome.ok and not as_json:
                _print_failure(outcome)

        simulate(
            chosen,
            folder,
            shape=shape,
            shrink_failures=not no_shrink,
            on_seed=seed_done,
            on_step=lambda detail: tick(len(outcomes), len(chosen), detail),
        )
    failed = [o for o in outcomes if not o.ok]
    seconds = time.perf_counter() - started
    if as_json:
        click.echo(
            json.dumps(
                {
                    "seeds": len(outcomes),
                    "passed": len(outcomes) - len(failed),
                    "failed": len(failed),
                    "seconds": round(seconds, 1),
                    "outcomes": [o.to_json() for o in outcomes],
                }
            )
        )
    else:
        first, last = chosen[0], chosen[-1]
        seeds_text = f"seed {first}" if first == last else f"seeds {first}..{last}"
        click.echo(
            f"{seeds_text}: {len(outcomes) - len(failed):,} "
            f"passed, {len(failed):,} failed in {seconds:.0f} s; "
            f"{sum(o.customers for o in outcomes):,} customers, "
            f"{sum(o.events for o in outcomes):,} events; "
            f"worlds per fault: {_fault_counts(outcomes)}"
        )
    if failed:
        raise SystemExit(1)


def _fault_counts(outcomes: list[Outcome]) -> str:
    """How many worlds each kind of fault hit ("killed rollup 100": the worlds of the
    batches in which a rollup was killed)."""
    counts: dict[str, int] = {}
    for o in outcomes:
        kinds = set()
        for fault in o.faults:
            words = fault.split()
            if words[0] == "kill":  # "kill rollup#4 at P: killed" (or "point not reached")
                if fault.endswith(": killed"):
                    kinds.add(f"killed {words[1].split('#')[0]}")
                continue
            if words[0] == "stripe":
                kinds.add(f"{words[0]} {words[1].split('#')[0]}")
            else:
                kinds.add(fault)
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"


def _print_failure(outcome: Outcome) -> None:
    click.echo(
        f"seed {outcome.seed} FAILED ({len(outcome.failures)} finding(s); "
        f"{outcome.customers} customer(s), faults: {', '.join(outcome.faults) or 'none'}):",
        err=True,
    )
    for line in outcome.failures[:10]:
        click.echo(f"  {line}", err=True)
    click.echo(f"  replay its batch as it ran: {outcome.replay_batch}", err=True)
    click.echo(f"  replay the world alone: {outcome.replay}", err=True)
    shrunk = outcome.shrunk
    if shrunk is not None:
        click.echo(
            f"  shrunk: {shrunk.customers} customer(s), faults "
            f"{', '.join(shrunk.faults) or 'none'}, still failing with "
            f"{shrunk.failures[0] if shrunk.failures else '?'}",
            err=True,
        )
        click.echo(f"  replay the shrunk world: {shrunk.replay}", err=True)
