"""`meterline quote`, through click's CliRunner: the pricing calculator's contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from meterline.cli.quote import quote

FIN = '{"currency": "USD", "model": "per_unit", "unit_amount": "0.99"}'
TIERED_YAML = """\
currency: usd
model: graduated
tiers:
  - {up_to: 1000, unit_amount: "0.99"}
  - {up_to: 10000, unit_amount: "0.89"}
  - {up_to: null, unit_amount: "0.79"}
"""


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(quote, list(args))
    return result.exit_code, result.stdout, result.output


def test_json_output_is_exactly_one_object() -> None:
    code, stdout, _ = _invoke("--price", FIN, "--quantity", "1500", "--json")
    assert code == 0
    assert stdout.count("\n") == 1
    payload = json.loads(stdout)
    assert payload["currency"] == "USD"
    assert payload["quantity"] == "1500"
    assert payload["amount"] == "1485.00"
    assert payload["amount_precise"] == "1485.00"
    assert payload["breakdown"] == [
        {
            "kind": "unit",
            "version": None,
            "tier": None,
            "range_from": "0",
            "range_to": "1500",
            "units": "1500",
            "blocks": None,
            "unit_amount": "0.99",
            "flat_amount": "0",
            "amount": "1485.00",
        }
    ]
    assert payload["price"]["unit_amount"] == "0.99"
    assert "1,500 × 0.99" in payload["explanation"]


def test_yaml_file_and_human_table(tmp_path: Path) -> None:
    path = tmp_path / "fin.yaml"
    path.write_text(TIERED_YAML, encoding="utf-8")
    code, stdout, _ = _invoke("--price", str(path), "--quantity", "12000")
    assert code == 0
    assert "tier 3" in stdout
    assert "2,000" in stdout
    assert "USD 10,580.00" in stdout
    assert "quantity 12,000, graduated" in stdout


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "package.json"
    path.write_text(
        '{"currency": "USD", "model": "package", "package_size": 100, "package_amount": "5",'
        ' "free_units": "100"}',
        encoding="utf-8",
    )
    code, stdout, _ = _invoke("--price", str(path), "--quantity", "201", "--json")
    assert code == 0
    payload = json.loads(stdout)
    assert payload["amount"] == "10.00"  # Lago's package example
    assert payload["free_units"] == "100"


def test_rounding_option() -> None:
    price = '{"currency": "USD", "model": "per_unit", "unit_amount": "0.01"}'
    _, up, _ = _invoke("--price", price, "--quantity", "0.5", "--json")
    _, even, _ = _invoke("--price", price, "--quantity", "0.5", "--json", "--rounding", "half_even")
    assert json.loads(up)["amount"] == "0.01"
    assert json.loads(even)["amount"] == "0.00"
    assert json.loads(even)["amount_precise"] == "0.005"


def test_huge_and_fractional_quantities() -> None:
    _, stdout, _ = _invoke("--price", FIN, "--quantity", "1000000000000", "--json")
    assert json.loads(stdout)["amount"] == "990000000000.00"
    _, stdout, _ = _invoke("--price", FIN, "--quantity", "0.5", "--json")
    assert json.loads(stdout)["amount_precise"] == "0.495"


@pytest.mark.parametrize(
    ("price", "fragment"),
    [
        ('{"currency": "USD", "model": "per_unit", "unit_amount": NaN}', "NaN is not a number"),
        (
            '{"currency": "USD", "model": "per_unit", "unit_amount": "1", "unit_amount": "2"}',
            "key 'unit_amount' appears twice",
        ),
        ('{"currency": "USD", "model": "per_unit"}', "unit_amount is required"),
        ('{"currency": "USX", "model": "per_unit", "unit_amount": "1"}', "currency 'USX'"),
        (
            '{"currency": "USD", "model": "volume", "tiers": [{"up_to": 1000, "unit_amount": "1"},'
            ' {"up_to": 500, "unit_amount": "1"}, {"up_to": null, "unit_amount": "1"}]}',
            "tier 2: up_to 500 is not above the previous tier's 1000",
        ),
        ('{"currency": "USD", "model": ', "inline JSON is invalid"),
        ("[1, 2]", "neither a file nor an inline JSON object"),
        ("missing.yaml", "neither a file nor an inline JSON object"),
    ],
)
def test_invalid_price_exits_2_naming_the_field(price: str, fragment: str) -> None:
    code, _, output = _invoke("--price", price, "--quantity", "1")
    assert code == 2
    assert "Invalid value for '--price'" in output
    assert fragment in output
    assert "Traceback" not in output


def test_invalid_price_files_exit_2(tmp_path: Path) -> None:
    infinite = tmp_path / "infinite.yaml"
    infinite.write_text("currency: USD\nmodel: per_unit\nunit_amount: .inf\n", encoding="utf-8")
    aliased = tmp_path / "aliased.yaml"
    aliased.write_text(
        "currency: USD\nmodel: graduated\ntiers:\n  - &t {up_to: 1, unit_amount: '1'}\n  - *t\n",
        encoding="utf-8",
    )
    listed = tmp_path / "list.yaml"
    listed.write_text("- currency: USD\n", encoding="utf-8")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    for path, fragment in (
        (infinite, "line 3, column 14: .inf is not a finite number"),
        (aliased, "line 4, column 5: YAML anchor &t is not accepted"),
        (listed, "expected an object with the price fields"),
        (broken, "cannot parse"),
    ):
        code, _, output = _invoke("--price", str(path), "--quantity", "1")
        assert code == 2, output
        assert fragment in output
        assert "Traceback" not in output


@pytest.mark.parametrize(
    ("quantity", "fragment"),
    [
        ("-1", "quantity must not be negative"),
        ("abc", "quantity is not a decimal number"),
        ("1e", "quantity is not a decimal number"),
        ("1,000", "quantity is not a decimal number"),
        ("NaN", "quantity is not a decimal number"),
        ("9" * 80, "too large or too precise"),
    ],
)
def test_invalid_quantity_exits_2_naming_the_option(quantity: str, fragment: str) -> None:
    code, _, output = _invoke("--price", FIN, "--quantity", quantity)
    assert code == 2
    assert "Invalid value for '--quantity'" in output
    assert fragment in output
    assert "Traceback" not in output


def test_missing_options_and_bad_rounding_exit_2() -> None:
    assert _invoke("--quantity", "1")[0] == 2
    assert _invoke("--price", FIN)[0] == 2
    assert _invoke("--price", FIN, "--quantity", "1", "--rounding", "up")[0] == 2


# Each number as written, and the exact amounts of 3 units at that unit price (a float
# would already lose the last digits of the long one).
EXACT = [
    ("0.01", "0.01", "0.03", "0.03"),
    ("1e-2", "0.01", "0.03", "0.03"),
    ("0.1", "0.1", "0.3", "0.30"),
    (
        "12345678901234567890.123456789",
        "12345678901234567890.123456789",
        "37037036703703703670.370370367",
        "37037036703703703670.37",
    ),
]


def _quoted(number: str) -> str:
    return json.dumps({"currency": "USD", "model": "per_unit", "unit_amount": number})


def _unquoted(number: str) -> str:
    return '{"currency": "USD", "model": "per_unit", "unit_amount": ' + number + "}"


@pytest.mark.parametrize(("written", "unit", "precise", "amount"), EXACT)
def test_numbers_are_read_exactly_from_every_kind_of_input(
    tmp_path: Path, written: str, unit: str, precise: str, amount: str
) -> None:
    yaml_file = tmp_path / "price.yaml"
    yaml_file.write_text(
        f"currency: USD\nmodel: per_unit\nunit_amount: {written}\n", encoding="utf-8"
    )
    json_file = tmp_path / "price.json"
    json_file.write_text(_unquoted(written), encoding="utf-8")
    quoted_yaml = tmp_path / "quoted.yaml"
    quoted_yaml.write_text(
        f"currency: USD\nmodel: per_unit\nunit_amount: '{written}'\n", encoding="utf-8"
    )
    for price in (
        str(yaml_file),
        str(json_file),
        str(quoted_yaml),
        _unquoted(written),  # inline JSON, the number unquoted
        _quoted(written),  # inline JSON, the number as a string
    ):
        code, stdout, output = _invoke("--price", price, "--quantity", "3", "--json")
        assert code == 0, output
        payload = json.loads(stdout)
        assert payload["price"]["unit_amount"] == unit, price
        assert payload["amount_precise"] == precise, price
        assert payload["amount"] == amount, price


def test_quantity_takes_the_same_number_grammar() -> None:
    _, stdout, _ = _invoke("--price", FIN, "--quantity", "1e3", "--json")
    assert json.loads(stdout)["amount"] == "990.00"
    _, stdout, _ = _invoke("--price", FIN, "--quantity", "12345678901234567890.123456789", "--json")
    assert json.loads(stdout)["amount_precise"] == "12222222112222222211.22222222111"
