"""The catalog loader under hostile input (issue 14, fuzzed input): random bytes and the
demo catalog mutated (cut short, bytes of every kind, a byte-order mark, invalid UTF-8,
NaN and infinity, exponents, negative zero, dates at the limits, keys twice, deep nesting,
YAML tags, anchors and alias bombs), and catalogs edited field by field then loaded into
a ledger holding customers and a finalized invoice.

Properties: reading never raises anything but LoadError and never runs past its bound;
a refusal names where each problem is (a line and column, or the path of the field in
the file, or the price, plan or meter the ledger refuses it for); a load is whole (the
ledger's current prices are exactly the file's) or refused whole (the ledger unchanged).
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, example, given
from hypothesis import strategies as st
from sqlalchemy import select

import billing
from billing import migrate
from billing.catalog import current_catalog, parse_catalog_text, read_catalog
from billing.db import create_ledger_engine, session_factory
from billing.errors import LoadError
from billing.models import CatalogVersion, Plan, PriceVersion
from tests.billing.conftest import Ledger
from tests.billing.factories import CATALOG, CUSTOMERS, standard_charges, write_customers
from tests.fuzz.common import (
    ALIAS_BOMB,
    NASTY_NUMBERS,
    NASTY_TEXTS,
    bounded,
    fuzz_settings,
    hostile_file,
    nested_yaml,
    tokens_of,
)

SEED = CATALOG.read_bytes()
SEED_DOC: dict[str, Any] = yaml.safe_load(SEED)

DATES = [
    "0001-01-01",
    "1899-12-31",
    "1999-12-31",
    "2000-01-01",
    "2026-01-01",
    "2026-03-15",
    "2026-02-29",
    "2026-02-30",
    "2099-12-31",
    "2199-12-31",
    "9999-12-31",
    "2026-1-1",
    "20260101",
]
# Values a catalog may well hold: amounts with 0 to 12 decimals, a negative zero, an
# exponent, the largest amount the ledger holds in US cents; dates inside and before the
# finalized March invoice of the ledger below, and far from it.
GOOD_AMOUNTS = [
    "0",
    "-0",
    "0.5",
    "1",
    "12.5",
    "0.001",
    "1e2",
    "2.5E-3",
    "0.000000000001",
    "92233720368547758.07",
    "1000000",
]
GOOD_DATES = [
    "2026-01-01",
    "2026-02-01",
    "2026-03-15",
    "2026-04-01",
    "2026-12-01",
    "2000-01-01",
    "2099-12-31",
    "0001-01-01",
    "9999-12-31",
]
YAML_SPECIALS = [
    "&a x",
    "*a",
    "!!timestamp nope",
    "!!timestamp 2026-02-30",
    "!!timestamp 2026-01-01",
    "!!binary aGk=",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!!python/object:os.system x",
    "!!float abc",
    "!!int 0x1F",
    "<<: *a",
    "? [a, b]",
    "{a: 1, a: 2}",
    "---",
    "...",
    "%YAML 1.1",
    "%TAG ! tag:x,2000:",
    "|\n  x",
    ">-",
    "~",
    "'",
    '"\\ud800"',
    '"\\x00"',
    nested_yaml(40),
    ALIAS_BOMB,
]
TOKENS = tokens_of(NASTY_NUMBERS, NASTY_TEXTS, DATES, YAML_SPECIALS)

# Where a problem is: a line (and column) of the file, the path of a field of the catalog,
# the whole document, or what the ledger refuses it for (a price, plan or meter by name).
LOCATED = re.compile(
    r"(invalid YAML: )?line \d+(, column \d+)?: "
    r"|(rounding_mode|meters|plans|catalog)\b"
    r"|the catalog must be a mapping"
    r"|(price|plan|meter) \S+"
)


def check_refusal(exc: LoadError, source: str) -> None:
    """A refusal names the file, then every problem with where it is."""
    assert str(exc).startswith(f"{source}: "), str(exc)
    assert exc.problems
    for problem in exc.problems:
        assert LOCATED.match(problem), f"problem names no line, field or record: {problem!r}"


def read_bytes_as_catalog(data: bytes) -> tuple[Path, Any]:
    """read_catalog on `data` as a file: (path, the ParsedCatalog or the LoadError)."""
    folder = Path(tempfile.mkdtemp(prefix="catalog-fuzz-"))
    path = folder / "catalog.yaml"
    path.write_bytes(data)
    with bounded(20, "reading a catalog"):
        try:
            return path, read_catalog(path)
        except LoadError as exc:
            return path, exc


# --- reading ----------------------------------------------------------------------------------


@fuzz_settings(max_examples=100, deadline_s=10)
@given(data=hostile_file(SEED, TOKENS))
@example(data=SEED.replace(b'"2026-01-01"', b"!!timestamp nope", 1))
@example(data=SEED.replace(b'"2026-01-01"', b"!!timestamp 2026-02-30", 1))
@example(data=b"\xef\xbb\xbf" + SEED)
@example(data=SEED[:300] + b"\xff" + SEED[300:])
@example(data=SEED + b"\n" + ALIAS_BOMB.encode())
@example(data=b"plans: " + nested_yaml(100_000).encode())
@example(data=SEED.replace(b"name: Standard (list prices)", b"name: " + b"x" * 2_000_000, 1))
@example(data=SEED.replace(b"half_up", b"half_up\x00", 1))
@example(data=SEED.replace(b'"0.99"', b".nan", 1))
@example(data=SEED.replace(b'"0.99"', b"-0", 1))
@example(data=SEED.replace(b'"0.99"', b"1e999999999", 1))
def test_a_catalog_file_is_read_whole_or_refused_naming_where(data: bytes) -> None:
    path, outcome = read_bytes_as_catalog(data)
    if isinstance(outcome, LoadError):
        event("refused")
        check_refusal(outcome, str(path))
        return
    event("read")
    # Read whole: the stored text (what every command reads back) gives the same catalog.
    assert parse_catalog_text(outcome.text).content_hash == outcome.content_hash


# --- loading into a ledger ------------------------------------------------------------------

# sub_00001 in a zone east of UTC: its local dates start before their UTC dates.
TOKYO = [dict(CUSTOMERS[0], timezone="Asia/Tokyo"), *CUSTOMERS[1:]]
MARCH = billing.period_containing(1, "Asia/Tokyo", datetime(2026, 3, 20, tzinfo=UTC))
GRACE = timedelta(days=3)


@pytest.fixture
def ledger(ledger_url: str, tmp_path: Path) -> Iterator[Ledger]:
    """A ledger (SQLite, and PostgreSQL when METERLINE_TEST_POSTGRES_URL is set) with the
    demo catalog, the demo customers (sub_00001 in Tokyo) and sub_00001's March invoice
    finalized (so that the edit rule has something to refuse)."""
    url = ledger_url
    engine = create_ledger_engine(url)
    migrate.upgrade(engine)
    ledger = Ledger(url, engine, session_factory(engine))
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
        billing.load_customers_file(session, write_customers(tmp_path / "c.jsonl", TOKYO))
    with ledger.Session.begin() as session:
        posted = billing.post_charges(session, "sub_00001", MARCH, standard_charges(session))
    (invoice_id,) = posted.invoice_ids.values()
    with ledger.Session.begin() as session:
        billing.finalize(session, invoice_id, as_of=MARCH.end + GRACE, grace=GRACE)
    try:
        yield ledger
    finally:
        engine.dispose()


def snapshot(ledger: Ledger) -> tuple[Any, ...]:
    with ledger.Session() as session:
        return (
            sorted(tuple(r) for r in session.execute(select(Plan.id, Plan.name)).all()),
            sorted(
                tuple(r)
                for r in session.execute(
                    select(PriceVersion.id, PriceVersion.content_hash, PriceVersion.is_current)
                ).all()
            ),
            sorted(session.scalars(select(CatalogVersion.id)).all()),
        )


def with_version(plan: str, price: str, effective_from: str) -> bytes:
    """The demo catalog with one more version of a plan's price: its first, at half the
    USD amount."""
    doc = copy.deepcopy(SEED_DOC)
    (found,) = [
        p for pl in doc["plans"] if pl["id"] == plan for p in pl["prices"] if p["id"] == price
    ]
    version = copy.deepcopy(found["versions"][0])
    version["effective_from"] = effective_from
    version["prices"]["USD"]["unit_amount"] = "0.5"
    found["versions"].append(version)
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _prices(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for plan in doc.get("plans", []) for p in plan.get("prices", [])]


@st.composite
def edited_catalog(draw: st.DrawFn) -> bytes:
    """The demo catalog with one to four field edits, as YAML: amounts and dates at and
    past their limits, versions added or removed, plans, prices and currencies dropped
    or repeated, meters changed, minimum commitments set."""
    doc = copy.deepcopy(SEED_DOC)
    values = st.one_of(
        st.sampled_from(GOOD_AMOUNTS),
        st.sampled_from(GOOD_AMOUNTS),
        st.sampled_from(NASTY_NUMBERS),
        st.sampled_from(NASTY_TEXTS),
    )
    dates = st.one_of(st.sampled_from(GOOD_DATES), st.sampled_from(DATES))
    for _ in range(draw(st.integers(1, 4))):
        prices = _prices(doc)
        edit = draw(
            st.sampled_from(
                [
                    "amount",
                    "date",
                    "add_version",
                    "drop_version",
                    "drop_price",
                    "drop_plan",
                    "drop_currency",
                    "add_currency",
                    "repeat_plan",
                    "meter",
                    "minimum",
                    "field",
                ]
            )
        )
        if not prices and edit not in ("drop_plan", "repeat_plan", "minimum", "meter"):
            continue
        price = draw(st.sampled_from(prices)) if prices else {}
        versions = price.get("versions") or [{}]
        version = draw(st.sampled_from(versions))
        bodies = version.get("prices") or {}
        if edit == "amount" and bodies:
            currency = draw(st.sampled_from(sorted(bodies)))
            body = bodies[currency]
            if isinstance(body, dict):
                body["unit_amount"] = draw(values)
        elif edit == "date":
            version["effective_from"] = draw(dates)
        elif edit == "add_version":
            new = copy.deepcopy(version)
            new["effective_from"] = draw(dates)
            versions.append(new)
        elif edit == "drop_version" and len(versions) > 1:
            versions.remove(version)
        elif edit == "drop_price":
            for plan in doc["plans"]:
                if price in plan.get("prices", []):
                    plan["prices"].remove(price)
        elif edit == "drop_plan" and doc["plans"]:
            doc["plans"].pop(draw(st.integers(0, len(doc["plans"]) - 1)))
        elif edit == "drop_currency" and bodies:
            bodies.pop(draw(st.sampled_from(sorted(bodies))))
        elif edit == "add_currency" and bodies:
            currency = draw(st.sampled_from(["JPY", "BHD", "KWD", "CLF", "XXX", "XTS", "usd", ""]))
            bodies[currency] = {"model": "per_unit", "unit_amount": draw(values)}
        elif edit == "repeat_plan" and doc["plans"]:
            plan = copy.deepcopy(draw(st.sampled_from(doc["plans"])))
            plan["id"] = draw(st.sampled_from([plan["id"], f"{plan['id']}_copy", "new"]))
            doc["plans"].append(plan)
        elif edit == "meter":
            meter = draw(st.sampled_from(doc["meters"]))
            field = draw(st.sampled_from(["aggregation", "aggregation", "unit", "dimensions"]))
            meter[field] = (
                draw(st.sampled_from(["sum", "count", "max", "latest", "time_weighted", "x"]))
                if field == "aggregation"
                else draw(st.sampled_from([[], "each", "x" * 70, None]))
            )
        elif edit == "minimum" and doc["plans"]:
            plan = draw(st.sampled_from(doc["plans"]))
            plan["minimum_commitment"] = {
                draw(st.sampled_from(["USD", "EUR", "JPY", "XXX"])): draw(values)
            }
        elif edit == "field":
            price[draw(st.sampled_from(["id", "meter", "filter", "extra"]))] = draw(values)
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


@fuzz_settings(max_examples=30, deadline_s=10)
@example(data=with_version("standard", "fin_resolution", "0001-01-01"))  # found: exit 5
@example(data=SEED.replace(b"id: standard", b"id: " + b"s" * 65, 1))  # found: PostgreSQL
@example(data=SEED.replace(b"name: Standard (list prices)", b'name: "Standard\\0"', 1))  # same
@given(
    data=st.one_of(edited_catalog(), edited_catalog(), edited_catalog(), hostile_file(SEED, TOKENS))
)
def test_a_catalog_loads_whole_or_is_refused_whole(ledger: Ledger, data: bytes) -> None:
    path, parsed = read_bytes_as_catalog(data)
    before = snapshot(ledger)
    try:
        with bounded(30, "loading a catalog"), ledger.Session.begin() as session:
            billing.load_catalog(session, path)
    except LoadError as exc:  # CatalogChangeRefused too
        event("refused by the reader" if isinstance(parsed, LoadError) else "refused by the ledger")
        check_refusal(exc, str(path))
        assert snapshot(ledger) == before, "a refused catalog changed the ledger"
        return
    assert not isinstance(parsed, LoadError), "the ledger loaded a catalog its reader refuses"
    event("loaded")
    with ledger.Session() as session:
        current = current_catalog(session)
        stored = {
            (r.plan_id, r.price_id, r.currency, r.effective_from): r.content_hash
            for r in session.scalars(select(PriceVersion).where(PriceVersion.is_current))
        }
        plans = set(session.scalars(select(Plan.id)))
    # Whole: every price version of the file is current, and nothing else is.
    wanted = {v.slot: v.content_hash for v in parsed.versions}
    assert current.content_hash == parsed.content_hash
    assert {v.slot for v in current.prices} == set(wanted)
    assert set(stored) == set(wanted)
    assert {p.id for p in parsed.plans} <= plans
