"""The customers file's rules against the ledger (issue 11 follow-up), each fault found by
the breaker kept as its input and the refusal (or the load) it must give:

1. two subscriptions of one customer active on the same day, pricing the same usage;
2. a reload changing the terms that priced a finalized invoice;
3. odd values (ids that ingest would refuse, unknown fields, wrong types, extreme dates,
   odd timezones, anchor days);
4. every problem of a file at once, nothing loaded, exit code 2.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import billing
from billing.customers import CustomersFileInvalid, CustomersLoadResult, MeteredPrice
from billing.models import Subscription, SubscriptionDiscount
from meterline.cli import main
from meterline.settings import settings
from tests.billing.conftest import Ledger
from tests.billing.factories import CATALOG, CUSTOMERS, period_of, standard_charges, utc
from tests.billing.test_customers import snapshot, write_csv


def rows() -> list[dict[str, Any]]:
    return copy.deepcopy(CUSTOMERS)


def sub(customer: int, subscription: str, plan: str, start: str, **more: Any) -> dict[str, Any]:
    """A row for one of the CUSTOMERS' customers (its name, currency and timezone)."""
    base = CUSTOMERS[customer - 1]
    return {
        **{k: base[k] for k in ("customer_id", "name", "currency", "timezone")},
        "subscription_id": subscription,
        "plan": plan,
        "billing_anchor_day": base["billing_anchor_day"],
        "start": start,
        "end": None,
        "discounts": [],
        **more,
    }


def write(path: Path, records: list[Any]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


class Loader:
    """Loads files into one ledger, each in its own transaction."""

    def __init__(self, ledger: Ledger, tmp_path: Path) -> None:
        self.ledger = ledger
        self.tmp = tmp_path
        self.n = 0

    def path(self, records: list[Any]) -> Path:
        self.n += 1
        return write(self.tmp / f"customers{self.n}.jsonl", records)

    def load(self, records: list[Any]) -> CustomersLoadResult:
        with self.ledger.Session.begin() as session:
            return billing.load_customers_file(session, self.path(records))

    def refused(self, records: list[Any]) -> list[str]:
        """The problems of a refused file; asserts the ledger did not change."""
        before = snapshot(self.ledger)
        with self.ledger.Session.begin() as session, pytest.raises(CustomersFileInvalid) as info:
            billing.load_customers_file(session, self.path(records))
        assert snapshot(self.ledger) == before  # all or nothing
        return info.value.problems


@pytest.fixture
def loader(ledger: Ledger, tmp_path: Path) -> Loader:
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
    return Loader(ledger, tmp_path)


# --- 1. overlapping subscriptions ---------------------------------------------------------


def test_overlapping_subscriptions_on_one_meter_are_refused(loader: Loader) -> None:
    """The breaker's input: cus_00001 on standard from Jan 1, and a second subscription on
    volume from Mar 1. Close reads usage per customer and meter, so both invoices would
    have billed the same Fin resolutions and advanced/expert seats."""
    problems = loader.refused([*rows(), sub(1, "sub_00004", "volume", "2026-03-01")])
    assert problems == [
        "line 4: start: subscription sub_00004 overlaps subscription sub_00001 of customer"
        " cus_00001 (line 1: 2026-01-01, open-ended) from 2026-03-01, open-ended, and both"
        " plans (volume, standard) price the usage of meters fin_resolution, seats: usage is"
        " billed by customer and meter, so both would bill the same events; end sub_00001 on"
        " 2026-03-01 or earlier, or start sub_00004 when it ends"
    ]


def test_an_overlap_with_a_stored_subscription_is_refused(loader: Loader) -> None:
    loader.load(rows())
    # A file holding only the new subscription: the stored one is still active.
    problems = loader.refused([sub(1, "sub_00004", "committed", "2026-05-01")])
    assert problems == [
        "line 1: start: subscription sub_00004 overlaps subscription sub_00001 of customer"
        " cus_00001 (in the ledger: 2026-01-01, open-ended) from 2026-05-01, open-ended, and"
        " both plans (committed, standard) price the usage of meters fin_resolution, seats:"
        " usage is billed by customer and meter, so both would bill the same events; end"
        " sub_00001 on 2026-05-01 or earlier, or start sub_00004 when it ends"
    ]
    # One that starts earlier and runs into it names its end.
    problems = loader.refused(
        [sub(2, "sub_00005", "volume", "2026-01-01", end="2026-02-01")]  # Globex from Jan 15
    )
    assert problems == [
        "line 1: end: subscription sub_00005 overlaps subscription sub_00002 of customer"
        " cus_00002 (in the ledger: 2026-01-15, open-ended) from 2026-01-15 to 2026-02-01, and"
        " both plans (volume, volume) price the usage of meters fin_resolution, seats: usage"
        " is billed by customer and meter, so both would bill the same events; end sub_00005"
        " on 2026-01-15 or earlier"
    ]


def test_consecutive_subscriptions_are_accepted(loader: Loader) -> None:
    """Changing plans: one subscription ends on the day the next starts (end is the first
    day not billed), so every day, and every event, belongs to one of them."""
    loader.load(rows())
    result = loader.load([sub(3, "sub_00006", "standard", "2026-06-15")])  # sub_00003 ends then
    assert result.subscriptions_created == 1
    problems = loader.refused([sub(3, "sub_00007", "standard", "2026-06-14")])
    assert problems[0].startswith("line 1: start: subscription sub_00007 overlaps")
    assert problems[0].endswith(
        "end sub_00003 on 2026-06-14 or earlier, or start sub_00007 on 2026-06-15 or later"
    )


def test_a_subscription_on_two_lines_is_one_problem(loader: Loader) -> None:
    records = rows()
    records.append({**records[0], "start": "2026-02-01"})
    assert loader.refused(records) == ["line 4: subscription_id: sub_00001 already on line 1"]


def test_prices_share_usage_only_on_the_same_meter_and_groups() -> None:
    seats = MeteredPrice("seat", "seats", {})
    advanced = MeteredPrice("seat_advanced", "seats", {"seat_type": "advanced"})
    essential = MeteredPrice("seat_essential", "seats", {"seat_type": "essential"})
    chat = MeteredPrice("resolution", "resolutions", {"channel": "chat"})
    assert seats.shares_usage_with(advanced) and advanced.shares_usage_with(seats)
    assert advanced.shares_usage_with(advanced)
    assert not advanced.shares_usage_with(essential)
    assert not chat.shares_usage_with(MeteredPrice("x", "seats", {"channel": "chat"}))


SPLIT_CATALOG = """
meters:
  - name: seats
    aggregation: time_weighted
    properties: {seat_type: [essential, advanced]}
    dimensions: [seat_type]
plans:
  - id: essential_only
    prices:
      - id: seat_essential
        meter: seats
        filter: {seat_type: essential}
        versions:
          - {effective_from: "2026-01-01", prices: {USD: {model: per_unit, unit_amount: "10"}}}
  - id: advanced_only
    prices:
      - id: seat_advanced
        meter: seats
        filter: {seat_type: advanced}
        versions:
          - {effective_from: "2026-01-01", prices: {USD: {model: per_unit, unit_amount: "20"}}}
  - id: all_seats
    prices:
      - id: seat
        meter: seats
        versions:
          - {effective_from: "2026-01-01", prices: {USD: {model: per_unit, unit_amount: "15"}}}
  - id: platform
    prices:
      - id: fee
        versions:
          - {effective_from: "2026-01-01", prices: {USD: {model: flat, amount: "100"}}}
"""


def test_overlaps_on_disjoint_groups_and_flat_fees_are_accepted(
    ledger: Ledger, tmp_path: Path
) -> None:
    catalog = tmp_path / "split.yaml"
    catalog.write_text(SPLIT_CATALOG)
    with ledger.Session.begin() as session:
        billing.load_catalog(session, catalog)
    loader = Loader(ledger, tmp_path)
    three = [
        sub(1, "sub_e", "essential_only", "2026-01-01"),
        sub(1, "sub_a", "advanced_only", "2026-01-01"),
        sub(1, "sub_p", "platform", "2026-01-01"),
    ]
    assert loader.load(three).subscriptions_created == 3
    problems = loader.refused([sub(1, "sub_all", "all_seats", "2026-02-01")])
    assert [p.split(" overlaps ")[1].split(" of ")[0] for p in problems] == [
        "subscription sub_e",
        "subscription sub_a",
    ]


# --- 2. the terms of finalized invoices -----------------------------------------------------


@pytest.fixture
def finalized(loader: Loader) -> tuple[Loader, int]:
    """sub_00001 (America/New_York, anchor 1) with its March 2026 invoice finalized."""
    start = rows()
    start[0]["discounts"].append(
        {"price": "seat_advanced", "percent_off": "5", "valid_from": "2026-01-01"}
    )
    loader.load(start)
    with loader.ledger.Session.begin() as session:
        posted = billing.post_charges(
            session, "sub_00001", period_of("sub_00001", 2026, 3), standard_charges(session)
        )
        (invoice_id,) = posted.invoice_ids.values()
        billing.finalize(session, invoice_id, as_of=utc(2026, 4, 10))
    return loader, invoice_id


def stored_terms(ledger: Ledger) -> list[tuple[Any, ...]]:
    with ledger.Session() as session:
        subs = session.execute(
            select(
                Subscription.external_id,
                Subscription.plan_id,
                Subscription.currency,
                Subscription.billing_anchor_day,
                Subscription.timezone,
                Subscription.start_date,
                Subscription.end_date,
            ).order_by(Subscription.external_id)
        ).all()
        discounts = session.execute(
            select(SubscriptionDiscount.price_id, SubscriptionDiscount.valid_from).order_by(
                SubscriptionDiscount.id
            )
        ).all()
    return [tuple(r) for r in subs] + [tuple(d) for d in discounts]


@pytest.mark.parametrize(
    ("changes", "field", "before", "after"),
    [
        ({"plan": "volume"}, "plan", "'standard'", "'volume'"),
        ({"currency": "EUR"}, "currency", "'USD'", "'EUR'"),
        ({"billing_anchor_day": 15}, "billing_anchor_day", "1", "15"),
        ({"timezone": "Europe/Dublin"}, "timezone", "'America/New_York'", "'Europe/Dublin'"),
        ({"start": "2026-02-01"}, "start", "2026-01-01", "2026-02-01"),
    ],
)
def test_terms_that_priced_a_finalized_invoice_never_change(
    finalized: tuple[Loader, int], changes: dict[str, Any], field: str, before: str, after: str
) -> None:
    """The breaker's input: a reload changing sub_00001's plan (or currency, anchor,
    timezone, start) after its March invoice was finalized; the ledger took it, and the
    late-usage check and the audit then re-rated March with the new terms."""
    loader, invoice = finalized
    state = stored_terms(loader.ledger)
    changed = rows()
    changed[0].update(changes)
    changed[0]["discounts"] = [
        {"price": "seat_advanced", "percent_off": "5", "valid_from": "2026-01-01"}
    ]
    assert loader.refused(changed) == [
        f"line 1: {field}: subscription sub_00001 has finalized invoice {invoice}"
        f" (2026-03-01 to 2026-04-01) billed with {field} {before}; the terms that priced an"
        f" invoice never change in place ({field} cannot become {after}): keep it, end the"
        " subscription (end: 2026-04-01 or later) and add a new subscription with the new"
        " terms starting on that day"
    ]
    assert stored_terms(loader.ledger) == state


def test_ending_after_the_last_finalized_period_then_a_new_subscription(
    finalized: tuple[Loader, int],
) -> None:
    """What the refusal says to do works: end sub_00001 on Apr 1 (after finalized March)
    and start the new terms in a subscription of their own on that day."""
    loader, invoice = finalized
    keep = rows()
    keep[0]["discounts"] = [
        {"price": "seat_advanced", "percent_off": "5", "valid_from": "2026-01-01"}
    ]
    inside = copy.deepcopy(keep)
    inside[0]["end"] = "2026-03-15"
    assert loader.refused(inside) == [
        f"line 1: end: subscription sub_00001 has finalized invoice {invoice} (2026-03-01 to"
        " 2026-04-01); an end of 2026-03-15 would change that period, and a finalized period"
        " never changes: the end can be 2026-04-01 or later, or none (open-ended)"
    ]
    ended = copy.deepcopy(keep)
    ended[0]["end"] = "2026-04-01"
    assert loader.load([*ended, sub(1, "sub_00004", "volume", "2026-04-01")]).changed
    later = copy.deepcopy(ended)
    later[0]["end"] = "2026-03-01"  # back before the finalized period: refused again
    assert loader.refused(later)[0].startswith(
        f"line 1: end: subscription sub_00001 has finalized invoice {invoice}"
    )


def test_discounts_of_finalized_periods_stay(finalized: tuple[Loader, int]) -> None:
    loader, invoice = finalized
    five = {"price": "seat_advanced", "percent_off": "5", "valid_from": "2026-01-01"}
    later = {"price": "fin_resolution", "percent_off": "10", "valid_from": "2026-10-01"}

    # Removing the 5% that applied to March, or adding one valid at March's end: refused.
    removed = rows()
    removed[0]["discounts"] = [later]
    added = rows()
    added[0]["discounts"] = [
        five,
        later,
        {"price": "fin_resolution", "percent_off": "20", "valid_from": "2026-03-31"},
    ]
    assert loader.refused(removed) == [
        f"line 1: discounts: subscription sub_00001: this file removes 5% off seat_advanced"
        f" (2026-01-01, open-ended) for finalized invoice {invoice} (2026-03-01 to"
        " 2026-04-01); a discount that priced a finalized invoice never changes in place:"
        " keep it (with valid_to 2026-04-01 or later it still applies to every finalized"
        " period) and give a change its own discount with valid_from 2026-04-01 or later"
    ]
    assert loader.refused(added)[0].startswith(
        "line 1: discounts: subscription sub_00001: this file adds 20% off fin_resolution"
        " (2026-03-31, open-ended) for finalized invoice"
    )
    # Ending it when March ends and replacing it from April on: accepted.
    replaced = rows()
    replaced[0]["discounts"] = [
        {**five, "valid_to": "2026-04-01"},
        {"price": "seat_advanced", "percent_off": "8", "valid_from": "2026-04-01"},
        {**later, "valid_from": "2026-11-01"},
    ]
    assert loader.load(replaced).discounts_replaced == 1


def test_a_draft_only_subscription_may_change_plan_not_its_periods(loader: Loader) -> None:
    loader.load(rows())
    with loader.ledger.Session.begin() as session:
        billing.post_charges(
            session, "sub_00001", period_of("sub_00001", 2026, 3), standard_charges(session)
        )
    moved = rows()
    moved[0]["timezone"] = "UTC"
    assert loader.refused(moved)[0].startswith(
        "line 1: timezone: subscription sub_00001 has draft invoice"
    )
    replanned = rows()
    replanned[0]["plan"] = "volume"  # the draft is re-rated by the next close
    assert loader.load(replanned).subscriptions_updated == 1


def test_a_subscription_never_moves_to_another_customer(loader: Loader) -> None:
    loader.load(rows())
    moved = rows()
    moved[2] = {**moved[1], "subscription_id": "sub_00003", "start": "2026-01-15"}
    moved[2]["billing_anchor_day"] = 31
    problems = loader.refused(moved[1:])
    assert (
        "line 2: customer_id: subscription sub_00003 belongs to customer cus_00003; a"
        " subscription never moves to another customer: give the new one its own"
        " subscription_id"
    ) in problems


# --- 3. odd values ---------------------------------------------------------------------


PRINTABLE = "; ids and names must be printable text"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"customer_id": "cus_00001\x00"},
            "customer_id: contains the character U+0000 (a control, format, invisible or"
            " special space character)" + PRINTABLE,
        ),
        ({"customer_id": " cus_00001"}, "customer_id: starts or ends with a space" + PRINTABLE),
        (
            {"subscription_id": "sub_00001 "},
            "subscription_id: starts or ends with a space" + PRINTABLE,
        ),
        (
            {"subscription_id": "sub\t1"},
            "subscription_id: contains the character U+0009 (a control, format, invisible or"
            " special space character)" + PRINTABLE,
        ),
        (
            {"customer_id": "cus\u200b1"},
            "customer_id: contains the character U+200B (a control, format, invisible or"
            " special space character)" + PRINTABLE,
        ),
        (
            {"name": "Acme\u00a01"},
            "name: contains the character U+00A0 (a control, format, invisible or special"
            " space character)" + PRINTABLE,
        ),
        ({"customer_id": "c" * 65}, "customer_id: has 65 characters; at most 64"),
        ({"customer_id": "cus|1"}, "customer_id: must not contain '|'"),
        ({"customer_id": 1}, 'customer_id: must be text, not the number 1 (write "1")'),
        ({"name": True}, "name: must be text, not the boolean true"),
        ({"plan": ["standard"]}, "plan: must be text, not a list"),
        ({"timezone": None}, "timezone: must be text, not null (empty)"),
        (
            {"billing_anchor_day": True},
            "billing_anchor_day: must be a whole day of the month 1..31, not the boolean true",
        ),
        (
            {"billing_anchor_day": "1_5"},
            "billing_anchor_day: must be a whole day of the month 1..31, not '1_5'",
        ),
        ({"billing_anchor_day": 0}, "billing_anchor_day: must be between 1 and 31, got 0"),
        ({"billing_anchor_day": "32"}, "billing_anchor_day: must be between 1 and 31, got 32"),
        ({"start": "0001-01-01"}, "start: 0001-01-01 is outside 2000-01-01 .. 2099-12-31"),
        (
            {"end": "9999-12-31"},
            "end: 9999-12-31 is outside 2000-01-01 .. 2099-12-31 (leave end empty for an"
            " open-ended subscription)",
        ),
        ({"start": 20260101}, "start: must be a date written YYYY-MM-DD, not the number 20260101"),
        (
            {"start": "2026-01-01T00:00:00"},
            "start: must be a date written YYYY-MM-DD, not '2026-01-01T00:00:00'",
        ),
        ({"start": "2026-02-30"}, "start: 2026-02-30 is not a date of the calendar"),
        ({"start": None}, "start: must be a date written YYYY-MM-DD, not null (empty)"),
        ({"end": "2026-01-01"}, "end: 2026-01-01 is not after start (2026-01-01)"),
        (
            {"timezone": "Factory"},
            "timezone: 'Factory' is not a place's timezone (it means none, or this machine's"
            " own): use a name such as Europe/Dublin or UTC",
        ),
        (
            {"timezone": "localtime"},
            "timezone: 'localtime' is not a place's timezone (it means none, or this"
            " machine's own): use a name such as Europe/Dublin or UTC",
        ),
        (
            {"timezone": "right/UTC"},
            "timezone: 'right/UTC' is not a name of the tz database: use one such as Europe/Dublin",
        ),
        (
            {"timezone": "utc"},
            "timezone: unknown IANA timezone 'utc': use a name such as Europe/Dublin or UTC",
        ),
        (
            {"timezone": "../../etc/passwd"},
            "timezone: unknown IANA timezone '../../etc/passwd': use a name such as"
            " Europe/Dublin or UTC",
        ),
        (
            {"timezone": "Asia/Kolkata"},
            "timezone: timezone Asia/Kolkata has a UTC offset that is not a whole number of"
            " hours; usage is rolled up per UTC hour, so billing periods must start on a whole"
            " UTC hour",
        ),
        ({"discounts": "10%"}, "discounts: must be a list of discounts, not a str"),
        (
            {
                "discounts": [
                    {"price": "seat_advanced", "percent_off": True, "valid_from": "2026-01-01"}
                ]
            },
            "discounts.0.percent_off: must be a decimal number, not the boolean true",
        ),
        (
            {
                "discounts": [
                    {"price": "seat_advanced", "percnt_off": "5", "valid_from": "2026-01-01"}
                ]
            },
            "discounts.0.percnt_off: unknown field; did you mean 'percent_off'? (the fields are"
            " price, percent_off, amount_off, valid_from, valid_to)",
        ),
    ],
)
def test_odd_values_are_refused_with_line_and_field(
    loader: Loader, changes: dict[str, Any], expected: str
) -> None:
    records = rows()
    records[0].update(changes)
    problems = loader.refused(records)
    assert problems[0] == f"line 1: {expected}"


def test_a_misspelt_field_is_refused_not_ignored(loader: Loader) -> None:
    records = rows()
    records[1]["plan_idd"] = records[1].pop("plan")
    assert loader.refused(records) == [
        "line 2: plan: Field required",
        "line 2: plan_idd: unknown field; did you mean 'plan'? (the fields are customer_id,"
        " name, currency, timezone, stripe_customer_id, collection_method, days_until_due,"
        " billing_address, tax_ids, subscription_id, plan, billing_anchor_day, start, end,"
        " discounts)",
    ]


def test_a_csv_header_with_an_unknown_column_is_one_problem(loader: Loader) -> None:
    records = rows()
    for r in records:
        r["plan_idd"] = r.pop("plan")
    path = write_csv(loader.tmp / "c.csv", records)
    with loader.ledger.Session.begin() as session, pytest.raises(CustomersFileInvalid) as info:
        billing.load_customers_file(session, path)
    assert info.value.problems == [
        "line 1: header: unknown column 'plan_idd'; did you mean 'plan'? (the fields are"
        " customer_id, name, currency, timezone, stripe_customer_id, collection_method,"
        " days_until_due, billing_address, tax_ids, subscription_id, plan,"
        " billing_anchor_day, start, end, discounts)"
    ]
    # A CSV anchor day is text: digits are a number.
    assert (
        billing.read_customers(write_csv(loader.tmp / "ok.csv", rows()))[1][1].billing_anchor_day
        == 31
    )


def test_lines_are_numbered_by_newlines_only(loader: Loader) -> None:
    """U+2028 is allowed inside a JSON string: it must not split the line (and shift
    every line number after it); in an id it is refused like any separator."""
    records = rows()
    records[0]["name"] = "Acme\u20281"
    path = loader.tmp / "ls.jsonl"
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    records[2]["end"] = "2026-01-01"
    path.write_text(path.read_text().rsplit("\n", 2)[0] + "\n" + json.dumps(records[2]) + "\n")
    with loader.ledger.Session.begin() as session, pytest.raises(CustomersFileInvalid) as info:
        billing.load_customers_file(session, path)
    assert [p.split(": ")[0:2] for p in info.value.problems] == [
        ["line 1", "name"],
        ["line 3", "end"],
    ]


def test_a_file_that_is_not_utf8_names_its_line(loader: Loader) -> None:
    path = loader.tmp / "latin1.jsonl"
    path.write_bytes(
        write(loader.tmp / "x.jsonl", rows()[:1]).read_bytes() + b'{"name": "Caf\xe9"}\n'
    )
    with loader.ledger.Session.begin() as session, pytest.raises(CustomersFileInvalid) as info:
        billing.load_customers_file(session, path)
    assert info.value.problems == ["line 2: is not UTF-8 text: save the file as UTF-8"]


IDS = [
    "cus_1",
    "Åsa Öberg AB",
    "客户-42",
    "a b",
    " lead",
    "trail ",
    "tab\tin",
    "nul\x00",
    "zw\u200bj",
    "nbsp\u00a0x",
    "bidi\u202ex",
    "line\u2028sep",
    "bom\ufeff",
    "private\ue000",
    "del\x7f",
    "em\u2003space",
]


def test_an_id_loaded_here_is_one_ingest_accepts(warehouse: Any) -> None:
    """The printable-id rule is ingest's (sql/queries/ingest/validate.sql,
    bad_customer_id): each id is refused here exactly when ingest refuses an event that
    carries it as its customer id."""
    from meters.ingest.ingestor import ingest_events

    at = datetime(2026, 11, 10, 12, tzinfo=UTC)
    events = [
        {
            "event_id": f"e{i}",
            "customer_id": text,
            "meter": "fin_resolution",
            "timestamp": at.isoformat(),
            "properties": {"channel": "chat"},
        }
        for i, text in enumerate(IDS)
    ]
    ingest_events(
        warehouse,
        billing.read_catalog(CATALOG).meters,
        events,
        ingested_at=datetime(2026, 11, 11, tzinfo=UTC),
    )
    rejected = {
        int(event_id[1:]): reason
        for event_id, reason in warehouse.query_rows(
            "SELECT event_id, reason FROM usage_events_rejected"
        )
    }
    assert set(rejected.values()) <= {"bad_customer_id"}, rejected
    ingest_refuses = [i in rejected for i in range(len(IDS))]
    we_refuse = [billing.customers.printable_problem(text) is not None for text in IDS]
    assert we_refuse == ingest_refuses
    assert we_refuse.count(False) == 4  # the first four are good ids


# --- 4. every problem at once ------------------------------------------------------------


def test_every_problem_of_every_kind_at_once(loader: Loader) -> None:
    """A file whose lines each have a different fault: each is reported, in line order,
    the file's own problems beside the ledger's, and nothing is loaded."""
    records: list[Any] = rows()
    records[1]["customer_id"] = "cus\x00"
    records[2]["plan"] = "standrd"
    records.append(sub(1, "sub_00004", "volume", "2026-03-01"))
    path = loader.path(records)
    path.write_text(path.read_text() + "{not json\n")
    with loader.ledger.Session.begin() as session, pytest.raises(CustomersFileInvalid) as info:
        billing.load_customers_file(session, path)
    assert [p.split(":")[0:2] for p in info.value.problems] == [
        ["line 2", " customer_id"],
        ["line 3", " plan"],
        ["line 4", " start"],
        ["line 5", " invalid JSON"],
    ]
    assert snapshot(loader.ledger) == []


def test_many_bad_lines_show_the_first_twenty_and_count_the_rest(loader: Loader) -> None:
    records = [
        sub(1, f"sub_{i:03d}", "standard", "2026-01-01", customer_id=f"c{i}\x01") for i in range(30)
    ]
    problems = loader.refused(records)
    assert len(problems) == 30
    with pytest.raises(CustomersFileInvalid) as info:
        billing.read_customers(loader.path(records))
    message = str(info.value)
    lines = message.split("\n")
    assert lines[0].endswith(
        ": 30 problem(s) on 30 line(s); nothing was loaded: fix them and load the file again"
    )
    assert [ln.strip().split(":")[0] for ln in lines[1:21]] == [f"line {n}" for n in range(1, 21)]
    assert lines[21:] == ["  ... and 10 more problem(s) on 10 more line(s)"]


@pytest.fixture
def configured(loader: Loader, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loader]:
    monkeypatch.setenv("METERLINE_LEDGER_URL", loader.ledger.url)
    monkeypatch.setenv("METERLINE_CATALOG_PATH", str(CATALOG))
    settings.cache_clear()
    yield loader
    settings.cache_clear()


def test_the_command_exits_2_with_every_bad_line(configured: Loader) -> None:
    records = rows()
    records[0]["billing_anchor_day"] = 40
    records[2]["timezone"] = "Factory"
    result = CliRunner().invoke(main, ["customers", "load", str(configured.path(records))])
    assert result.exit_code == 2
    out = result.output.splitlines()
    assert out[0].startswith("meterline: error: ") and out[0].endswith(
        ": 2 problem(s) on 2 line(s); nothing was loaded: fix them and load the file again"
    )
    assert out[1] == "  line 1: billing_anchor_day: must be between 1 and 31, got 40"
    assert out[2].startswith("  line 3: timezone: 'Factory' is not a place's timezone")
    assert "Traceback" not in result.output
    assert snapshot(configured.ledger) == []


@pytest.mark.single_warehouse
def test_a_plan_change_bills_each_event_once(
    warehouse: Any, chdb_folder: Path, tmp_path: Path
) -> None:
    """The way rule 2 leaves to change plans, end to end: basic until Nov 16 (the first
    day not billed), by_channel from then on. Each resolution is billed on exactly one of
    the two invoices: 3 before Nov 16 on basic's, 4 after on by_channel's."""
    from tests.scenarios.harness import World, day, resolutions
    from tests.scenarios.harness import utc as at

    class Row:
        def __init__(self, **fields: Any) -> None:
            self.fields = fields

        def row(self) -> dict[str, Any]:
            return self.fields

    common = {
        "customer_id": "switcher",
        "name": "Switcher",
        "currency": "USD",
        "timezone": "UTC",
        "billing_anchor_day": 1,
        "discounts": [],
    }
    world = World(warehouse, chdb_folder, tmp_path / "world")
    world.load_customers(
        [
            Row(
                **common,
                subscription_id="sub_basic",
                plan="basic",
                start="2026-11-01",
                end="2026-11-16",
            ),
            Row(
                **common,
                subscription_id="sub_channel",
                plan="by_channel",
                start="2026-11-16",
                end=None,
            ),
        ]  # type: ignore[list-item]
    )
    world.deliver(
        [
            *resolutions("switcher", "before", 3, "2026-11-10 08:00", channel="chat"),
            *resolutions("switcher", "after", 4, "2026-11-20 08:00", channel="chat"),
        ]
    )
    world.nightly(day("2026-11-10"), day("2026-11-20"))
    world.close(at("2026-12-04 00:00"))
    billed = {
        (inv["period_start_local"], line["price_id"]): (
            Decimal(line["quantity"]),
            Decimal(line["amount"]),
        )
        for inv in world.invoices()
        for line in inv["lines"]
        if line["price_id"].startswith("resolution")
    }
    assert billed == {
        ("2026-11-01", "resolution"): (3, Decimal("3.00")),
        ("2026-11-16", "resolution_chat"): (4, Decimal("4.00")),
        ("2026-11-16", "resolution_email"): (0, 0),
        ("2026-11-16", "resolution_phone"): (0, 0),
    }


def test_a_broken_csv_line_is_named(loader: Loader) -> None:
    path = loader.tmp / "broken.csv"
    path.write_text(
        "customer_id,name,currency,timezone,subscription_id,plan,billing_anchor_day,start\n"
        '"cus_1"x,Acme,USD,UTC,sub_1,standard,1,2026-01-01\n'
    )
    with loader.ledger.Session.begin() as session, pytest.raises(CustomersFileInvalid) as info:
        billing.load_customers_file(session, path)
    assert info.value.problems == [
        "line 2: not valid CSV (',' expected after '\"'); nothing after it was read"
    ]
