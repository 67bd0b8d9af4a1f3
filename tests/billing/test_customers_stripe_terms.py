"""The customers file's Stripe terms (billing/customers/rows.py, read.py, checks.py rule
4, load.py): ``stripe_customer_id``, ``collection_method`` and ``days_until_due``, each
optional, stored on the customer's ledger row, agreed by all of a customer's rows, a
Stripe customer id never shared by two customers, and changed by a reload like the
customer's name (a delivery term, never frozen by a finalized invoice).

Every test runs on SQLite and on PostgreSQL (METERLINE_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import billing
from billing.customers import CustomersLoadResult
from billing.models import Customer
from billing.views import customers_load_text
from tests.billing.conftest import Ledger
from tests.billing.factories import CATALOG, CUSTOMERS, period_of, standard_charges, utc
from tests.billing.test_customers import WRITERS
from tests.billing.test_customers_rules import Loader

ACME = "cus_NffrFeUfNV2Hib"
GLOBEX = "cus_Q2x9LmZ0aB7kTe"
NONE = (None, None, None)


def rows() -> list[dict[str, Any]]:
    """The factory's three customers, and a second subscription of cus_00003 (committed
    from the day its first one ends): a customer on two rows."""
    records = copy.deepcopy(CUSTOMERS)
    second = copy.deepcopy(records[2])
    second.update(subscription_id="sub_00005", start="2026-06-15", end=None)
    return [*records, second]


def with_terms(
    records: list[dict[str, Any]], customer: str, sid: Any, method: Any, days: Any
) -> list[dict[str, Any]]:
    """Every row of `customer` given these Stripe terms (in file field order)."""
    out = []
    for record in records:
        if record["customer_id"] == customer:
            fields = list(record.items())
            record = dict(fields[:4])
            record.update(stripe_customer_id=sid, collection_method=method, days_until_due=days)
            record.update(fields[4:])
        out.append(record)
    return out


def terms(ledger: Ledger) -> dict[str, tuple[Any, ...]]:
    """Each stored customer's (stripe_customer_id, collection_method, days_until_due)."""
    with ledger.Session() as session:
        return {
            ext: (sid, method, days)
            for ext, sid, method, days in session.execute(
                select(
                    Customer.external_id,
                    Customer.stripe_customer_id,
                    Customer.collection_method,
                    Customer.days_until_due,
                ).order_by(Customer.external_id)
            )
        }


@pytest.fixture
def loader(ledger: Ledger, tmp_path: Path) -> Loader:
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
    return Loader(ledger, tmp_path)


def refused(loader: Loader, records: list[dict[str, Any]]) -> list[str]:
    """The problems of a refused file; the stored Stripe terms did not change either."""
    before = terms(loader.ledger)
    problems = loader.refused(records)
    assert terms(loader.ledger) == before
    return problems


# --- accepted values, stored ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "yaml", "csv"])
def test_the_terms_are_stored_on_the_customer(loader: Loader, tmp_path: Path, fmt: str) -> None:
    records = with_terms(rows(), "cus_00001", ACME, "send_invoice", 45)
    records = with_terms(records, "cus_00002", GLOBEX, "charge_automatically", None)
    records = with_terms(records, "cus_00003", None, None, None)
    path = WRITERS[fmt](tmp_path / f"customers.{fmt}", records)
    with loader.ledger.Session.begin() as session:
        result = billing.load_customers_file(session, path)
    assert (result.customers_created, result.subscriptions_created) == (3, 4)
    assert terms(loader.ledger) == {
        "cus_00001": (ACME, "send_invoice", 45),
        "cus_00002": (GLOBEX, "charge_automatically", None),
        "cus_00003": NONE,
    }
    # The same file again changes nothing.
    with loader.ledger.Session.begin() as session:
        assert not billing.load_customers_file(session, path).changed


def test_a_file_without_the_fields_stores_none(loader: Loader) -> None:
    loader.load(rows())
    assert terms(loader.ledger) == dict.fromkeys(("cus_00001", "cus_00002", "cus_00003"), NONE)


@pytest.mark.parametrize(
    ("sid", "method", "days", "stored"),
    [
        # The longest id the column holds: cus_ and 60 letters and digits.
        ("cus_" + "aZ09" * 15, None, None, ("cus_" + "aZ09" * 15, None, None)),
        ("cus_1", "send_invoice", 1, ("cus_1", "send_invoice", 1)),
        (None, "send_invoice", 365, (None, "send_invoice", 365)),
        # CSV gives digits as text; a JSON number with a zero fraction is whole.
        (None, "send_invoice", "30", (None, "send_invoice", 30)),
        (None, "send_invoice", 30.0, (None, "send_invoice", 30)),
        (None, "send_invoice", None, (None, "send_invoice", None)),
        (None, "charge_automatically", None, (None, "charge_automatically", None)),
    ],
)
def test_edge_values_are_accepted(
    loader: Loader, sid: Any, method: Any, days: Any, stored: tuple[Any, ...]
) -> None:
    loader.load(with_terms(rows()[:1], "cus_00001", sid, method, days))
    assert terms(loader.ledger)["cus_00001"] == stored


# --- refusals, one line each ---------------------------------------------------------------

NOT_AN_ID = (
    "is not a Stripe customer id: cus_ followed by letters and digits (cus_NffrFeUfNV2Hib);"
    " leave it empty to let the Stripe sink create the customer"
)
NOT_A_METHOD = (
    "must be charge_automatically or send_invoice (Stripe's collection methods), not {!r};"
    " leave it empty for the settings' default"
)


@pytest.mark.parametrize(
    ("sid", "method", "days", "expected"),
    [
        ("cus_", None, None, f"stripe_customer_id: 'cus_' {NOT_AN_ID}"),
        (
            "acct_1Nv0FGQ9RKHgCVdK",
            None,
            None,
            f"stripe_customer_id: 'acct_1Nv0FGQ9RKHgCVdK' {NOT_AN_ID}",
        ),
        ("CUS_abc", None, None, f"stripe_customer_id: 'CUS_abc' {NOT_AN_ID}"),
        ("cus_abc-def", None, None, f"stripe_customer_id: 'cus_abc-def' {NOT_AN_ID}"),
        ("cus_abc_def", None, None, f"stripe_customer_id: 'cus_abc_def' {NOT_AN_ID}"),
        ("cus_abc ", None, None, f"stripe_customer_id: 'cus_abc ' {NOT_AN_ID}"),
        (" cus_abc", None, None, f"stripe_customer_id: ' cus_abc' {NOT_AN_ID}"),
        ("cus_ab\u00e9", None, None, f"stripe_customer_id: 'cus_ab\u00e9' {NOT_AN_ID}"),
        ("", None, None, f"stripe_customer_id: '' {NOT_AN_ID}"),
        (
            "cus_" + "a" * 61,
            None,
            None,
            "stripe_customer_id: has 65 characters; at most 64",
        ),
        (
            12345,
            None,
            None,
            'stripe_customer_id: must be text, not the number 12345 (write "12345")',
        ),
        (None, "send-invoice", None, "collection_method: " + NOT_A_METHOD.format("send-invoice")),
        (None, "Send_Invoice", None, "collection_method: " + NOT_A_METHOD.format("Send_Invoice")),
        (None, "manual", None, "collection_method: " + NOT_A_METHOD.format("manual")),
        (None, True, None, "collection_method: must be text, not the boolean true"),
        (None, "send_invoice", 0, "days_until_due: must be between 1 and 365 days, got 0"),
        (None, "send_invoice", 366, "days_until_due: must be between 1 and 365 days, got 366"),
        (None, "send_invoice", -1, "days_until_due: must be between 1 and 365 days, got -1"),
        (
            None,
            "send_invoice",
            1.5,
            "days_until_due: must be a whole number of days 1..365, not the number 1.5",
        ),
        (
            None,
            "send_invoice",
            "30 days",
            "days_until_due: must be a whole number of days 1..365, not '30 days'",
        ),
        (
            None,
            "send_invoice",
            True,
            "days_until_due: must be a whole number of days 1..365, not the boolean true",
        ),
        (
            None,
            "charge_automatically",
            30,
            "days_until_due: Stripe accepts days_until_due only for invoices with"
            " collection_method send_invoice, and this row's collection_method is"
            " charge_automatically: set collection_method to send_invoice, or leave"
            " days_until_due empty",
        ),
        (
            None,
            None,
            30,
            "days_until_due: Stripe accepts days_until_due only for invoices with"
            " collection_method send_invoice, and this row's collection_method is empty (the"
            " settings' default): set collection_method to send_invoice, or leave"
            " days_until_due empty",
        ),
    ],
)
def test_bad_values_are_refused_with_line_and_field(
    loader: Loader, sid: Any, method: Any, days: Any, expected: str
) -> None:
    problems = refused(loader, with_terms(rows()[:1], "cus_00001", sid, method, days))
    assert problems == [f"line 1: {expected}"]


def test_every_bad_field_of_a_row_is_reported_in_field_order(loader: Loader) -> None:
    records = with_terms(rows(), "cus_00002", "cus_x-y", "cheque", 0)
    assert refused(loader, records) == [
        f"line 2: stripe_customer_id: 'cus_x-y' {NOT_AN_ID}",
        "line 2: collection_method: " + NOT_A_METHOD.format("cheque"),
        "line 2: days_until_due: must be between 1 and 365 days, got 0",
    ]


def test_an_unknown_field_suggests_the_stripe_field(loader: Loader) -> None:
    records = rows()[:1]
    records[0]["stripe_customer"] = ACME
    (problem,) = refused(loader, records)
    assert problem.startswith(
        "line 1: stripe_customer: unknown field; did you mean 'stripe_customer_id'?"
    )


# --- a customer's rows agree ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "field", "value", "shown"),
    [
        (30, "stripe_customer_id", GLOBEX, repr(ACME)),
        (30, "stripe_customer_id", None, repr(ACME)),
        (None, "collection_method", "charge_automatically", "'send_invoice'"),
        (None, "collection_method", None, "'send_invoice'"),
        (30, "days_until_due", 60, "30"),
        (30, "days_until_due", None, "30"),
        (None, "days_until_due", 30, "none (empty)"),
    ],
)
def test_the_rows_of_one_customer_agree(
    loader: Loader, days: int | None, field: str, value: Any, shown: str
) -> None:
    """cus_00003 is on lines 3 and 4: line 4 says otherwise than line 3."""
    records = with_terms(rows(), "cus_00003", ACME, "send_invoice", days)
    records[3][field] = value
    assert refused(loader, records) == [
        f"line 4: {field}: customer cus_00003 has {shown} on line 3; a customer's rows agree"
        " on its name, currency, timezone, stripe_customer_id, collection_method,"
        " days_until_due, billing_address and tax_ids"
    ]


def test_a_missing_value_on_one_row_disagrees_with_a_given_one(loader: Loader) -> None:
    records = with_terms(rows(), "cus_00003", None, None, None)
    records[2]["collection_method"] = "send_invoice"  # line 3 only
    assert refused(loader, records) == [
        "line 4: collection_method: customer cus_00003 has 'send_invoice' on line 3; a"
        " customer's rows agree on its name, currency, timezone, stripe_customer_id,"
        " collection_method, days_until_due, billing_address and tax_ids"
    ]


# --- one Stripe customer per customer ------------------------------------------------------


def test_two_customers_in_a_file_never_share_a_stripe_customer(loader: Loader) -> None:
    records = with_terms(rows(), "cus_00001", ACME, None, None)
    records = with_terms(records, "cus_00003", ACME, None, None)  # lines 3 and 4
    assert refused(loader, records) == [
        f"line 3: stripe_customer_id: customer cus_00003 and customer cus_00001 (line 1) both"
        f" have Stripe customer {ACME}; two customers never share one Stripe customer (each"
        " would receive the other's invoices): give each its own id"
    ]


def test_a_stripe_customer_of_a_stored_customer_is_refused(loader: Loader) -> None:
    loader.load(with_terms(rows(), "cus_00001", ACME, None, None))
    # A file of cus_00002 only: the stored cus_00001 keeps ACME.
    records = with_terms([rows()[1]], "cus_00002", ACME, None, None)
    assert refused(loader, records) == [
        f"line 1: stripe_customer_id: customer cus_00002 and customer cus_00001 (in the"
        f" ledger) both have Stripe customer {ACME}; two customers never share one Stripe"
        " customer (each would receive the other's invoices): give each its own id"
    ]
    # Ids compare exactly: Stripe's ids are case-sensitive.
    loader.load(with_terms([rows()[1]], "cus_00002", ACME.lower(), None, None))
    assert terms(loader.ledger)["cus_00002"] == (ACME.lower(), None, None)


def test_two_listed_customers_may_swap_their_stripe_customers(loader: Loader) -> None:
    """A stored customer the file lists takes the file's id: the final state is what must
    not share one."""
    records = with_terms(rows(), "cus_00001", ACME, None, None)
    loader.load(with_terms(records, "cus_00002", GLOBEX, None, None))
    records = with_terms(rows(), "cus_00001", GLOBEX, None, None)
    result = loader.load(with_terms(records, "cus_00002", ACME, None, None))
    assert result.customers_updated == 2
    assert terms(loader.ledger)["cus_00001"][0] == GLOBEX
    assert terms(loader.ledger)["cus_00002"][0] == ACME
    # Moving an id to another customer in one file frees it: cus_00001 drops it.
    records = with_terms(rows(), "cus_00001", None, None, None)
    loader.load(with_terms(records, "cus_00003", GLOBEX, None, None))
    assert [terms(loader.ledger)[c][0] for c in ("cus_00001", "cus_00003")] == [None, GLOBEX]


# --- a reload changes them ----------------------------------------------------------------


def test_a_reload_updates_the_terms_and_reports_the_customer(loader: Loader) -> None:
    loader.load(rows())
    records = with_terms(rows(), "cus_00003", ACME, "send_invoice", 14)
    result = loader.load(records)
    assert result == CustomersLoadResult(
        rows=4,
        customers_created=0,
        customers_updated=1,
        subscriptions_created=0,
        subscriptions_updated=0,
        discounts_replaced=0,
    )
    assert customers_load_text(result) == (
        "4 row(s): customers 0 created, 1 updated; subscriptions 0 created, 0 updated;"
        " discounts replaced on 0 subscription(s)"
    )
    assert terms(loader.ledger)["cus_00003"] == (ACME, "send_invoice", 14)
    # Each field alone is a change.
    for change, stored in (
        (("cus_00003", GLOBEX, "send_invoice", 14), (GLOBEX, "send_invoice", 14)),
        (("cus_00003", GLOBEX, "send_invoice", 60), (GLOBEX, "send_invoice", 60)),
        (
            ("cus_00003", GLOBEX, "charge_automatically", None),
            (GLOBEX, "charge_automatically", None),
        ),
        # Left empty: back to the settings' defaults (and the sink's own customer).
        (("cus_00003", None, None, None), NONE),
    ):
        result = loader.load(with_terms(rows(), *change))
        assert (result.customers_updated, result.subscriptions_updated) == (1, 0)
        assert terms(loader.ledger)["cus_00003"] == stored
    # The other customers were never touched.
    assert terms(loader.ledger)["cus_00001"] == terms(loader.ledger)["cus_00002"] == NONE
    assert not loader.load(rows()).changed


def test_a_finalized_invoice_does_not_freeze_them(loader: Loader) -> None:
    """Unlike plan, currency or timezone, the Stripe terms priced nothing: a customer with
    a finalized invoice changes them."""
    loader.load(rows()[:1])
    with loader.ledger.Session.begin() as session:
        posted = billing.post_charges(
            session, "sub_00001", period_of("sub_00001", 2026, 3), standard_charges(session)
        )
        (invoice_id,) = posted.invoice_ids.values()
        billing.finalize(session, invoice_id, as_of=utc(2026, 4, 10))
    result = loader.load(with_terms(rows()[:1], "cus_00001", ACME, "send_invoice", 30))
    assert (result.customers_updated, result.subscriptions_updated) == (1, 0)
    assert terms(loader.ledger)["cus_00001"] == (ACME, "send_invoice", 30)
