"""Every `meterline` command, with bad input, holds to the exit-code table (meterline.cli.exits):
no traceback, exactly one `meterline: error:` line, and the code the table gives.

The command tree is walked, so a new command or option is checked without being listed
here; a new command must add one valid invocation to INVOCATIONS (the first test says so).
Most cases run in this process (click's CliRunner); those that open an embedded warehouse
run in a subprocess, since chDB opens one folder per process.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from meterline.cli import COMMANDS, load_command, main
from meterline.cli.exits import EXIT_CODES, ExitCode
from meterline.cli.options import Day, Id, Month, Timestamp
from meterline.cli.subscriptions import When
from meterline.settings import Settings, settings
from tests.billing.factories import write_customers
from tests.meterline.test_credits_cli import write_grants

ROOT = Path(__file__).resolve().parents[2]
PRICE = '{"currency": "USD", "model": "per_unit", "unit_amount": "0.99"}'
AS_OF = "2026-11-05T00:00:00Z"
UNREACHABLE_LEDGER = "postgresql+psycopg://nobody@127.0.0.1:1/x"
UNREACHABLE_WAREHOUSE = "clickhouse://u:p@127.0.0.1:1/db"

# One valid invocation per command, and the stores it opens (W warehouse, L ledger).
# `{tmp}`, `{customers}` and `{events}` are filled in per test. None: not run here (the
# demo runs its own embedded stores; tests/meterline/test_demo.py runs it).
INVOCATIONS: dict[tuple[str, ...], tuple[list[str], str] | None] = {
    ("demo",): None,
    ("simulate",): None,  # minutes: tests/simulation runs it
    ("init",): ([], "W"),
    ("generate",): (
        ["--customers", "1", "--start", "2026-10-01", "--days", "1", "--out", "{tmp}/gen"],
        "",
    ),
    ("ingest",): (["{events}"], "W"),
    ("rejected",): ([], "W"),
    ("rollup",): (["--day", "2026-10-01"], "W"),
    ("backfill",): (["--from", "2026-10-01", "--to", "2026-10-01"], "W"),
    ("close",): (["--period", "2026-10"], "WL"),
    ("quote",): (["--price", PRICE, "--quantity", "10"], ""),
    ("customers", "load"): (["{customers}"], "L"),
    # A dry run; Salesforce is reached only after the ledger (tests/sources run it whole).
    ("customers", "sync-salesforce"): (["--mapping", "{salesforce_mapping}", "--dry-run"], "L"),
    ("credits", "load"): (["{grants}"], "L"),
    ("credits", "grant"): (
        [
            "--grant-id",
            "g1",
            "--customer",
            "cus_00001",
            "--kind",
            "promotional",
            "--currency",
            "USD",
            "--amount",
            "10",
            "--effective-from",
            "2026-10-01",
            "--reason",
            "welcome credit",
        ],
        "L",
    ),
    ("credits", "list"): ([], "L"),
    ("credits", "balance"): (["--customer", "cus_00001"], "L"),
    ("credits", "void"): (["g1", "--as-of", AS_OF, "--reason", "sold by mistake"], "L"),
    ("subscriptions", "change"): (
        [
            "sub_00001",
            "--at",
            "2026-10-15",
            "--plan",
            "pro",
            "--tiers",
            "continue",
            "--direction",
            "upgrade",
            "--by",
            "ops",
        ],
        "L",
    ),
    ("subscriptions", "changes"): (["sub_00001"], "L"),
    ("catalog", "load"): ([], "L"),
    ("catalog", "show"): ([], "L"),
    ("invoices", "list"): ([], "L"),
    ("invoices", "show"): (["1"], "L"),
    ("invoices", "finalize"): (["--due", "--as-of", AS_OF], "L"),
    ("invoices", "void"): (["1", "--as-of", AS_OF], "L"),
    ("ledger", "migrate"): ([], "L"),
    ("ledger", "current"): ([], "L"),
    ("audit", "explain"): (["1"], "WL"),
    ("audit", "reconcile"): (["--period", "2026-10"], "WL"),
    ("audit", "rerate"): (["--period", "2026-10"], "WL"),
    ("audit", "acknowledge"): (
        ["f-0123456789ab", "--period", "2026-10", "--reason", "known stray usage"],
        "WL",
    ),
    ("statement",): (
        ["--customer", "cus_00001", "--period", "2026-10", "--out", "{tmp}/s.html"],
        "WL",
    ),
    ("outbox", "list"): ([], "L"),
    ("outbox", "deliver"): ([], "L"),
    ("outbox", "replay"): (["--from", "1"], "L"),
    ("stripe", "reconcile"): (["--period", "2026-10"], "L"),
    ("usage",): (["cus_00001", "--as-of", AS_OF], "WL"),
    ("preview",): (["cus_00001", "--as-of", AS_OF], "WL"),
    # Its stores are opened and checked before it listens; tests/service runs it.
    ("serve",): (["--port", "0"], "WL"),
    ("apikeys", "create"): (["--name", "collector", "--scope", "ingest"], "L"),
    ("apikeys", "list"): ([], "L"),
    ("apikeys", "revoke"): (["1"], "L"),
    ("alerts", "add"): (
        ["--customer", "cus_00001", "--currency", "USD", "--threshold", "500.00"],
        "L",
    ),
    ("alerts", "list"): ([], "L"),
    ("alerts", "history"): ([], "L"),
    ("alerts", "evaluate"): (["--as-of", AS_OF], "WL"),
    ("revrec", "waterfall"): (["--from", "2026-10", "--to", "2026-11"], "WL"),
    ("journal",): (["--period", "2026-10"], "WL"),
    ("export",): (["--period", "2026-10", "--to", "{tmp}/lake"], "WL"),
}


def walk(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the tree, groups included, depth first."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"{' '.join((*path, name))} is listed but cannot be loaded"
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))


ALL = list(walk(main))
LEAVES = [(path, cmd) for path, cmd in ALL if not isinstance(cmd, click.Group)]
RUNNABLE = [path for path, _ in LEAVES if INVOCATIONS.get(path) is not None]


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "error:" in line.lower()]


def assert_one_error(code: int, output: str, expected: int, *fragments: str) -> None:
    assert code == expected, f"exit {code}, expected {expected}:\n{output}"
    assert "Traceback" not in output, output
    errors = error_lines(output)
    assert len(errors) == 1, f"expected one error line:\n{output}"
    assert errors[0].startswith("meterline: error: "), errors[0]
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A working folder with the files the invocations name, and settings read afresh."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("METERLINE_"):
            monkeypatch.delenv(name)
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps(
            {
                "event_id": "e1",
                "customer_id": "cus_00001",
                "meter": "fin_resolution",
                "timestamp": "2026-10-01T12:00:00Z",
            }
        )
        + "\n"
    )
    settings.cache_clear()
    # As a user starts: the ledger's schema (`meterline init` would also create the
    # warehouse's, which opens an embedded folder: not in this process), then the
    # catalog, which every other command reads from the ledger.
    assert invoke(["ledger", "migrate"])[0] == 0
    assert invoke(["catalog", "load"])[0] == 0
    yield {
        "tmp": str(tmp_path),
        "customers": str(write_customers(tmp_path / "customers.jsonl")),
        "events": str(events),
        "grants": str(write_grants(tmp_path / "grants.yaml")),
        "salesforce_mapping": str(ROOT / "docs" / "examples" / "salesforce-cpq.yaml"),
    }
    settings.cache_clear()


def fill(arg: str, place: dict[str, str]) -> str:
    for key, value in place.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def args_of(path: tuple[str, ...], place: dict[str, str]) -> list[str]:
    entry = INVOCATIONS[path]
    assert entry is not None
    return [*path, *(fill(a, place) for a in entry[0])]


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    settings.cache_clear()
    result = CliRunner().invoke(main, args, env=env)
    settings.cache_clear()
    return result.exit_code, result.output


def run_process(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """`meterline ARGS` in its own process (for commands that open an embedded warehouse)."""
    full = (
        {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
        | env
        | {"PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    )
    done = subprocess.run(
        [sys.executable, "-m", "meterline.cli", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr


# --- the tree itself ----------------------------------------------------------------------


def test_every_command_has_an_invocation() -> None:
    missing = [" ".join(path) for path, _ in LEAVES if path not in INVOCATIONS]
    assert not missing, f"add a valid invocation to INVOCATIONS for: {missing}"


def test_every_option_has_help_text() -> None:
    bare = [
        f"{' '.join(path) or 'meterline'} {'/'.join(param.opts)}"
        for path, command in [((), main), *ALL]
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    assert not bare, f"options without help text: {bare}"


def test_help_lists_commands_with_their_own_short_help() -> None:
    for name, (_, short) in COMMANDS.items():
        assert load_command(name).get_short_help_str(limit=1000) == short, name
    code, output = invoke(["--help"])
    assert code == 0 and all(name in output for name in COMMANDS)


def test_version() -> None:
    from importlib.metadata import version

    code, output = invoke(["--version"])
    assert (code, output.strip()) == (0, f"meterline {version('meterline')}")


def test_every_name_in_the_exit_code_table_is_a_real_exception_class() -> None:
    for name in EXIT_CODES:
        module, _, attribute = name.rpartition(".")
        cls = getattr(importlib.import_module(module), attribute)
        assert isinstance(cls, type) and issubclass(cls, BaseException), name


def test_importing_the_cli_and_its_help_import_nothing_heavy() -> None:
    script = (
        "import sys\n"
        "from meterline.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('pyarrow', 'chdb', 'sqlalchemy', 'airflow', 'rich', 'pandas', 'numpy',"
        " 'pydantic', 'clickhouse_connect', 'billing', 'meters', 'rating')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- bad options, for every command ---------------------------------------------------------


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=" ".join)
def test_an_unknown_option_is_refused(path: tuple[str, ...]) -> None:
    code, output = invoke([*path, "--no-such-option"])
    assert_one_error(code, output, ExitCode.REFUSED, "--no-such-option")
    assert output.startswith(f"Usage: meterline {' '.join(path)}")


def typed_params(command: click.Command) -> Iterator[click.Parameter]:
    """Parameters whose type refuses a word: dates, numbers, choices, existing paths."""
    for param in command.params:
        kind = param.type
        if isinstance(param, click.Option) and (param.is_flag or param.hidden):
            continue
        if isinstance(kind, click.Path) and not kind.exists:
            continue
        if kind in (click.STRING, click.UNPROCESSED) or isinstance(
            kind, click.types.StringParamType
        ):
            continue
        yield param


BAD_TYPED = [
    (path, param.name)
    for path, command in LEAVES
    if path in INVOCATIONS
    for param in typed_params(command)
]


@pytest.mark.parametrize(
    ("path", "name"), BAD_TYPED, ids=lambda v: v if isinstance(v, str) else " ".join(v)
)
def test_a_bad_value_of_a_typed_parameter_is_refused(
    path: tuple[str, ...], name: str, place: dict[str, str]
) -> None:
    command = dict(LEAVES)[path]
    param = next(p for p in command.params if p.name == name)
    bad = "/nonexistent/nothing-here" if isinstance(param.type, click.Path) else "not-a-value"
    entry = INVOCATIONS[path]
    base = [fill(a, place) for a in entry[0]] if entry else []
    # An invocation lists its arguments first, then its options.
    first_option = next((i for i, a in enumerate(base) if a.startswith("-")), len(base))
    positionals, options = base[:first_option], base[first_option:]
    if isinstance(param, click.Option):
        # The bad option first, then the valid invocation without that option.
        rest, skip = [], False
        for arg in options:
            if skip:
                skip = False
                continue
            if arg in param.opts:
                skip = True
                continue
            rest.append(arg)
        args = [*path, param.opts[0], bad, *positionals, *rest]
        shown = param.opts[0]
    else:
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        index = arguments.index(param)
        values = list(positionals)
        values[index : index + 1] = [bad]
        args = [*path, *values, *options]
        shown = param.make_metavar(click.Context(command)).rstrip(".").strip("[]")
    code, output = invoke(args)
    assert_one_error(code, output, ExitCode.REFUSED, shown)


@pytest.mark.parametrize(
    "args",
    [
        ["invoices", "list", "--period", "2026-3"],
        ["close", "--period", "2026-13"],
        ["close"],
        ["audit", "reconcile", "--period", "2026-13"],
        ["audit", "rerate", "--period", "oct"],
        ["audit", "acknowledge", "not-a-finding", "--reason", "r"],
        ["statement", "--customer", "c", "--period", "oct", "--out", "x.html"],
        ["invoices", "finalize", "1", "--as-of", "2026-04-05T00:00:00"],
        ["invoices", "finalize", "1", "--as-of", AS_OF, "--grace", "forever"],
        # A grace beyond METERLINE_FINALIZE_GRACE_HOURS's range overflowed the date (exit 5).
        ["invoices", "finalize", "--due", "--as-of", AS_OF, "--grace", "999999999h"],
        ["invoices", "finalize", "--due", "--as-of", AS_OF, "--grace", "99999999999999999999d"],
        ["invoices", "finalize", "--due", "--as-of", AS_OF, "--grace", "8785h"],
        ["invoices", "finalize", "--as-of", AS_OF],
        ["backfill", "--from", "2026-10-02", "--to", "2026-10-01"],
        ["quote", "--price", "{not json", "--quantity", "1"],
        ["quote", "--price", PRICE, "--quantity", "ten"],
        ["usage"],
        ["preview", "--as-of", AS_OF],
        ["usage", "cus_00001", "--as-of", "2026-11-04T25:00:00Z"],
        ["preview", "cus_00001", "--as-of", "1999-12-31"],
        ["alerts", "add", "--currency", "USD", "--threshold", "5"],
        [
            "alerts",
            "add",
            "--customer",
            "cus_00001",
            "--plan",
            "pro",
            "--meter",
            "m",
            "--threshold",
            "5",
        ],
        ["alerts", "add", "--customer", "cus_00001", "--threshold", "5"],
        ["alerts", "add", "--customer", "cus_00001", "--currency", "USD", "--threshold", "0"],
        ["alerts", "add", "--customer", "cus_00001", "--currency", "USD", "--threshold", "ten"],
        ["alerts", "add", "--customer", "cus_00001", "--currency", "USD", "--threshold", "1.005"],
        ["alerts", "add", "--customer", "cus_00001", "--currency", "usdx", "--threshold", "1"],
        # --port is --serve's: refused before the demo runs.
        ["demo", "--port", "8081"],
        # revrec: a month, or the waterfall's months in order; options of the right command.
        ["revrec"],
        ["revrec", "waterfall", "--from", "2026-11", "--to", "2026-10"],
        ["revrec", "--period", "2026-10", "waterfall", "--from", "2026-10", "--to", "2026-10"],
        # No mapping given nor set; a mapping but no Salesforce credentials set.
        ["customers", "sync-salesforce"],
        ["customers", "sync-salesforce", "--mapping", str(ROOT / "docs/examples/salesforce-cpq.yaml")],
    ],
    ids=" ".join,
)
def test_a_bad_option_value_checked_by_the_command_is_refused(
    args: list[str], place: dict[str, str]
) -> None:
    code, output = invoke(args)
    assert_one_error(code, output, ExitCode.REFUSED)


# --- the one timestamp rule, on every --as-of and --at ------------------------------------------

TIME_OPTIONS = [
    (path, param)
    for path, command in LEAVES
    for param in command.params
    if isinstance(param, click.Option) and {"--as-of", "--at"} & set(param.opts)
]


# Instants of one subscription: a date is its midnight in the subscription's timezone
# (resolved against the ledger), as `credits grant --effective-from` reads one; a time is
# read by the one rule.
LOCAL_DATE_OPTIONS = {(("subscriptions", "change"), "--at")}


def _local_date(path: tuple[str, ...], param: click.Option) -> bool:
    return (path, param.opts[0]) in LOCAL_DATE_OPTIONS


def test_every_time_option_has_the_one_timestamp_type() -> None:
    assert len(TIME_OPTIONS) >= 5, [" ".join(p) for p, _ in TIME_OPTIONS]
    other = [
        f"{' '.join(path)} {param.opts[0]}"
        for path, param in TIME_OPTIONS
        if not isinstance(param.type, When if _local_date(path, param) else Timestamp)
    ]
    assert not other, f"time options of another type: {other}"


@pytest.mark.parametrize(
    ("path", "param"),
    TIME_OPTIONS,
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v.opts[0],
)
def test_every_time_option_reads_the_same_instant(
    path: tuple[str, ...], param: click.Option
) -> None:
    midnight = datetime(2026, 11, 4, tzinfo=UTC)
    ctx = click.Context(dict(LEAVES)[path])
    for text in ("2026-11-04", "2026-11-04T00:00:00Z", "2026-11-04T09:00:00+09:00"):
        if text == "2026-11-04" and _local_date(path, param):
            assert param.type_cast_value(ctx, text) == midnight.date(), (path, text)
            continue
        assert param.type_cast_value(ctx, text) == midnight, (path, text)


@pytest.mark.parametrize(
    ("path", "param"),
    TIME_OPTIONS,
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v.opts[0],
)
@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2026-11-04T00:00", "has no UTC offset"),
        ("2026-11-04T00:00:00", "has no UTC offset"),
        ("04/11/2026", "is not a timestamp"),
    ],
)
def test_every_time_option_refuses_a_time_without_offset(
    path: tuple[str, ...], param: click.Option, value: str, fragment: str, place: dict[str, str]
) -> None:
    code, output = invoke([*path, param.opts[0], value])
    assert_one_error(code, output, ExitCode.REFUSED, param.opts[0], fragment)


# --- missing files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["customers", "load", "/nonexistent/customers.jsonl"],
        ["catalog", "load", "/nonexistent/catalog.yaml"],
        ["quote", "--price", "/nonexistent/price.yaml", "--quantity", "1"],
    ],
    ids=" ".join,
)
def test_a_missing_input_file_is_refused(args: list[str], place: dict[str, str]) -> None:
    code, output = invoke(args)
    assert_one_error(code, output, ExitCode.REFUSED, "/nonexistent/")


def test_ingest_of_a_missing_file_is_refused(tmp_path: Path) -> None:
    env = {
        "METERLINE_WAREHOUSE_URL": f"chdb://{tmp_path / 'warehouse'}",
        "METERLINE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
    }
    assert run_process(["init"], tmp_path, env)[0] == 0
    assert run_process(["catalog", "load"], tmp_path, env)[0] == 0
    code, output = run_process(["ingest", "/nonexistent/events.jsonl"], tmp_path, env)
    assert code == ExitCode.REFUSED, output
    assert "Traceback" not in output and "/nonexistent/events.jsonl" in output


def test_a_command_before_any_catalog_is_loaded_says_to_load_one(tmp_path: Path) -> None:
    env = {
        "METERLINE_WAREHOUSE_URL": f"chdb://{tmp_path / 'warehouse'}",
        "METERLINE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
    }
    events = tmp_path / "events.jsonl"
    events.write_text("")
    assert run_process(["init"], tmp_path, env)[0] == 0
    for args in (["ingest", str(events)], ["rollup", "--day", "2026-10-01"], ["catalog", "show"]):
        code, output = run_process(args, tmp_path, env)
        assert_one_error(code, output, ExitCode.REFUSED, "run `meterline catalog load FILE` first")


# --- unreachable stores -----------------------------------------------------------------------


@pytest.mark.parametrize("path", RUNNABLE, ids=" ".join)
def test_unreachable_warehouse_and_ledger(path: tuple[str, ...], place: dict[str, str]) -> None:
    entry = INVOCATIONS[path]
    assert entry is not None
    env = {
        "METERLINE_WAREHOUSE_URL": UNREACHABLE_WAREHOUSE + "?retries=0",
        "METERLINE_LEDGER_URL": UNREACHABLE_LEDGER,
    }
    code, output = invoke(args_of(path, place), env)
    if entry[1]:
        assert_one_error(code, output, ExitCode.UNAVAILABLE, "127.0.0.1")
    else:
        assert code == ExitCode.OK and not error_lines(output), output
    assert ":p@" not in output  # the warehouse password is never shown


def test_unreachable_warehouse_retries_then_one_error_line(place: dict[str, str]) -> None:
    env = {"METERLINE_WAREHOUSE_URL": UNREACHABLE_WAREHOUSE + "?retry_backoff=0.01"}
    code, output = invoke(["rejected"], env)
    assert_one_error(code, output, ExitCode.UNAVAILABLE, "cannot reach ClickHouse at")
    # Each retry is a warning of ours; the client library's own log lines are not shown.
    warnings = [line for line in output.splitlines() if line.startswith("meterline: warning:")]
    assert len(warnings) == 3 and len(output.strip().splitlines()) == 4, output


LEDGER_ONLY = [p for p in RUNNABLE if INVOCATIONS[p] and INVOCATIONS[p][1] == "L"]  # type: ignore[index]


@pytest.mark.parametrize("path", LEDGER_ONLY, ids=" ".join)
@pytest.mark.parametrize(
    ("url", "expected", "fragment"),
    [
        ("notadialect://x", ExitCode.REFUSED, "METERLINE_LEDGER_URL"),
        ("postgresql+nodriver://x/y", ExitCode.REFUSED, "METERLINE_LEDGER_URL"),
        ("sqlite:///{tmp}/a-file/ledger.db", ExitCode.REFUSED, "a-file"),
    ],
    ids=["dialect", "driver", "folder"],
)
def test_a_misspelt_ledger_url_is_refused(
    path: tuple[str, ...], url: str, expected: int, fragment: str, place: dict[str, str]
) -> None:
    (Path(place["tmp"]) / "a-file").write_text("not a folder")
    code, output = invoke(args_of(path, place), {"METERLINE_LEDGER_URL": fill(url, place)})
    assert_one_error(code, output, expected, fragment)


# --- unknown ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["invoices", "show", "999999"], "no invoice 999999"),
        (["invoices", "finalize", "999999", "--as-of", AS_OF], "no invoice 999999"),
        (["invoices", "void", "999999", "--as-of", AS_OF], "no invoice 999999"),
        # A month with no invoice and no billing period (tests/audit/test_export.py: the
        # month not closed yet, the destination that cannot be written).
        (["export", "--period", "2026-10", "--to", "lake"], "period 2026-10: no invoice"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_an_unknown_invoice_is_not_found(
    args: list[str], fragment: str, place: dict[str, str]
) -> None:
    ledger = {"METERLINE_LEDGER_URL": f"sqlite:///{place['tmp']}/l.db"}
    assert invoke(["ledger", "migrate"], ledger)[0] == 0
    code, output = invoke(args, ledger)
    assert_one_error(code, output, ExitCode.NOT_FOUND, fragment)


@pytest.mark.slow
def test_unknown_ids_with_a_warehouse_are_not_found(tmp_path: Path) -> None:
    env = {
        "METERLINE_WAREHOUSE_URL": f"chdb://{tmp_path / 'warehouse'}",
        "METERLINE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
    }
    for setup in (["init"], ["catalog", "load"]):
        code, output = run_process(setup, tmp_path, env)
        assert code == 0, output
    cases = [
        (["audit", "explain", "999999"], "999999"),
        (["statement", "--customer", "nobody", "--period", "2026-10", "--out", "s.html"], "nobody"),
        # A customer nobody has is not an empty report that passes.
        (
            ["audit", "reconcile", "--period", "2026-10", "--customer", "nobody"],
            "no customer 'nobody'",
        ),
        (["audit", "reconcile", "--as-of", AS_OF, "--customer", "nobody"], "no customer 'nobody'"),
        (
            ["audit", "rerate", "--period", "2026-10", "--customer", "nobody"],
            "no customer 'nobody'",
        ),
        # A finding the reconcile of that scope does not list is not acknowledged.
        (
            ["audit", "acknowledge", "f-0123456789ab", "--period", "2026-10", "--reason", "r"],
            "no finding f-0123456789ab in the reconcile of 2026-10",
        ),
        (["rejected", "--ingest", "no-such-ingest"], "no-such-ingest"),
        (["usage", "nobody"], "no customer 'nobody'"),
        (["revrec", "--period", "2026-10", "--customer", "nobody"], "no customer 'nobody'"),
        (["preview", "nobody", "--as-of", AS_OF, "--json"], "no customer 'nobody'"),
    ]
    for args, fragment in cases:
        code, output = run_process(args, tmp_path, env)
        assert_one_error(code, output, ExitCode.NOT_FOUND, fragment)
    assert not list(tmp_path.glob("**/*.html"))
    # Nothing was recorded for the unknown finding.
    import sqlite3

    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        assert conn.execute("SELECT count(*) FROM finding_acknowledgements").fetchone() == (0,)


@pytest.mark.parametrize(
    "args",
    [
        ["invoices", "list", "--customer", "nobody"],
        ["invoices", "list", "--customer", "nobody", "--json"],
        ["invoices", "list", "--period", "2026-10", "--customer", "nobody"],
    ],
    ids=" ".join,
)
def test_an_unknown_customer_is_not_found(args: list[str], place: dict[str, str]) -> None:
    code, output = invoke(args)
    assert_one_error(code, output, ExitCode.NOT_FOUND, "no customer 'nobody' in the ledger")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["alerts", "add", "--customer", "nobody", "--currency", "USD", "--threshold", "5"],
            "no customer 'nobody' in the ledger",
        ),
        (
            ["alerts", "add", "--plan", "no-plan", "--currency", "USD", "--threshold", "5"],
            "no plan 'no-plan'",
        ),
        (
            ["alerts", "add", "--customer", "cus_00001", "--meter", "nope", "--threshold", "5"],
            "no meter 'nope'",
        ),
        (["alerts", "list", "--customer", "nobody"], "no customer 'nobody' in the ledger"),
        (["alerts", "history", "--alert", "999999"], "no alert 999999"),
        (["alerts", "history", "--customer", "nobody"], "no customer 'nobody' in the ledger"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_alerts_name_what_is_not_found(
    args: list[str], fragment: str, place: dict[str, str]
) -> None:
    assert invoke(["customers", "load", place["customers"]])[0] == 0
    code, output = invoke(args)
    assert_one_error(code, output, ExitCode.NOT_FOUND, fragment)


# --- stores that do not exist are never created by a command that reads them ---------------------

STORE_COMMANDS = [
    path
    for path in RUNNABLE
    if INVOCATIONS[path] and INVOCATIONS[path][1]  # type: ignore[index]
]
# The two that create stores (tests/meterline/test_schema.py runs them).
CREATORS = {("init",), ("ledger", "migrate")}


@pytest.mark.parametrize("path", [p for p in STORE_COMMANDS if p not in CREATORS], ids=" ".join)
def test_a_misspelt_store_path_is_refused_and_nothing_is_created(
    path: tuple[str, ...], place: dict[str, str]
) -> None:
    tmp = Path(place["tmp"])
    env = {
        "METERLINE_LEDGER_URL": f"sqlite:///{tmp}/nodir/typo.db",
        "METERLINE_WAREHOUSE_URL": f"chdb://{tmp}/typo",
    }
    code, output = invoke(args_of(path, place), env)
    assert_one_error(code, output, ExitCode.REFUSED, "run `meterline init`")
    line = error_lines(output)[0]
    assert any(f"{name} {env[name]}" in line for name in env), line
    assert not (tmp / "nodir").exists() and not (tmp / "typo").exists()


def test_a_relative_chdb_folder_that_does_not_exist_is_named(place: dict[str, str]) -> None:
    code, output = invoke(["rejected"], {"METERLINE_WAREHOUSE_URL": "chdb://typo"})
    assert_one_error(code, output, ExitCode.REFUSED, "METERLINE_WAREHOUSE_URL chdb://typo", "typo")
    assert not (Path(place["tmp"]) / "typo").exists()


def test_ledger_current_does_not_create_a_sqlite_file(place: dict[str, str]) -> None:
    url = f"sqlite:///{place['tmp']}/other.db"
    code, output = invoke(["ledger", "current"], {"METERLINE_LEDGER_URL": url})
    assert_one_error(code, output, ExitCode.REFUSED, url, "run `meterline init`")
    assert not (Path(place["tmp"]) / "other.db").exists()


@pytest.mark.parametrize(
    "args",
    [["init"], ["ledger", "migrate"], ["invoices", "list"], ["ledger", "current"]],
    ids=" ".join,
)
def test_a_ledger_url_naming_a_file_that_is_not_sqlite_is_refused(
    args: list[str], place: dict[str, str]
) -> None:
    """Found by the breaker: `sqlite:////etc/passwd` ended in an internal error (exit 5)."""
    garbage = Path(place["tmp"]) / "garbage.db"
    garbage.write_text("hello\n")
    url = f"sqlite:///{garbage}"
    code, output = invoke(args, {"METERLINE_LEDGER_URL": url})
    assert_one_error(code, output, ExitCode.REFUSED, url, "is not a SQLite database")
    assert garbage.read_text() == "hello\n"


@pytest.mark.parametrize("args", [["init"], ["rollup", "--day", "2026-10-01"]], ids=" ".join)
def test_a_chdb_folder_holding_other_files_is_refused_and_left_alone(
    args: list[str], place: dict[str, str]
) -> None:
    """Found by the breaker: a command pointed at a delivery folder left the engine's
    metadata/ and tmp/ in it."""
    folder = Path(place["tmp"]) / "deliveries"
    folder.mkdir()
    (folder / "events.jsonl").write_text("{}\n")
    url = f"chdb://{folder}"
    code, output = invoke(args, {"METERLINE_WAREHOUSE_URL": url})
    assert_one_error(code, output, ExitCode.REFUSED, url, "no chDB warehouse")
    assert sorted(p.name for p in folder.iterdir()) == ["events.jsonl"]


# --- values beyond their range: settings, dates, ids, counts ---------------------------------------

NUMERIC_SETTINGS = [
    name
    for name, field in Settings.model_fields.items()
    if field.annotation in (int, float) or name == "ingest_max_rejected_share"
]


def _upper_bound(name: str) -> object:
    for rule in Settings.model_fields[name].metadata:
        for attribute in ("le", "lt"):
            if getattr(rule, attribute, None) is not None:
                return getattr(rule, attribute)
    return None


def test_every_numeric_setting_has_an_upper_bound_listed_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(NUMERIC_SETTINGS) >= 6, NUMERIC_SETTINGS
    for name in NUMERIC_SETTINGS:
        bound = _upper_bound(name)
        assert bound is not None, f"METERLINE_{name.upper()} has no upper bound"
        row = next(
            (ln for ln in readme.splitlines() if ln.startswith(f"| `METERLINE_{name.upper()}`")),
            "",
        )
        assert f"{bound:,}" in row or str(bound) in row, (name, bound, row)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("METERLINE_FINALIZE_GRACE_HOURS", str(10**12)),
        ("METERLINE_INGEST_BATCH_ROWS", str(10**15)),
        ("METERLINE_MAX_EVENT_AGE_DAYS", str(10**9)),
        ("METERLINE_FUTURE_TOLERANCE_S", str(10**30)),
        ("METERLINE_WAREHOUSE_LOCK_TIMEOUT_S", "1e300"),
        ("METERLINE_WAREHOUSE_LOCK_TIMEOUT_S", "inf"),
        ("METERLINE_INGEST_MAX_REJECTED_SHARE", "2"),
        ("METERLINE_BILLING_GO_LIVE", "9999-12-31"),
        ("METERLINE_BILLING_GO_LIVE", "0001-01-01"),
    ],
)
@pytest.mark.parametrize(
    "args", [["invoices", "list"], ["close", "--period", "2026-10"]], ids=" ".join
)
def test_a_setting_beyond_its_range_is_refused_naming_it(
    name: str, value: str, args: list[str], place: dict[str, str]
) -> None:
    code, output = invoke(args, {name: value})
    assert_one_error(code, output, ExitCode.REFUSED, name)


DATE_OPTIONS = [
    (path, param)
    for path, command in LEAVES
    if INVOCATIONS.get(path) is not None
    for param in command.params
    if isinstance(param.type, Timestamp | Month | Day)
]


@pytest.mark.parametrize(
    ("path", "param"),
    DATE_OPTIONS,
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v.opts[0],
)
def test_every_date_option_refuses_dates_outside_the_range(
    path: tuple[str, ...], param: click.Option, place: dict[str, str]
) -> None:
    values = {
        Timestamp: ["9999-12-31T23:59:59Z", "0001-01-01", "0001-01-01T00:00:00+14:00"],
        Month: ["9999-12", "0001-01"],
        Day: ["0001-01-01", "9999-12-31"],
    }[type(param.type)]
    for value in values:
        code, output = invoke([*path, param.opts[0], value])
        assert_one_error(code, output, ExitCode.REFUSED, param.opts[0], "2000-01-01 to 2199-12-31")


def test_the_date_options_are_checked() -> None:
    names = {(" ".join(path), param.opts[0]) for path, param in DATE_OPTIONS}
    assert {("close", "--as-of"), ("close", "--period"), ("rollup", "--day")} <= names
    assert ("audit rerate", "--period") in names and ("backfill", "--from") in names


@pytest.mark.parametrize(
    "args",
    [
        ["close", "--as-of", "9999-12-31T23:59:59Z"],
        ["close", "--as-of", "0001-01-01"],
        ["close", "--period", "9999-12"],
        ["rollup", "--day", "0001-01-01"],
        ["audit", "reconcile", "--as-of", "9999-12-31T23:59:59Z"],
        ["invoices", "list", "--period", "9999-12"],
    ],
    ids=" ".join,
)
def test_the_extreme_dates_issue_11_found_are_refused(
    args: list[str], place: dict[str, str]
) -> None:
    code, output = invoke(args)
    assert_one_error(code, output, ExitCode.REFUSED, "outside", "2000-01-01 to 2199-12-31")


ID_PARAMS = [
    (path, param)
    for path, command in LEAVES
    for param in command.params
    if isinstance(param.type, Id)
]


def test_every_id_parameter_has_the_one_id_type() -> None:
    names = {(" ".join(path), param.name) for path, param in ID_PARAMS}
    assert {
        ("invoices show", "invoice_id"),
        ("invoices void", "invoice_id"),
        ("invoices finalize", "invoice_ids"),
        ("audit explain", "line_id"),
    } <= names
    plain_ints = [
        f"{' '.join(path)} {param.name}"
        for path, command in LEAVES
        for param in command.params
        if param.type is click.INT
    ]
    assert not plain_ints, f"whole numbers without bounds: {plain_ints}"


@pytest.mark.parametrize(
    ("path", "param"), ID_PARAMS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else v.name
)
@pytest.mark.parametrize("value", ["99999999999999999999999", "9223372036854775808", "0", "-5"])
def test_an_id_outside_the_ledgers_range_is_refused(
    path: tuple[str, ...], param: click.Argument, value: str, place: dict[str, str]
) -> None:
    entry = INVOCATIONS[path]
    assert entry is not None
    if isinstance(param, click.Option):  # an id given as an option: --from=VALUE
        flag = param.opts[0]
        rest = [fill(a, place) for a in entry[0] if a != flag and not a.isdigit()]
        code, output = invoke([*path, *rest, f"{flag}={value}"])
        assert_one_error(code, output, ExitCode.REFUSED, "ids are whole numbers from 1 to")
        return
    options = [fill(a, place) for a in entry[0] if not a.isdigit()]
    code, output = invoke([*path, "--", value] if not options else [*path, *options, "--", value])
    assert_one_error(code, output, ExitCode.REFUSED, "ids are whole numbers from 1 to")


def test_every_whole_number_option_has_an_upper_bound() -> None:
    unbounded = [
        f"{' '.join(path)} {param.opts[0]}"
        for path, command in LEAVES
        for param in command.params
        if isinstance(param.type, click.IntRange) and param.type.max is None
    ]
    assert not unbounded, f"whole-number options without an upper bound: {unbounded}"


@pytest.mark.parametrize(
    "args",
    [
        ["rejected", "--limit", str(10**30)],
        ["audit", "explain", "1", "--samples", str(10**30)],
        [
            "generate",
            "--customers",
            str(10**30),
            "--start",
            "2026-10-01",
            "--days",
            "1",
            "--out",
            "g",
        ],
        [
            "generate",
            "--customers",
            "1",
            "--start",
            "2026-10-01",
            "--days",
            str(10**30),
            "--out",
            "g",
        ],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_a_huge_count_is_refused(args: list[str], place: dict[str, str]) -> None:
    code, output = invoke(args)
    assert_one_error(code, output, ExitCode.REFUSED)


# --- catalog numbers beyond the ledger's limit -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1e28", "is beyond the largest amount the ledger holds, USD 92,233,720,368,547,758.07"),
        ('"123456789012345678901234567890"', "is beyond the largest amount the ledger holds"),
        ('"0.0000000000001"', "has more than 12 decimal places"),
    ],
)
def test_a_catalog_price_beyond_the_ledgers_limit_is_refused(
    value: str, fragment: str, place: dict[str, str]
) -> None:
    source = (ROOT / "catalog" / "intercom.yaml").read_text()
    plain = 'USD: {model: per_unit, unit_amount: "39"}'
    assert plain in source
    path = Path(place["tmp"]) / "big.yaml"
    path.write_text(source.replace(plain, f"USD: {{model: per_unit, unit_amount: {value}}}", 1))
    code, output = invoke(["catalog", "load", str(path)])
    assert code == ExitCode.REFUSED and "Traceback" not in output, output
    assert error_lines(output)[0].startswith(f"meterline: error: {path}: 1 problem(s)")
    assert "prices.USD.unit_amount: " in output and fragment in output, output


# --- bugs ---------------------------------------------------------------------------------------


def test_a_bug_is_one_line_naming_the_traceback_file(
    place: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    @click.command("boom")
    def boom() -> None:
        raise RuntimeError("cannot open postgresql://app:s3cret@db:5432/ledger")

    monkeypatch.setitem(main.commands, "boom", boom)
    code, output = invoke(["boom"])
    assert_one_error(code, output, ExitCode.INTERNAL, "internal error", "RuntimeError")
    assert "s3cret" not in output
    logs = list((Path(place["tmp"]) / ".meterline" / "logs").glob("error-*.log"))
    assert len(logs) == 1 and str(logs[0].relative_to(place["tmp"])) in output
    text = logs[0].read_text()
    assert "Traceback" in text and "RuntimeError" in text and "boom" in text
    assert "s3cret" not in text and "postgresql://app:***@db" in text
