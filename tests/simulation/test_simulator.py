"""The simulator's own parts, without a pipeline run: worlds are a function of the seed,
their deliveries account for every row, shrinking keeps what still fails, and the command
refuses bad options with one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from meterline.cli import main
from meterline.simulation.faults import PIPELINE_FAULTS, draw
from meterline.simulation.runner import Outcome, shrink
from meterline.simulation.world import Shape, batch_of, make_world


def test_a_world_is_a_function_of_its_seed() -> None:
    assert make_world(5) == make_world(5)
    assert make_world(5) != make_world(6)
    assert draw(3, PIPELINE_FAULTS, 30, 33) == draw(3, PIPELINE_FAULTS, 30, 33)


def test_a_batch_shares_its_month_and_the_plan_ids_carry_the_seed() -> None:
    worlds = [make_world(s) for s in range(50, 55)]
    assert {batch_of(w.seed) for w in worlds} == {1}
    assert len({w.month for w in worlds}) == 1
    assert all(c.plan.startswith(f"s{w.seed}_") for w in worlds for c in w.customers)


def test_every_row_of_a_world_is_accounted_for() -> None:
    for seed in range(20):
        world = make_world(seed)
        rows = sum(len(d.rows) for d in world.deliveries)
        accepted = sum(d.accepted for d in world.deliveries)
        assert accepted == len(world.events) == len({e.event_id for e in world.events})
        assert rows == sum(d.accepted + d.duplicates + d.rejected for d in world.deliveries)
        if "malformed" not in world.faults and "conflicting_resend" not in world.faults:
            assert sum(d.rejected for d in world.deliveries) == 0


def test_a_shape_without_faults_draws_none() -> None:
    world = make_world(9, Shape(customers=2, input_faults=()))
    assert world.faults == () and len(world.customers) == 2
    assert all(not d.rejected and not d.duplicates for d in world.deliveries)


def test_shrink_keeps_the_smallest_shape_that_still_fails(tmp_path: Path) -> None:
    """A fake run that fails while the world has 2+ customers and the malformed fault:
    shrinking ends at 2 customers with only that input fault and no pipeline fault, and
    tries only the faults the world drew."""
    tried: list[Shape] = []

    def run(seed: int, shape: Shape, root: Path) -> Outcome:
        tried.append(shape)
        count = shape.customers if shape.customers is not None else 8
        fails = count >= 2 and "malformed" in shape.input_faults
        return Outcome(seed, shape, count, 0, [], (seed,), ["broken"] if fails else [])

    first = Outcome(4, Shape(), 8, 100, [], tuple(range(50)), ["broken"],
                    drawn=(("malformed", "reordered"), ("kill", "stripe")))
    found = shrink(first, tmp_path, budget=40, run=run)
    assert found is not None
    assert found.customers == 2
    assert found.shape.input_faults == ("malformed",)
    assert found.shape.pipeline_faults == ()
    assert found.replay == (
        "meterline simulate --replay 4 --customers 2 --input-faults malformed "
        "--pipeline-faults none"
    )
    # only the drawn faults were ever tried away
    assert all(set(s.input_faults) <= {"malformed", "reordered"} for s in tried)
    assert first.replay_batch == "meterline simulate --start 0 --seeds 50"


def test_a_seed_that_passes_alone_is_not_shrunk(tmp_path: Path) -> None:
    def run(seed: int, shape: Shape, root: Path) -> Outcome:
        return Outcome(seed, shape, 3, 0, [], (seed,), [])

    failed = Outcome(60, Shape(customers=3), 3, 10, [], tuple(range(50, 100)), ["broken"])
    assert shrink(failed, tmp_path, run=run) is None
    assert failed.replay_batch == "meterline simulate --start 50 --seeds 50 --customers 3"


def test_a_shrunk_world_keeps_the_parts_it_still_has() -> None:
    world = make_world(301)
    fewer = make_world(301, Shape(customers=1))
    assert fewer.customers[0] == world.customers[0]
    assert {e.event_id for e in fewer.events} <= {e.event_id for e in world.events}
    same = make_world(301, Shape(input_faults=world.faults))
    assert same.events == world.events and same.deliveries == world.deliveries


def test_bad_options_are_refused_with_one_line() -> None:
    runner = CliRunner()
    for args in (
        ["simulate", "--input-faults", "bogus"],
        ["simulate", "--pipeline-faults", "kill,nope"],
        ["simulate", "--seeds", "0"],
        ["simulate", "--customers", "100000"],
        ["simulate", "--replay", "3", "--seeds", "5"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert sum("error" in line.lower() for line in result.output.splitlines()) == 1


def test_outcome_json_names_the_replay(tmp_path: Path) -> None:
    outcome = Outcome(7, Shape(customers=3), 3, 100, ["malformed"], (7,), ["x"])
    doc = json.loads(json.dumps(outcome.to_json()))
    assert doc["replay"] == "meterline simulate --replay 7 --customers 3"
    assert doc["ok"] is False


def test_folders_no_store_can_live_in_are_refused_before_any_run(tmp_path: Path) -> None:
    """Found by trying to break the command: a `#` or `%` in the folder sent the stores
    elsewhere (a later run then failed), a foreign `warehouse` folder got chDB's files
    written into it, an unwritable folder failed every seed instead of the command."""
    (tmp_path / "afile").write_text("")
    (tmp_path / "foreign" / "warehouse").mkdir(parents=True)
    (tmp_path / "foreign" / "warehouse" / "readme.txt").write_text("mine")
    cases = {
        "h#1": "cannot name a store",
        "p%41": "cannot name a store",
        "q?x=1": "cannot name a store",
        "foreign": "is not a chDB warehouse folder",
        "afile/sub": "Not a directory",
        "x" * 300: "name too long",
    }
    runner = CliRunner()
    for name, words in cases.items():
        folder = tmp_path / name
        result = runner.invoke(main, ["simulate", "--seeds", "1", "--folder", str(folder)])
        assert result.exit_code == 2, (name, result.output)
        assert words in result.output, (name, result.output)
        assert "Traceback" not in result.output
    assert sorted(p.name for p in (tmp_path / "foreign" / "warehouse").iterdir()) == [
        "readme.txt"
    ]


def test_fault_lists_refuse_empty_names_and_seed_ranges_stay_replayable() -> None:
    runner = CliRunner()
    for args, words in (
        (["--input-faults", "exact_resend,"], "empty name"),
        (["--pipeline-faults", "kill,,stripe"], "empty name"),
        (["--start", str(2**31 - 1), "--seeds", "3"], "goes past seed"),
    ):
        result = runner.invoke(main, ["simulate", *args])
        assert result.exit_code == 2 and words in result.output, (args, result.output)
