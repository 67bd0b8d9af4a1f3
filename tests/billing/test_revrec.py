"""Revenue recognition's pure rules (billing/revrec; docs/revrec.md): the allocation of
minor units over days, the schedule of each kind of line, paid commitments, balances,
the journal and the waterfall. No database, no warehouse: typed values in, rows out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.revrec import (
    Accounts,
    GrantEntry,
    RevGrant,
    RevInvoice,
    RevLine,
    allocate,
    balances,
    build_schedule,
    journal_entries,
    waterfall,
)
from billing.revrec.balances import days_between
from billing.revrec.journal import role_totals
from billing.revrec.model import service_days

OCT = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
NY_NOV = (datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 12, 1, 5, tzinfo=UTC))
KEY = "sub|2026-10-01T00:00:00Z|{price}|v1|{kind}"
ACCOUNTS = Accounts("1200", "1210", "2400", "4000", "4900", "4910", "4950", {"fin": "4100"})


def line(
    line_id: int,
    kind: str,
    amount: int,
    *,
    price: str = "fin",
    key: str | None = None,
    aggregation: str | None = "count",
    daily: dict[date, Decimal] | None = None,
    span: tuple[datetime, datetime] = OCT,
    tz: str = "UTC",
    billed_on: date | None = date(2026, 11, 4),
    quantity: Decimal = Decimal(1),
    invoice_id: int = 1,
    **kw: Any,
) -> RevLine:
    return RevLine(
        line_id=line_id,
        key=key or KEY.format(price=price, kind=kind),
        invoice_id=invoice_id,
        customer="c",
        currency="USD",
        timezone=tz,
        kind=kind,
        price_id=price,
        aggregation=aggregation,
        amount_minor=amount,
        quantity=quantity,
        service_start=span[0],
        service_end=span[1],
        billed_on=billed_on,
        daily=daily,
        **kw,
    )


def by_day(rows: Sequence[Any], key_part: str = "") -> dict[date, int]:
    out: dict[date, int] = {}
    for r in rows:
        if key_part in r.key:
            out[r.day] = out.get(r.day, 0) + r.amount_minor
    return out


# --- allocation ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(-(10**12), 10**12),
    weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=40).filter(any),
)
def test_allocation_adds_up_exactly_and_stays_within_a_minor_unit_of_each_share(
    total: int, weights: list[int]
) -> None:
    parts = allocate(total, list(enumerate(weights)))
    assert sum(p for _, p in parts) == total
    whole = sum(weights)
    for (_, part), weight in zip(parts, weights, strict=True):
        assert abs(Fraction(part) - Fraction(total * weight, whole)) < 1
    # A negative amount lands on the same days as its positive (a discount, a credit).
    assert [p for _, p in allocate(-total, list(enumerate(weights)))] == [-p for _, p in parts]


def test_remainders_go_to_the_largest_fraction_then_the_earliest_day() -> None:
    # 100.00 over 31 days: 322 each and 18 minor units left, to the first 18 days.
    parts = [p for _, p in allocate(10000, [(d, 1) for d in range(31)])]
    assert parts == [323] * 18 + [322] * 13
    # 1.00 by 2:1: 66.67 and 33.33 -> 67 (the larger fraction) and 33.
    assert allocate(100, [("a", 2), ("b", 1)]) == [("a", 67), ("b", 33)]
    assert allocate(1, [("a", 1), ("b", 1)]) == [("a", 1), ("b", 0)]


@pytest.mark.parametrize(
    ("total", "weights", "message"),
    [
        (1, [("a", 0)], "add up to zero"),
        (1, [("a", -1), ("b", 2)], "negative"),
        (1, [("a", 0.5)], "int or a Decimal"),
        (Decimal(1), [("a", 1)], "whole minor units"),
    ],
)
def test_allocation_refuses_what_it_cannot_split(total: Any, weights: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        allocate(total, weights)


# --- the schedule of a line ------------------------------------------------------------


def test_usage_is_recognized_on_the_days_it_happened() -> None:
    usage = line(
        1,
        "usage",
        20000,
        daily={date(2026, 10, 10): Decimal(200), date(2026, 10, 20): Decimal(100)},
    )
    (rows,) = [build_schedule([usage]).rows]
    assert by_day(rows) == {date(2026, 10, 10): 13333, date(2026, 10, 20): 6667}
    assert {r.rule for r in rows} == {"usage_days"} and {r.category for r in rows} == {"revenue"}
    assert rows[0].key == f"{usage.key}@2026-10-10"


@pytest.mark.parametrize(
    ("kind", "aggregation", "daily"),
    [
        ("flat", None, None),  # a fixed fee
        ("usage", "latest", None),  # seats held, billed per seat
        ("usage", "time_weighted", {date(2026, 10, 3): Decimal(1)}),  # seats, time-weighted
        ("usage", "max", {date(2026, 10, 3): Decimal(5)}),  # a peak: no day owns it
        ("usage", "unique_count", {date(2026, 10, 3): Decimal(5)}),
        ("minimum_true_up", None, None),
        ("usage", "count", None),  # a first-tier flat fee with no usage at all
        ("usage", "sum", {date(2026, 10, 3): Decimal(-2)}),  # negative usage: no weights
    ],
)
def test_fees_and_usage_without_days_are_recognized_ratably(
    kind: str, aggregation: str | None, daily: dict[date, Decimal] | None
) -> None:
    rows = build_schedule([line(1, kind, 10000, aggregation=aggregation, daily=daily)]).rows
    assert len(rows) == 31 and {r.rule for r in rows} == {"ratable"}
    assert sorted({r.amount_minor for r in rows}) == [322, 323]
    assert sum(r.amount_minor for r in rows) == 10000


def test_ratably_per_local_day_across_a_clock_change() -> None:
    # New York's November has 30 days (clocks back on Nov 1: 721 hours): each day the
    # same share, whatever its length in hours.
    fee = line(1, "flat", 9000, aggregation=None, span=NY_NOV, tz="America/New_York")
    rows = build_schedule([fee]).rows
    assert len(service_days(*NY_NOV, "America/New_York")) == 30
    assert [r.amount_minor for r in rows] == [300] * 30
    assert rows[0].day == date(2026, 11, 1) and rows[-1].day == date(2026, 11, 30)


def test_a_discount_and_the_credits_follow_the_line_they_reduce() -> None:
    daily = {date(2026, 10, 10): Decimal(200), date(2026, 10, 20): Decimal(100)}
    usage = line(1, "usage", 20000, daily=daily)
    discount = line(2, "discount", -2000)
    promo = line(
        3,
        "credit",
        -5000,
        key=usage.key + "|credit|promo",
        pays_key=usage.key,
        grant_id="promo",
        grant_kind="promotional",
    )
    rows = build_schedule([usage, discount, promo]).rows
    assert by_day(rows, "|discount") == {date(2026, 10, 10): -1333, date(2026, 10, 20): -667}
    assert by_day(rows, "|credit|") == {date(2026, 10, 10): -3333, date(2026, 10, 20): -1667}
    assert {r.category for r in rows if "|credit|" in r.key} == {"credit"}
    # A promotion has no price: nothing is released, nothing billed.
    assert {r.category for r in rows} == {"revenue", "discount", "credit"}


def test_a_flat_fees_discount_follows_the_fee() -> None:
    fee = line(1, "flat", 3100, price="platform", aggregation=None)
    discount = line(2, "discount", -310, price="platform", aggregation=None)
    rows = build_schedule([fee, discount]).rows
    assert set(by_day(rows, "|discount").values()) == {-10}


def test_an_adjustment_lands_on_its_late_usage_days_with_its_discount_and_credit() -> None:
    usage = line(1, "usage", 20000, daily={date(2026, 10, 10): Decimal(300)})
    suffix = "|adj>2026-11-01T00:00:00Z"
    late = line(
        5,
        "adjustment",
        1000,
        key=usage.key + suffix,
        adjusts_key=usage.key,
        daily={date(2026, 10, 25): Decimal(20)},
        invoice_id=2,
    )
    discount_key = KEY.format(price="fin", kind="discount")
    late_discount = line(
        6,
        "adjustment",
        -100,
        key=discount_key + suffix,
        adjusts_key=discount_key,
        invoice_id=2,
    )
    # The corrected discount is not in this set: it follows its sibling adjustment.
    rows = build_schedule([usage, late, late_discount]).rows
    assert by_day(rows, suffix) == {date(2026, 10, 25): 900}
    assert {r.rule for r in rows if r.key.startswith(usage.key + suffix)} == {"late_usage_days"}
    assert {r.category for r in rows if r.key.startswith(discount_key)} == {"discount"}
    # Without late usage days (a re-pricing), an adjustment follows the line it corrects.
    repriced = line(7, "adjustment", 300, key=usage.key + suffix, adjusts_key=usage.key)
    rows = build_schedule([usage, repriced]).rows
    assert by_day(rows, suffix) == {date(2026, 10, 10): 300}


def test_a_line_of_zero_has_no_rows_and_every_line_adds_up() -> None:
    schedule = build_schedule([line(1, "usage", 0, daily={date(2026, 10, 1): Decimal(3)})])
    assert schedule.rows == [] and schedule.problems == []


# --- paid commitments ------------------------------------------------------------------


def commit(**kw: Any) -> RevGrant:
    fields: dict[str, Any] = {
        "grant_id": "g",
        "customer": "c",
        "currency": "USD",
        "timezone": "UTC",
        "kind": "paid_commit",
        "granted": Decimal("200.00"),
        "price_paid_minor": 15000,
        "effective_from": datetime(2026, 10, 1, tzinfo=UTC),
        **kw,
    }
    return RevGrant(**fields)


def credit_line(line_id: int, units: str, day: int, *, billed: bool = True) -> RevLine:
    usage_key = f"sub|p{line_id}|fin|v1|usage"
    return line(
        line_id,
        "credit",
        -int(Decimal(units) * 100),
        key=f"{usage_key}|credit|g",
        quantity=Decimal(units),
        grant_id="g",
        grant_kind="paid_commit",
        span=(datetime(2026, 10, day, tzinfo=UTC), datetime(2026, 10, day + 1, tzinfo=UTC)),
        billed_on=date(2026, 11, 4) if billed else None,
    )


def test_a_commitments_price_is_released_as_its_credits_pay_and_the_rest_breaks() -> None:
    # 200 of value sold for 150.00. Three credits of 66.66, 66.67, 10 (1/3, 1/3, ...) then
    # expiry: each part is the running balance's value rounded, so they add up to 150.00.
    lines = [credit_line(1, "66.66", 3), credit_line(2, "66.67", 4), credit_line(3, "10.00", 5)]
    expire = GrantEntry("expire|g", "expire", Decimal("56.67"), datetime(2026, 12, 1, tzinfo=UTC))
    schedule = build_schedule(lines, [commit(entries=[expire], remaining=Decimal(0))])
    released = by_day([r for r in schedule.rows if r.category == "commit_release"])
    # value(200) = 15000, value(133.34) = 10000.5 -> 10001, value(66.67) = 5000.25 -> 5000,
    # value(56.67) = 4250.25 -> 4250.
    assert released == {date(2026, 10, 3): 4999, date(2026, 10, 4): 5001, date(2026, 10, 5): 750}
    (breakage,) = [r for r in schedule.rows if r.category == "breakage"]
    assert (breakage.day, breakage.amount_minor, breakage.key) == (
        date(2026, 12, 1),
        4250,
        "expire|g@2026-12-01",
    )
    assert sum(released.values()) + breakage.amount_minor == 15000
    assert [(e.kind, e.day, e.amount_minor) for e in schedule.billing] == [
        ("commit", date(2026, 10, 1), 15000)
    ]
    assert schedule.problems == []


def test_a_commitment_at_face_value_releases_exactly_what_its_credits_paid() -> None:
    schedule = build_schedule(
        [credit_line(1, "80.00", 3)], [commit(price_paid_minor=20000, remaining=Decimal(120))]
    )
    released = [r for r in schedule.rows if r.category == "commit_release"]
    credits = [r for r in schedule.rows if r.category == "credit"]
    assert sum(r.amount_minor for r in released) == -sum(r.amount_minor for r in credits) == 8000


def test_a_void_unbills_and_a_rollover_moves_the_rest_to_the_next_term() -> None:
    void = GrantEntry("void|g", "void", Decimal(100), datetime(2026, 10, 20, tzinfo=UTC))
    voided = build_schedule([], [commit(entries=[void], remaining=Decimal(100))])
    assert [(e.kind, e.amount_minor) for e in voided.billing] == [
        ("commit", 15000),
        ("commit_void", -7500),
    ]
    roll = GrantEntry("rollover|g", "rollover", Decimal(200), datetime(2027, 1, 1, tzinfo=UTC))
    nxt = commit(grant_id="g:rollover", rolled_over_from="g", price_paid_minor=15000)
    schedule = build_schedule([], [commit(entries=[roll], remaining=Decimal(0)), nxt])
    assert [(t.from_grant, t.to_grant, t.amount_minor) for t in schedule.transfers] == [
        ("g", "g:rollover", 15000)
    ]
    assert [e.grant_id for e in schedule.billing] == ["g"]  # the next term is not billed again
    assert schedule.problems == []
    wrong = commit(grant_id="g:rollover", rolled_over_from="g", price_paid_minor=14999)
    schedule = build_schedule([], [commit(entries=[roll]), wrong])
    assert schedule.problems and "14999" in schedule.problems[0]


def test_a_correction_moving_an_empty_commitment_between_lines_gives_back_first() -> None:
    # 200 of value paid on two lines (120 + 80): empty. Late usage of the first line's
    # period moves 10 to it from the second: +10 on one correction, -10 on another, at
    # the same instant, the taking one first by id. The units given back count first,
    # as finalize records them: never more than it holds (was a problem, 10 over).
    span = (datetime(2026, 10, 3, tzinfo=UTC), datetime(2026, 10, 4, tzinfo=UTC))
    adjust = {"grant_id": "g", "grant_kind": "paid_commit", "span": span, "invoice_id": 2}
    lines = [
        credit_line(1, "120.00", 3),
        credit_line(2, "80.00", 3),
        line(3, "adjustment", -1000, key="fix|1", quantity=Decimal(10), **adjust),
        line(4, "adjustment", 1000, key="fix|2", quantity=Decimal(-10), **adjust),
    ]
    schedule = build_schedule(lines, [commit(remaining=Decimal(0))])
    assert schedule.problems == []
    released = [r for r in schedule.rows if r.category == "commit_release"]
    assert sum(r.amount_minor for r in released) == 15000


def test_a_commitment_that_does_not_tie_to_its_credit_ledger_is_a_problem() -> None:
    # A draft's credit is not in the credit ledger yet: it is pending, not a difference.
    draft = credit_line(1, "30.00", 3, billed=False)
    assert build_schedule([draft], [commit(remaining=Decimal(200))]).problems == []
    problems = build_schedule([draft], [commit(remaining=Decimal(150))]).problems
    assert problems and "credit ledger holds 150" in problems[0]


# --- balances ------------------------------------------------------------------------


def test_balances_add_up_every_day_billed_in_arrears_and_prepaid() -> None:
    daily = {date(2026, 10, 10): Decimal(1)}
    usage = line(1, "usage", 20000, daily=daily, billed_on=date(2026, 11, 4))
    paid = line(
        2,
        "credit",
        -8000,
        key=usage.key + "|credit|g",
        pays_key=usage.key,
        grant_id="g",
        grant_kind="paid_commit",
        quantity=Decimal(80),
    )
    schedule = build_schedule(
        [usage, paid], [commit(price_paid_minor=20000, remaining=Decimal(120))]
    )
    invoice = RevInvoice(1, "c", "USD", 12000, date(2026, 11, 4))
    days = days_between(date(2026, 9, 30), date(2026, 11, 5))
    found = {b.day: b for b in balances(schedule.rows, [invoice], schedule.billing, days)}
    assert all(b.gap == 0 for b in found.values())
    q = lambda d: (lambda b: (b.billed, b.recognized, b.deferred, b.unbilled))(found[d])  # noqa: E731
    assert q(date(2026, 9, 30)) == (0, 0, 0, 0)
    assert q(date(2026, 10, 1)) == (20000, 0, 20000, 0)  # the commitment sold: deferred
    assert q(date(2026, 10, 10)) == (20000, 20000, 12000, 12000)  # usage earned, unbilled
    assert q(date(2026, 11, 4)) == (32000, 20000, 12000, 0)  # invoiced: receivable


def test_balances_refuse_rows_of_an_invoice_they_are_not_given() -> None:
    rows = build_schedule([line(1, "flat", 100, aggregation=None)]).rows
    with pytest.raises(ValueError, match="invoice 1"):
        balances(rows, [], [], [date(2026, 10, 31)])


# --- the journal, on random ledgers ------------------------------------------------------


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[list[RevLine], list[RevGrant], list[RevInvoice]]:
    """A customer's random month: invoices of usage, fees, discounts, credits (paid and
    promotional), adjustments, and a commitment that may expire."""
    lines: list[RevLine] = []
    invoices: list[RevInvoice] = []
    taken = Decimal(0)
    n = draw(st.integers(1, 3))
    for i in range(n):
        inv = i + 1
        billed = draw(st.sampled_from([None, date(2026, 10, 15), date(2026, 11, 4)]))
        start = datetime(2026, 9 + i, 1, tzinfo=UTC)
        span = (start, start + timedelta(days=30))
        days = {
            start.date() + timedelta(days=d): Decimal(draw(st.integers(0, 50)))
            for d in draw(st.sets(st.integers(0, 29), max_size=5))
        }
        amount = draw(st.integers(0, 10**6))
        ukey = f"sub|p{i}|fin|v|usage"
        mine = [
            line(
                10 * inv,
                "usage",
                amount,
                key=ukey,
                daily=days,
                span=span,
                billed_on=billed,
                invoice_id=inv,
            ),
            line(
                10 * inv + 1,
                "flat",
                draw(st.integers(0, 10**5)),
                key=f"sub|p{i}|fee|v|flat",
                price="fee",
                aggregation=None,
                span=span,
                billed_on=billed,
                invoice_id=inv,
            ),
        ]
        off = draw(st.integers(0, amount))
        if off:
            mine.append(
                line(
                    10 * inv + 2,
                    "discount",
                    -off,
                    key=f"sub|p{i}|fin|v|discount",
                    span=span,
                    billed_on=billed,
                    invoice_id=inv,
                )
            )
        pay = draw(st.integers(0, amount - off))
        if pay and taken + pay <= 5000:
            taken += pay
            mine.append(
                line(
                    10 * inv + 3,
                    "credit",
                    -pay,
                    key=f"{ukey}|credit|g",
                    pays_key=ukey,
                    grant_id="g",
                    grant_kind="paid_commit",
                    quantity=Decimal(pay),
                    span=span,
                    billed_on=billed,
                    invoice_id=inv,
                )
            )
        if draw(st.booleans()):
            mine.append(
                line(
                    10 * inv + 4,
                    "adjustment",
                    draw(st.integers(-500, 500)),
                    key=f"{ukey}|adj>x{i}",
                    adjusts_key=ukey,
                    span=span,
                    billed_on=billed,
                    invoice_id=inv,
                )
            )
        lines += mine
        invoices.append(RevInvoice(inv, "c", "USD", sum(ln.amount_minor for ln in mine), billed))
    entries = []
    if draw(st.booleans()) and taken < 5000:
        entries.append(
            GrantEntry(
                "expire|g", "expire", Decimal(5000) - taken, datetime(2026, 11, 20, tzinfo=UTC)
            )
        )
    grant = commit(
        granted=Decimal(5000),
        price_paid_minor=draw(st.integers(1, 10**6)),
        entries=entries,
        effective_from=datetime(2026, 9, 1, tzinfo=UTC),
    )
    return lines, [grant], invoices


@settings(max_examples=60, deadline=None)
@given(ledgers())
def test_every_journal_entry_balances_and_the_journal_ties_to_the_balances(
    ledger: tuple[list[RevLine], list[RevGrant], list[RevInvoice]],
) -> None:
    lines, grants, invoices = ledger
    schedule = build_schedule(lines, grants)
    assert schedule.problems == []
    for ln in lines:  # every line's rows add up to it exactly
        assert (
            sum(
                r.amount_minor for r in schedule.rows if r.line_key == ln.key and r.grant_id is None
            )
            == ln.amount_minor
        )
    first, last = date(2026, 10, 1), date(2026, 10, 31)
    days = days_between(first - timedelta(days=1), last)
    found = balances(schedule.rows, invoices, schedule.billing, days)
    assert all(b.gap == 0 for b in found)
    entries = journal_entries(
        "2026-10",
        last,
        [r for r in schedule.rows if first <= r.day <= last],
        [i for i in invoices if i.billed_on is not None and first <= i.billed_on <= last],
        [e for e in schedule.billing if first <= e.day <= last],
        ACCOUNTS,
    )
    assert all(e.balanced for e in entries)
    assert len({e.external_id for e in entries}) == len(entries)
    moved = role_totals(entries)
    opening, closing = found[0], found[-1]
    net = lambda role: moved.get(("USD", role), 0)  # noqa: E731
    assert net("accounts_receivable") == closing.billed - opening.billed
    assert -sum(net(r) for r in ("revenue", "discounts", "credits", "breakage")) == (
        closing.recognized - opening.recognized
    )
    assert -net("deferred_revenue") == closing.deferred_commitments - opening.deferred_commitments
    contract = lambda b: b.unbilled - (b.deferred - b.deferred_commitments)  # noqa: E731
    assert net("unbilled_receivables") == contract(closing) - contract(opening)


def test_the_accounts_of_the_journal() -> None:
    usage = line(1, "usage", 1000, daily={date(2026, 10, 2): Decimal(1)})
    fee = line(2, "flat", 3100, price="platform", aggregation=None)
    discount = line(3, "discount", -100)
    rows = build_schedule([usage, fee, discount]).rows
    (entry,) = journal_entries("2026-10", date(2026, 10, 31), rows, [], [], ACCOUNTS)
    assert entry.external_id == "meterline-2026-10-USD-revenue" and entry.date == date(2026, 10, 31)
    assert {
        (ln.account, ln.role, ln.memo): (ln.debit_minor, ln.credit_minor) for ln in entry.lines
    } == {
        ("4100", "revenue", "revenue: fin"): (0, 1000),
        ("4000", "revenue", "revenue: platform"): (0, 3100),
        ("4900", "discounts", "discounts: fin"): (100, 0),
        ("1210", "unbilled_receivables", "revenue earned"): (4000, 0),
    }
    net = Accounts("1200", "1210", "2400", "4000", None, "4910", "4950")
    (entry,) = journal_entries("2026-10", date(2026, 10, 31), rows, [], [], net)
    assert ("4000", 100, 0) in {(ln.account, ln.debit_minor, ln.credit_minor) for ln in entry.lines}


def test_the_waterfall_puts_each_row_under_the_month_it_was_billed() -> None:
    usage = line(
        1, "usage", 1000, daily={date(2026, 10, 2): Decimal(1)}, billed_on=date(2026, 11, 4)
    )
    draft = line(
        2,
        "flat",
        3000,
        price="fee",
        aggregation=None,
        billed_on=None,
        invoice_id=2,
        span=(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
    )
    found = waterfall(build_schedule([usage, draft]).rows, "2026-10", "2026-11")
    assert found.months == ["2026-10", "2026-11"]
    assert found.cells["USD"] == {("2026-11", "2026-10"): 1000, ("unbilled", "2026-11"): 3000}
    assert found.billing_months("USD") == ["2026-11", "unbilled"]
    assert found.recognized("USD", "2026-11") == 3000
