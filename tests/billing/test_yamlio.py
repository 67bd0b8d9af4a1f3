"""billing.yamlio, the one reader of the YAML and JSON files people give meterline:
numbers exact from their text, the YAML 1.2 core schema, no aliases, no key twice."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

import billing
from billing import yamlio

# (as written, the value read): never a float, whatever the notation.
NUMBERS = [
    ("0.01", Decimal("0.01")),
    ("1e-2", Decimal("0.01")),
    ("0.1", Decimal("0.1")),
    ("12345678901234567890.123456789", Decimal("12345678901234567890.123456789")),
    ("-3.50", Decimal("-3.50")),
    ("1E+3", Decimal("1000")),
    ("42", 42),
]


@pytest.mark.parametrize(("written", "value"), NUMBERS)
def test_numbers_are_read_exactly_in_yaml_and_json(written: str, value: object) -> None:
    for read in (yamlio.load(f"n: {written}\n"), yamlio.load_json(f'{{"n": {written}}}')):
        assert read["n"] == value
        assert type(read["n"]) is type(value)
        if isinstance(value, Decimal):
            assert read["n"].as_tuple() == Decimal(written).as_tuple()  # digits, not a float's


def test_yaml_1_2_core_schema_not_1_1() -> None:
    doc = yamlio.load(
        "octal: 017\nunderscores: 1_000\nsexagesimal: 1:30\nnorway: NO\nswitch: on\n"
        "day: 2026-01-01\nyes: true\nnothing: ~\nempty:\n"
    )
    assert doc == {
        "octal": 17,
        "underscores": "1_000",
        "sexagesimal": "1:30",
        "norway": "NO",
        "switch": "on",
        "day": "2026-01-01",
        "yes": True,
        "nothing": None,
        "empty": None,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x 1\nb: *x\n", "line 1, column 4: YAML anchor &x is not accepted"),
        ("a: .inf\n", "line 1, column 4: .inf is not a finite number"),
        ("a: -.INF\n", ".INF is not a finite number"),
        ("a: .nan\n", ".nan is not a finite number"),
        ("a: 1e999999999\n", "the number is out of range: '1e999999999'"),
        ("a: 1\nb: 2\na: 3\n", "line 3, column 1: key 'a' appears twice in this mapping"),
        ("a: [1, 2\n", "line 2, column 1"),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),
    ],
)
def test_yaml_refusals_say_where(text: str, message: str) -> None:
    with pytest.raises(yamlio.InputError, match=message.replace("[", r"\[").replace(".", r"\.")):
        yamlio.load(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "NaN is not a number meterline accepts"),
        ('{"a": -Infinity}', "-Infinity is not a number meterline accepts"),
        ('{"a": 1, "a": 2}', "key 'a' appears twice in one object"),
        ('{"a": 1e999999999}', "the number is out of range"),
        ('{"a": ', "line 1, column 7: Expecting value"),
    ],
)
def test_json_refusals(text: str, message: str) -> None:
    with pytest.raises(yamlio.InputError, match=message):
        yamlio.load_json(text)


def test_a_billion_laughs_customers_file_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['- &a {customer_id: "lol", name: "lol"}']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"- &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "customers.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(billing.LoadError, match="YAML anchor &a is not accepted"):
        billing.read_customers(path)
    assert time.perf_counter() - started < 1.0


def test_a_customers_jsonl_line_goes_through_the_same_reader(tmp_path: Path) -> None:
    path = tmp_path / "customers.jsonl"
    path.write_text(
        '{"customer_id": "c1", "customer_id": "c2"}\n'
        '{"customer_id": "c3", "discounts": [{"percent_off": NaN}]}\n'
        '{"customer_id": \n'
    )
    with pytest.raises(billing.LoadError) as info:
        billing.read_customers(path)
    assert info.value.problems[:3] == [
        "line 1: invalid JSON: key 'customer_id' appears twice in one object; give it once",
        "line 2: invalid JSON: NaN is not a number meterline accepts",
        "line 3: invalid JSON: Expecting value (column 17)",
    ]
