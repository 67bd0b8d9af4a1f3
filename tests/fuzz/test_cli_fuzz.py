"""Hostile files through the real command line (issue 14, fuzzed input): `meterline
catalog load`, `customers load` and `ingest`, each in a process of its own on an embedded
warehouse and a SQLite ledger of the test's own, with inputs of every kind the fuzz tests
found or throw (YAML tags, control characters, alias bombs, deep nesting, bytes that are
not UTF-8, a CSV header with a carriage return in it, a damaged Parquet file, a file of
garbage lines).

Each must be refused (exit code 2) or, for ingest, end with its findings (exit code 1),
with exactly one `meterline: error:` line (indented detail lines may follow it), never a
traceback or an internal error (exit code 5), and within a bounded time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.billing.factories import CATALOG, CUSTOMERS
from tests.fuzz.common import ALIAS_BOMB, as_csv, as_yaml

ROOT = Path(__file__).resolve().parents[2]
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`meterline ARGS` in a process of its own, on a warehouse and ledger made by
    `meterline init` with the demo catalog loaded: (exit code, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")} | {
        "METERLINE_WAREHOUSE_URL": f"chdb://{folder / 'warehouse'}",
        "METERLINE_LEDGER_URL": f"sqlite:///{folder / 'ledger.db'}",
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "120",
    }

    def invoke(*args: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "meterline.cli", *args],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,  # nothing hangs
        )
        return done.returncode, done.stdout, done.stderr

    for args in (("init",), ("catalog", "load", str(CATALOG))):
        code, out, err = invoke(*args)
        assert code == 0, out + err
    return invoke


def refused(code: int, out: str, err: str, expected: int = 2, errors: int = 1) -> str:
    """The error line of a refusal (exit code `expected`), checked: no traceback, no
    internal error, detail lines indented under it; `errors` lines for as many errors
    (ingest says each unreadable file in a line of its own)."""
    assert "Traceback" not in out + err, out + err
    assert code == expected, f"exit code {code}, not {expected}:\n{out}{err}"
    lines = err.splitlines()
    heads = [line for line in lines if line.startswith("meterline: error: ")]
    assert len(heads) == errors, err
    assert lines[0] == heads[0], err
    assert all(line.startswith("  ") for line in lines if line not in heads), err
    assert "internal error" not in err
    return err


SEED = CATALOG.read_bytes()


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        # faults the fuzzer found: an explicit YAML tag of a type outside the core schema,
        # a control character (each was an internal error, exit code 5)
        (
            "tag.yaml",
            SEED.replace(b'"2026-01-01"', b"!!timestamp nope", 1),
            "line 33, column 29: the YAML tag !!timestamp is not accepted",
        ),
        (
            "control.yaml",
            SEED.replace(b"half_up", b"half\x07up", 1),
            "line 5, column 20: the character U+0007 is not allowed in YAML",
        ),
        ("bomb.yaml", b"\xef\xbb\xbf" + ALIAS_BOMB.encode(), "YAML anchor &a is not accepted"),
    ],
)
def test_catalog_load_refuses_a_hostile_file_in_one_line(
    run: Run, tmp_path: Path, name: str, data: bytes, words: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    err = refused(*run("catalog", "load", str(path)))
    assert words in err


def test_customers_load_refuses_hostile_files_naming_line_and_field(
    run: Run, tmp_path: Path
) -> None:
    tagged = tmp_path / "customers.yaml"
    tagged.write_bytes(as_yaml(CUSTOMERS).replace(b"'2026-01-01'", b"!!timestamp 2026-02-30", 1))
    err = refused(*run("customers", "load", str(tagged)))
    assert "nothing was loaded" in err
    assert "line 8: invalid YAML: line 8, column 10: the YAML tag !!timestamp" in err
    garbage = tmp_path / "customers.csv"
    garbage.write_bytes(as_csv(CUSTOMERS)[:-40] + b"\xff\x00\r\n\x00,,,\r\n")
    err = refused(*run("customers", "load", str(garbage)))
    assert "line 4: is not UTF-8 text" in err


def test_ingest_names_each_unreadable_file_and_ingests_the_others(run: Run, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(
        '{"event_id":"g1","customer_id":"c1","meter":"fin_resolution",'
        '"timestamp":"2026-11-20T10:00:00Z"}\n'
    )
    header = tmp_path / "header.csv"  # a fault the fuzzer found (an internal error)
    header.write_bytes(b"event_id,customer_id\r,meter,timestamp\ne1,c1,fin_resolution,x\n")
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1" + bytes(range(256)) * 3)
    code, out, err = run("ingest", "--as-of", "2026-11-25", str(good), str(header), str(damaged))
    err = refused(code, out, err, errors=2)
    assert "header.csv: the header (line 1) is not one line of column names" in err
    assert "damaged.parquet: not a readable Parquet file" in err
    assert "received 1 = accepted 1 + duplicates 0 + rejected 0: balanced" in out


def test_ingest_of_garbage_rejects_every_row_with_its_findings(run: Run, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(
        b"\xef\xbb\xbf\x00\xff\n{" + b"[" * 5000 + b"\n" + b'{"value": NaN}\n' + ALIAS_BOMB.encode()
    )
    code, out, err = run("ingest", "--as-of", "2026-11-25", str(garbage))
    err = refused(code, out, err, expected=1)
    assert "every row was rejected" in err
    assert "balanced" in out
