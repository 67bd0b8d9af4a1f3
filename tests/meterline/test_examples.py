"""The example files under docs/examples/ load on the ledger they are written for."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meterline.demo.run import DemoConfig
from meterline.demo.synthetic import GeneratorConfig
from meterline.demo.synthetic.customers import make_population, read_catalog_shape
from tests.billing.factories import write_customers
from tests.meterline.test_credits_cli import invoke

ROOT = Path(__file__).resolve().parents[2]
GRANTS = ROOT / "docs" / "examples" / "grants.yaml"


@pytest.fixture
def demo_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ledger with the demo catalog and the demo's customers that the grants name
    (the population `meterline demo` generates with its defaults)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("METERLINE_"):
            monkeypatch.delenv(name)
    demo = DemoConfig()
    config = GeneratorConfig(
        customers=demo.customers, start=demo.start, days=demo.days, seed=demo.seed, out=tmp_path
    )
    catalog = ROOT / "catalog" / "intercom.yaml"
    population = make_population(config, read_catalog_shape(catalog))
    named = {g["customer_id"] for g in yaml.safe_load(GRANTS.read_text())}
    records = [r for r in population.records if r["customer_id"] in named]
    assert len(records) == len(named)
    for args in (
        ["ledger", "migrate"],
        ["catalog", "load", str(catalog)],
        ["customers", "load", str(write_customers(tmp_path / "customers.jsonl", records))],
    ):
        code, output = invoke(args)
        assert code == 0, output
    yield tmp_path


def test_the_example_grants_load_on_the_demo_ledger(demo_ledger: Path) -> None:
    code, output = invoke(["credits", "load", str(GRANTS), "--by", "ops"])
    assert (code, output) == (
        0,
        f"{GRANTS}: 3 grant(s): 3 created, 0 already in the ledger as given\n",
    )
    code, output = invoke(["credits", "list", "--json"])
    assert code == 0, output
    grants = {g["grant_id"]: g for g in json.loads(output)["grants"]}
    assert set(grants) == {"cus_00001_commit_2026", "cus_00002_welcome", "sub_00003_seat_goodwill"}
    # cus_00001 is in New York: its dates are midnight there
    assert grants["cus_00001_commit_2026"]["effective_from"] == "2026-10-01T04:00:00Z"
    assert invoke(["credits", "load", str(GRANTS), "--by", "ops"])[1].endswith(
        "0 created, 3 already in the ledger as given\n"
    )


README_COMMANDS = [
    ("credits", "load"),
    ("credits", "grant"),
    ("credits", "list"),
    ("credits", "balance"),
    ("credits", "void"),
    ("subscriptions", "change"),
    ("subscriptions", "changes"),
]


@pytest.mark.parametrize("path", README_COMMANDS, ids=" ".join)
def test_the_readme_command_list_gives_each_commands_required_options(
    path: tuple[str, str],
) -> None:
    """The command list showed `credits ... void GRANT_ID` without its required --as-of
    and --reason, and `subscriptions change|changes` only under the billing rules."""
    import click

    from meterline.cli import load_command

    readme = (ROOT / "README.md").read_text()
    block = readme.split("\nmeterline --help", 1)[1].split("```", 1)[0]
    # a command's synopsis: its line and the continuation lines after it
    synopsis = ""
    for chunk in block.split("\nmeterline ")[1:]:
        words = chunk.split()
        if words[0] == path[0] and path[1] in (w.strip("|") for w in words[1:]):
            synopsis += chunk
    assert synopsis, f"meterline {' '.join(path)} is not in the README's command list"
    group = load_command(path[0])
    assert isinstance(group, click.Group)
    command = group.commands[path[1]]
    required = [p.opts[0] for p in command.params if p.required and isinstance(p, click.Option)]
    missing = [opt for opt in required if opt not in synopsis]
    assert not missing, (path, missing)
