"""The customers loader under hostile input (issue 14, fuzzed input): the demo customers
file in JSONL, YAML and CSV, mutated byte by byte (cut short, bytes of every kind, a
byte-order mark, invalid UTF-8, NaN and infinity, exponents, negative zero, dates and
anchors at the limits, keys twice, deep nesting, YAML tags and alias bombs), random bytes,
and rows edited field by field, loaded into a ledger holding the demo catalog.

Properties: reading never raises anything but CustomersFileInvalid and never runs past
its bound; every problem names its line (0: the file as a whole) and its field; a load
is whole (every row of the file is stored as it says) or refused whole (the ledger
unchanged, the message saying nothing was loaded).
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from sqlalchemy import select

import billing
from billing import migrate
from billing.customers import CustomersFileInvalid, read_file
from billing.customers.read import DISCOUNT_FIELDS, FIELDS
from billing.db import create_ledger_engine, session_factory
from billing.models import Customer, Subscription, SubscriptionDiscount
from tests.billing.conftest import Ledger
from tests.billing.factories import CATALOG, CUSTOMERS
from tests.fuzz.common import (
    ALIAS_BOMB,
    NASTY_NUMBERS,
    NASTY_TEXTS,
    as_csv,
    as_jsonl,
    as_yaml,
    bounded,
    fuzz_settings,
    hostile_file,
    nested_json,
    nested_yaml,
    tokens_of,
)

WRITERS = {"jsonl": as_jsonl, "yaml": as_yaml, "csv": as_csv}
SEEDS = {fmt: write(CUSTOMERS) for fmt, write in WRITERS.items()}

DATES = [
    "0001-01-01",
    "1999-12-31",
    "2000-01-01",
    "2026-02-29",
    "2024-02-29",
    "2026-02-30",
    "2099-12-31",
    "2100-01-01",
    "9999-12-31",
    "2026-1-1",
    "2026-01-01T00:00:00Z",
]
ZONES = [
    "UTC",
    "Factory",
    "localtime",
    "posixrules",
    "posix/UTC",
    "right/UTC",
    "Asia/Kolkata",
    "America/St_Johns",
    "Etc/GMT+14",
    "Etc/GMT-14",
    "../../etc/passwd",
    "/etc/localtime",
    "Europe/Dublin\x00",
    "europe/dublin",
]
CURRENCIES = ["USD", "JPY", "BHD", "CLF", "XXX", "XTS", "usd", "US", "EUR ", "GBP"]
SPECIALS = [
    "!!timestamp nope",
    "!!timestamp 2026-02-30",
    "!!binary aGk=",
    "!!set {a}",
    "&a x",
    "*a",
    "{a: 1, a: 2}",
    '{"a": 1, "a": 2}',
    nested_json(600),
    nested_yaml(600),
    ALIAS_BOMB,
    "cus_NffrFeUfNV2Hib",
    "cus_",
    "send_invoice",
    "charge_automatically",
]
TOKENS = tokens_of(NASTY_NUMBERS, NASTY_TEXTS, DATES, ZONES, CURRENCIES, SPECIALS)

# Where each problem is: `line N: field: text` or `line N: text` (the record), `file: ...`.
_FIELD = re.compile(r"(file|header|row|[a-z_]+(\.[0-9]+(\.[a-z_]+)?)?)\Z")


def check_problems(exc: CustomersFileInvalid, source: str, lines: int) -> None:
    """A refusal says that nothing was loaded, then names each problem's line and field."""
    head, *rest = str(exc).splitlines()
    assert head.startswith(f"{source}: ") and "nothing was loaded" in head, head
    assert exc.found and rest
    for problem in exc.found:
        assert isinstance(problem.line, int) and 0 <= problem.line <= lines + 1, problem
        assert problem.field, problem
        if not problem.text.startswith("unknown field"):  # (named as the file has it)
            assert _FIELD.match(problem.field), f"not a field of the file: {problem!r}"
            top = problem.field.split(".")[0]
            assert top in (*FIELDS, "file", "header", "row"), problem
            if top == "discounts" and problem.field.count(".") == 2:
                assert problem.field.split(".")[2] in DISCOUNT_FIELDS, problem
        assert problem.text.strip(), problem
        shown = f"line {problem.line}" if problem.line else "file"
        assert str(problem).startswith(shown)


def read_as(fmt: str, data: bytes) -> tuple[Path, Any]:
    """read_file on `data` as a file of format `fmt`: (path, the parsed file or the
    CustomersFileInvalid)."""
    folder = Path(tempfile.mkdtemp(prefix="customers-fuzz-"))
    path = folder / f"customers.{fmt}"
    path.write_bytes(data)
    with bounded(20, "reading a customers file"):
        try:
            parsed = read_file(path)
        except CustomersFileInvalid as exc:
            return path, exc
    if parsed.problems:
        return path, CustomersFileInvalid(str(path), parsed.problems)
    return path, parsed


formats = st.sampled_from(sorted(SEEDS))


@st.composite
def hostile_customers(draw: st.DrawFn) -> tuple[str, bytes]:
    fmt = draw(formats)
    return fmt, draw(hostile_file(SEEDS[fmt], TOKENS))


@fuzz_settings(max_examples=200, deadline_s=10)
@given(case=hostile_customers())
@example(case=("yaml", SEEDS["yaml"].replace(b"2026-01-01", b"!!timestamp nope", 1)))
@example(case=("yaml", SEEDS["yaml"].replace(b"Acme 1", b"Acme\x071", 1)))
@example(case=("yaml", ALIAS_BOMB.encode()))
@example(case=("yaml", b"- " + nested_yaml(50_000).encode()))
@example(case=("jsonl", b'{"customer_id": ' + nested_json(50_000).encode() + b"}\n"))
@example(case=("jsonl", SEEDS["jsonl"].replace(b'"USD"', b"NaN", 1)))
@example(case=("jsonl", SEEDS["jsonl"].replace(b": 1,", b": 1e999999999,", 1)))
@example(case=("jsonl", SEEDS["jsonl"].replace(b": 1,", b": -0,", 1)))
@example(case=("csv", SEEDS["csv"].replace(b"Acme 1", b"Acme\x001", 1)))
@example(case=("csv", SEEDS["csv"] + b'"' + b"x" * 200_000 + b'"\r\n'))
@example(case=("csv", b"\xef\xbb\xbf" + SEEDS["csv"]))
def test_a_customers_file_is_read_or_refused_naming_line_and_field(
    case: tuple[str, bytes],
) -> None:
    fmt, data = case
    path, outcome = read_as(fmt, data)
    if isinstance(outcome, CustomersFileInvalid):
        event(f"{fmt}: refused")
        check_problems(outcome, str(path), len(data.splitlines()))
    else:
        event(f"{fmt}: read")
        assert outcome.rows


# --- loading into a ledger ------------------------------------------------------------------


@pytest.fixture
def ledger(ledger_url: str, tmp_path: Path) -> Iterator[Ledger]:
    """A ledger (SQLite, and PostgreSQL when METERLINE_TEST_POSTGRES_URL is set) with the
    demo catalog and the demo customers."""
    url = ledger_url
    engine = create_ledger_engine(url)
    migrate.upgrade(engine)
    ledger = Ledger(url, engine, session_factory(engine))
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
    path = tmp_path / "customers.jsonl"
    path.write_bytes(SEEDS["jsonl"])
    with ledger.Session.begin() as session:
        billing.load_customers_file(session, path)
    try:
        yield ledger
    finally:
        engine.dispose()


def snapshot(ledger: Ledger) -> tuple[Any, ...]:
    with ledger.Session() as session:
        return tuple(
            sorted(tuple(map(repr, r)) for r in session.execute(select(table)).all())
            for table in (
                Customer.__table__,
                Subscription.__table__,
                SubscriptionDiscount.__table__,
            )
        )


# Per field: values a file may well hold, then values at and past its limits.
GOOD: dict[str, list[Any]] = {
    "customer_id": ["cus_00001", "cus_00002", "cus_new", 7],
    "name": ["Acme 1", "Other name", "x" * 200, "Zoë & Co"],
    "currency": ["USD", "EUR", "GBP"],
    "timezone": ["UTC", "Europe/Dublin", "Asia/Tokyo", "Pacific/Kiritimati", "Etc/GMT+12"],
    "stripe_customer_id": ["cus_NffrFeUfNV2Hib", None],
    "collection_method": ["charge_automatically", None],
    "days_until_due": [None],
    "subscription_id": ["sub_00001", "sub_00002", "sub_new"],
    "plan": ["standard", "volume", "committed"],
    "billing_anchor_day": [1, 15, 28, 29, 30, 31, "31"],
    "start": ["2000-01-01", "2026-01-01", "2026-02-28", "2024-02-29", "2099-12-30"],
    "end": ["2026-12-31", "2099-12-31", None],
    "discounts": [
        [],
        None,
        [{"price": "fin_resolution", "percent_off": "10", "valid_from": "2026-10-01"}],
        [{"price": "fin_resolution", "percent_off": "100", "valid_from": "2000-01-01"}],
        [{"price": "fin_resolution", "amount_off": "5", "valid_from": "2026-10-01"}],
    ],
}
BAD: dict[str, list[Any]] = {
    "customer_id": ["cus_00001 ", "a|b", "x" * 65, None],
    "name": ["", "x" * 201, 5, None],
    "currency": CURRENCIES,
    "timezone": ZONES,
    "stripe_customer_id": ["cus_", "", "cus_x-y"],
    "collection_method": ["send_invoice", "sometimes"],
    "days_until_due": [0, 1, 30, 365, 366, "30", "1e1", -1],
    "subscription_id": ["sub_x" * 20, None],
    "plan": ["missing", None],
    "billing_anchor_day": [0, 32, "1.0", "-0", -1, True, None],
    "start": DATES,
    "end": DATES,
    "discounts": [
        "[]",
        [
            {
                "price": "fin_resolution",
                "percent_off": "100.000000000001",
                "valid_from": "2026-10-01",
            }
        ],
        [{"price": "fin_resolution", "amount_off": "0.001", "valid_from": "2026-10-01"}],
        [{"price": "seat_essential", "percent_off": "-0", "valid_from": "2026-10-01"}],
        [
            {
                "price": "nope",
                "percent_off": "10",
                "valid_from": "2026-10-01",
                "valid_to": "2026-10-01",
            }
        ],
    ],
}


@st.composite
def edited_customers(draw: st.DrawFn) -> tuple[str, bytes]:
    """The demo rows with one to four field edits (and rows repeated or added), written
    in one of the three formats."""
    rows = copy.deepcopy(CUSTOMERS)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["good", "good", "good", "bad", "copy", "drop", "unknown"]))
        row = draw(st.sampled_from(rows)) if rows else {}
        if action in ("good", "bad"):
            name = draw(st.sampled_from(sorted(GOOD)))
            row[name] = copy.deepcopy(
                draw(st.sampled_from((GOOD if action == "good" else BAD)[name]))
            )
        elif action == "copy" and rows:
            new = copy.deepcopy(row)
            new["subscription_id"] = f"sub_copy_{len(rows)}"
            rows.append(new)
        elif action == "drop" and len(rows) > 1:
            rows.remove(row)
        elif action == "unknown":
            row[draw(st.sampled_from(["plan_id", "Customer_ID", "extra"]))] = "x"
    fmt = draw(formats)
    return fmt, WRITERS[fmt](rows)


@fuzz_settings(max_examples=60, deadline_s=10)
@given(
    case=st.one_of(edited_customers(), edited_customers(), edited_customers(), hostile_customers())
)
def test_a_customers_file_loads_whole_or_is_refused_whole(
    ledger: Ledger, case: tuple[str, bytes]
) -> None:
    fmt, data = case
    path, parsed = read_as(fmt, data)
    before = snapshot(ledger)
    try:
        with bounded(30, "loading a customers file"), ledger.Session.begin() as session:
            billing.load_customers_file(session, path)
    except CustomersFileInvalid as exc:
        event(
            "refused by the reader"
            if isinstance(parsed, CustomersFileInvalid)
            else "refused by the ledger"
        )
        check_problems(exc, str(path), len(data.splitlines()))
        assert snapshot(ledger) == before, "a refused customers file changed the ledger"
        return
    assert not isinstance(parsed, CustomersFileInvalid), (
        "the ledger loaded a file its reader refuses"
    )
    event("loaded")
    # Whole: every row's subscription is stored with the row's terms and customer.
    with ledger.Session() as session:
        stored = {
            sub.external_id: (sub, customer)
            for sub, customer in session.execute(
                select(Subscription, Customer).join(
                    Customer, Subscription.customer_id == Customer.id
                )
            )
        }
    for _line, row in parsed.rows:
        sub, customer = stored[row.subscription_id]
        assert customer.external_id == row.customer_id and customer.name == row.name
        assert (sub.plan_id, sub.currency, sub.timezone) == (row.plan, row.currency, row.timezone)
        assert (sub.billing_anchor_day, sub.start_date, sub.end_date) == (
            row.billing_anchor_day,
            row.start,
            row.end,
        )
