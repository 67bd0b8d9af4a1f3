"""`meterline credits ...` against bad input and the documented rules (docs/credits.md):
each fault a tester found kept as a test with the right value. On SQLite and, with
METERLINE_TEST_POSTGRES_URL, PostgreSQL (the ledger_url fixture).

Every refusal is one error line with the README's exit code, never a traceback, and a
refused load leaves the ledger as it was (`credits list` shows no grant)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterline.cli.exits import ExitCode
from tests.billing.factories import write_customers
from tests.meterline.test_credits_cli import invoke

# A catalog in three currencies of 2, 0 and 3 decimals: a flat fee, a price on a count
# meter and one on a latest meter.
CATALOG = """\
rounding_mode: half_up
meters:
  - {name: fin_resolution, aggregation: count, unit: resolution}
  - {name: licences, aggregation: latest, unit: licence}
plans:
  - id: p1
    name: P1
    prices:
      - id: platform_fee
        versions:
          - effective_from: "2026-01-01"
            prices:
              USD: {model: flat, amount: "250"}
              JPY: {model: flat, amount: "25000"}
              KWD: {model: flat, amount: "25.125"}
      - id: licence
        meter: licences
        versions:
          - effective_from: "2026-01-01"
            prices:
              USD: {model: per_unit, unit_amount: "10"}
              JPY: {model: per_unit, unit_amount: "1000"}
              KWD: {model: per_unit, unit_amount: "1.5"}
      - id: fin_resolution
        meter: fin_resolution
        versions:
          - effective_from: "2026-01-01"
            prices:
              USD: {model: per_unit, unit_amount: "0.99"}
              JPY: {model: per_unit, unit_amount: "99"}
              KWD: {model: per_unit, unit_amount: "0.305"}
"""


def _customer(cid: str, currency: str, tz: str) -> dict[str, Any]:
    return {
        "customer_id": cid,
        "name": cid,
        "currency": currency,
        "timezone": tz,
        "subscription_id": cid.replace("cus", "sub"),
        "plan": "p1",
        "billing_anchor_day": 1,
        "start": "2026-01-01",
        "end": None,
        "discounts": [],
    }


CUSTOMERS = [
    _customer("cus_usd", "USD", "America/New_York"),
    _customer("cus_jpy", "JPY", "Asia/Tokyo"),
    _customer("cus_kwd", "KWD", "Asia/Kuwait"),
]


def one_error(output: str) -> str:
    assert "Traceback" not in output and "internal error" not in output, output
    errors = [ln for ln in output.splitlines() if "error:" in ln]
    assert len(errors) == 1, output
    return errors[0]


def grants() -> list[dict[str, Any]]:
    code, output = invoke(["credits", "list", "--json"])
    assert code == 0, output
    return list(json.loads(output)["grants"])


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_url: str) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("METERLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("METERLINE_LEDGER_URL", ledger_url)
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    for args in (
        ["ledger", "migrate"],
        ["catalog", "load", "catalog.yaml"],
        ["customers", "load", str(write_customers(tmp_path / "customers.jsonl", CUSTOMERS))],
    ):
        code, output = invoke(args)
        assert code == 0, output
    yield tmp_path


def row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "grant_id": "g1",
        "customer_id": "cus_usd",
        "kind": "promotional",
        "currency": "USD",
        "amount": "5",
        "effective_from": "2026-01-01",
        "reason": "r",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def load_rows(folder: Path, *rows: dict[str, Any]) -> tuple[int, str]:
    path = folder / "grants.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return invoke(["credits", "load", str(path)])


GRANT = [
    "credits",
    "grant",
    "--customer",
    "cus_usd",
    "--kind",
    "promotional",
    "--currency",
    "USD",
    "--reason",
    "r",
]


# --- numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        # A money grant beyond the ledger's largest amount (2^63-1 minor units) was
        # loaded, and then `credits list` and `balance` failed with an internal error
        # (Decimal.quantize past the default context's 28 digits).
        ({"amount": "99999999999999999999999999999999999"}, "amount: 9999"),
        ({"amount": "1e400"}, "amount:"),
        # Units were unbounded too: 1e50 units loaded, and `balance` summed them into
        # 1.000000000000000000000000000E+50 (inexact, scientific).
        ({"amount": None, "units": "1e50", "meter": "fin_resolution"}, "units:"),
        ({"amount": None, "units": "0.0000000001", "meter": "fin_resolution"}, "units:"),
        # The README's number grammar (JSON's): "1_000" is text, not 1000.
        ({"amount": "1_000"}, "amount: must be a decimal number"),
    ],
    ids=["amount_huge", "amount_1e400_text", "units_huge", "units_10_places", "underscore"],
)
def test_numbers_beyond_the_ledger_are_refused(
    cli: Path, fields: dict[str, Any], fragment: str
) -> None:
    code, output = load_rows(cli, row(**fields))
    assert code == ExitCode.REFUSED, output
    assert "nothing was loaded" in one_error(output)
    assert fragment in output, output
    assert grants() == []


@pytest.mark.parametrize(
    ("customer", "currency", "amount", "ok"),
    [
        ("cus_jpy", "JPY", "100.5", False),
        ("cus_jpy", "JPY", "100", True),
        ("cus_kwd", "KWD", "1.2345", False),
        ("cus_kwd", "KWD", "1.234", True),
    ],
)
def test_minor_units_of_the_currency(
    cli: Path, customer: str, currency: str, amount: str, ok: bool
) -> None:
    code, output = load_rows(cli, row(customer_id=customer, currency=currency, amount=amount))
    if ok:
        assert code == 0, output
        (stored,) = grants()
        assert stored["granted"] == amount
        return
    assert code == ExitCode.REFUSED
    assert f"the minor unit of {currency}" in output
    assert grants() == []


# --- field messages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected", "absent"),
    [
        # The value itself is shown, not "a str".
        ({"rollover": "yes"}, "rollover: must be true or false, not 'yes'", None),
        # A grant has no subscription end to leave empty.
        ({"effective_from": "2200-01-01"}, "effective_from: 2200-01-01 is outside", "subscription"),
        # Python's own words about timedeltas are not the person's.
        (
            {"effective_from": "2026-01-01T00:00:00+24:00"},
            "effective_from: '2026-01-01T00:00:00+24:00' is not a date YYYY-MM-DD or a time",
            "timedelta",
        ),
    ],
    ids=["rollover", "date_range", "offset"],
)
def test_field_messages_say_what_is_wrong(
    cli: Path, fields: dict[str, Any], expected: str, absent: str | None
) -> None:
    code, output = load_rows(cli, row(**fields))
    assert code == ExitCode.REFUSED, output
    one_error(output)
    assert expected in output, output
    if absent is not None:
        assert absent not in output, output
    assert grants() == []


def test_a_unit_grant_limited_to_a_price_of_another_meter_is_refused(cli: Path) -> None:
    """A grant of fin_resolution units pays for fin_resolution lines only
    (docs/credits.md): limited to the price `licence` (meter licences) it could never pay
    anything, and was loaded."""
    code, output = load_rows(
        cli,
        row(amount=None, units="5", meter="fin_resolution", applies_to="prices:licence"),
    )
    assert code == ExitCode.REFUSED, output
    one_error(output)
    assert "line 1: applies_to: price licence is not on meter fin_resolution" in output
    assert grants() == []
    code, output = load_rows(
        cli,
        row(amount=None, units="5", meter="fin_resolution", applies_to="prices:fin_resolution"),
    )
    assert code == 0, output


def test_the_same_file_twice_and_a_duplicate_id(cli: Path) -> None:
    assert load_rows(cli, row(), row(grant_id="g2"))[0] == 0
    code, output = load_rows(cli, row(), row(grant_id="g2"))
    assert (code, "0 created, 2 already" in output) == (0, True)
    code, output = load_rows(cli, row(grant_id="g3"), row(grant_id="g3", priority=3))
    assert code == ExitCode.REFUSED
    assert "line 2: grant_id: g3 already on line 1" in output
    assert [g["grant_id"] for g in grants()] == ["g1", "g2"]


# --- balances and voids ------------------------------------------------------------------


def _balance(as_of: str | None = None) -> dict[str, Any]:
    args = ["credits", "balance", "--customer", "cus_usd", "--json"]
    code, output = invoke([*args, "--as-of", as_of] if as_of else args)
    assert code == 0, output
    (grant,) = json.loads(output)["grants"]
    return dict(grant)


def _identity(g: dict[str, Any]) -> bool:
    parts = ("consumed", "expired", "voided", "remaining")
    return Decimal(g["granted"]) == sum((Decimal(g[p]) for p in parts), Decimal(0))


def test_balance_before_the_grant_takes_effect_keeps_the_identity(cli: Path) -> None:
    """As of a moment before any grant entry, the grant held nothing: granted 0, not
    its amount with a remaining of 0 (which broke granted = consumed + expired + voided
    + remaining)."""
    code, output = invoke(
        [*GRANT, "--grant-id", "g1", "--amount", "100", "--effective-from", "2026-03-01"]
    )
    assert code == 0, output
    before = _balance("2026-02-01")
    assert (before["granted"], before["remaining"]) == ("0.00", "0.00")
    assert _identity(before)
    after = _balance("2026-03-02")
    assert (after["granted"], after["remaining"]) == ("100.00", "100.00")


def test_a_void_backdated_before_the_grant_is_refused(cli: Path) -> None:
    """A void as of before the grant took effect was written, and the balance as of a
    moment between showed remaining -100.00: a balance below zero."""
    invoke([*GRANT, "--grant-id", "g1", "--amount", "100", "--effective-from", "2026-03-01"])
    code, output = invoke(["credits", "void", "g1", "--as-of", "2026-02-01", "--reason", "x"])
    assert code == ExitCode.REFUSED, output
    assert "2026-03-01T05:00:00Z" in one_error(output)
    g = _balance()
    assert (g["voided_at"], g["remaining"]) == (None, "100.00")
    # As of then or later it is voided, once.
    code, output = invoke(["credits", "void", "g1", "--as-of", "2026-03-15", "--reason", "x"])
    assert code == 0, output
    for as_of in ("2026-02-15", "2026-03-10", "2026-03-16", None):
        g = _balance(as_of)
        assert _identity(g), g
        assert not g["remaining"].startswith("-"), g
    assert (_balance("2026-03-10")["remaining"], _balance()["voided"]) == ("100.00", "100.00")
    code, output = invoke(["credits", "void", "g1", "--as-of", "2026-04-01", "--reason", "y"])
    assert code == ExitCode.REFUSED
    assert "a grant is voided once" in one_error(output)
    code, output = invoke(["credits", "void", "nope", "--as-of", "2026-04-01", "--reason", "y"])
    assert code == ExitCode.NOT_FOUND
    one_error(output)


# --- second round: messages, exit codes, immutable terms, expiry ------------------------


def test_a_refused_grant_names_its_option_not_a_file(cli: Path) -> None:
    """`credits grant` said "1 problem(s) on 1 line(s); nothing was loaded: fix them and
    load the file again / line 1: amount: ..." and `--by " "` "file: give who grants the
    credits": the command has options, not a file with lines."""
    code, output = invoke(
        [*GRANT, "--grant-id", "g1", "--amount", "-5", "--effective-from", "2026-01-01"]
    )
    assert code == ExitCode.REFUSED, output
    line = one_error(output)
    assert "--amount: must be above 0" in line, line
    assert "line 1" not in line and "file" not in line, line
    code, output = invoke(
        [*GRANT, "--grant-id", "g1", "--amount", "5", "--effective-from", "2026-01-01", "--by", " "]
    )
    assert code == ExitCode.REFUSED, output
    line = one_error(output)
    assert "--by" in line and "file" not in line, line
    # Against the ledger too: the currency is named by its option.
    code, output = invoke(
        [
            *GRANT[:6],
            "--currency",
            "EUR",
            *GRANT[8:],
            "--grant-id",
            "g1",
            "--amount",
            "5",
            "--effective-from",
            "2026-01-01",
        ]
    )
    assert code == ExitCode.REFUSED, output
    line = one_error(output)
    assert "--currency: customer cus_usd is billed in USD" in line and "line 1" not in line, line
    assert grants() == []


def test_a_grant_for_an_unknown_customer_is_not_found(cli: Path) -> None:
    """docs/credits.md: "3 an unknown customer or grant"; it exited 2."""
    args = [*GRANT, "--grant-id", "g1", "--amount", "5", "--effective-from", "2026-01-01"]
    code, output = invoke([a if a != "cus_usd" else "nobody" for a in args])
    assert code == ExitCode.NOT_FOUND, output
    assert "no customer 'nobody' in the ledger" in one_error(output)


def test_a_changed_grant_names_units_and_reason(cli: Path) -> None:
    """Changed units were reported as "other terms (amount)"; a changed reason was
    "already in the ledger as given" and the old reason silently kept."""
    unit = row(amount=None, units="10", meter="fin_resolution")
    assert load_rows(cli, unit)[0] == 0
    code, output = load_rows(cli, {**unit, "units": "11"})
    assert code == ExitCode.REFUSED, output
    assert "line 1: units: grant g1 is in the ledger with other terms (units)" in output
    code, output = load_rows(cli, {**unit, "reason": "another"})
    assert code == ExitCode.REFUSED, output
    assert "line 1: reason: grant g1 is in the ledger with other terms (reason)" in output
    assert [g["reason"] for g in grants()] == ["r"]
    # The same grant again is still no change.
    code, output = load_rows(cli, unit)
    assert code == 0 and "1 already in the ledger as given" in output, output


@pytest.mark.parametrize("fmt", ["yaml", "jsonl", "csv"])
def test_an_empty_expires_at_means_never_in_every_format(cli: Path, fmt: str) -> None:
    """`expires_at: ""` in YAML or JSONL was refused, though an empty expires_at means
    never (an empty CSV cell worked)."""
    fields = row(expires_at="")
    path = cli / f"grants.{fmt}"
    if fmt == "yaml":
        path.write_text(f"- {json.dumps(fields)}\n")
    elif fmt == "jsonl":
        path.write_text(json.dumps(fields) + "\n")
    else:
        path.write_text(",".join(fields) + "\n" + ",".join(fields.values()) + "\n")
    code, output = invoke(["credits", "load", str(path)])
    assert code == 0, output
    assert [g["expires_at"] for g in grants()] == [None]


@pytest.mark.parametrize("text", ["", "[]\n", "# nothing\n"])
def test_an_empty_grants_file_says_it_holds_no_grants(cli: Path, text: str) -> None:
    """An empty file said "1 problem(s) on 1 line(s)"."""
    path = cli / ("grants.jsonl" if text == "" else "grants.yaml")
    path.write_text(text)
    code, output = invoke(["credits", "load", str(path)])
    assert code == ExitCode.REFUSED, output
    line = one_error(output)
    assert "the file holds no grants" in line and "problem" not in line, line


def test_a_void_after_expiry_books_the_leftover_as_expired(cli: Path) -> None:
    """Voided after expires_at but before the expiry job ran, the leftover was booked
    as voided: it was lost at expires_at (breakage) and stays expired."""

    def grant_and_void(grant_id: str, amount: str, as_of: str) -> str:
        expiring = ["--effective-from", "2026-01-01", "--expires-at", "2026-03-01"]
        code, output = invoke([*GRANT, "--grant-id", grant_id, "--amount", amount, *expiring])
        assert code == 0, output
        code, output = invoke(["credits", "void", grant_id, "--as-of", as_of, "--reason", "x"])
        assert code == 0, output
        return output

    output = grant_and_void("g1", "100", "2026-03-15")
    assert "USD 0.00 returned" in output and "USD 100.00 expired unused" in output, output
    g = _balance()
    assert (g["expired"], g["voided"], g["remaining"]) == ("100.00", "0.00", "0.00")
    assert _identity(g)
    # As of between expiry and void, it had expired already.
    between = _balance("2026-03-10")
    assert (between["expired"], between["remaining"]) == ("100.00", "0.00")
    # Voided before its expiry, it is voided, not expired.
    grant_and_void("g2", "50", "2026-02-15")
    g2 = next(g for g in grants() if g["grant_id"] == "g2")
    assert (g2["expired"], g2["voided"]) == ("0.00", "50.00")


def test_a_by_name_longer_than_the_ledger_keeps_is_refused(cli: Path) -> None:
    """`credits grant|load|void --by` of 201 characters was stored on SQLite and an
    internal error (StringDataRightTruncation) on PostgreSQL: the ledger keeps 200."""
    long = "b" * 201
    one = [*GRANT, "--grant-id", "g1", "--amount", "5", "--effective-from", "2026-01-01"]
    code, output = invoke([*one, "--by", long])
    assert code == ExitCode.REFUSED
    assert one_error(output) == (
        "meterline: error: --by: a name has at most 200 characters, not 201: give a shorter"
        " one; nothing was granted"
    )
    assert grants() == []
    assert load_rows(cli, row())[0] == ExitCode.OK
    void = ["credits", "void", "g1", "--as-of", "2026-01-15", "--reason", "x", "--by"]
    code, output = invoke([*void, long])
    assert code == ExitCode.REFUSED and "nothing was voided" in one_error(output)
    assert grants()[0]["voided_at"] is None
    assert invoke([*void, "b" * 200])[0] == ExitCode.OK


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        # 20 minutes across the fall-back of New York: -40 minutes of wall time.
        (
            ("2026-11-01T01:50:00-04:00", "2026-11-01T01:10:00-05:00"),
            ("2026-11-01T06:10:00Z", "2026-11-01T06:30:00Z"),
        ),
        # 01:30 EDT to 01:30 EST: an hour, no wall time at all.
        (
            ("2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00"),
            ("2026-11-01T06:30:00Z", "2026-11-01T07:30:00Z"),
        ),
    ],
    ids=["negative-wall-time", "zero-wall-time"],
)
def test_a_term_inside_a_fall_back_hour_rolls_over_rather_than_expiring(
    cli: Path, term: tuple[str, str], expected: tuple[str, str]
) -> None:
    """A term whose local wall-clock length is zero or negative (inside a fall-back
    night's repeated hour) had a next term ending before it began: its rest expired
    (breakage) instead of rolling over. The next term is as long in elapsed time."""
    grant = row(rollover=True, effective_from=term[0], expires_at=term[1])
    assert load_rows(cli, grant)[0] == ExitCode.OK
    void = ["credits", "void", "g1", "--as-of", "2026-11-02", "--reason", "x", "--by", "b"]
    code, output = invoke(void)
    assert code == ExitCode.OK and "rolled over to g1:rollover" in output, output
    parent, child = grants()
    assert (parent["rolled_over"], parent["expired"]) == ("5.00", "0.00")
    assert (child["grant_id"], child["remaining"]) == ("g1:rollover", "5.00")
    assert (child["effective_from"], child["expires_at"]) == expected
