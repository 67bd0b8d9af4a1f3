"""A reload that moves a subscription's end re-places its drafts (billing/customers/
drafts.py), and the refusal of an end that would change a finalized period names exactly
the ends allowed (billing/customers/terms.py, allowed_ends). Found by the breaker: a
draft kept its full period after the end cut it, so it was finalized two weeks late and
a void re-issued it with the same wrong period; the advice named ends it then refused.

sub_00001: plan standard, America/New_York, anchor 1, from 2026-01-01."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

import billing
from billing.customers.checks import StoredInvoice
from billing.customers.terms import _end_problem, allowed_ends, allowed_text
from billing.models import Invoice, InvoiceLine, Subscription
from billing.periods import Period, Terms, local_midnight
from tests.billing.conftest import Ledger
from tests.billing.factories import CATALOG, CUSTOMERS, period_of, standard_charges
from tests.billing.test_customers_rules import Loader

NY = "America/New_York"
MAY = period_of("sub_00001", 2026, 5)
JUNE = period_of("sub_00001", 2026, 6)
JULY = period_of("sub_00001", 2026, 7)
GRACE = timedelta(hours=72)
CUT = Period(JUNE.start, local_midnight(date(2026, 6, 20), NY))  # ended on 2026-06-20


def row(end: str | None) -> list[dict[str, Any]]:
    rows = copy.deepcopy(CUSTOMERS[:1])
    rows[0]["end"] = end
    return rows


@pytest.fixture
def loader(ledger: Ledger, tmp_path: Path) -> Loader:
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
    loader = Loader(ledger, tmp_path)
    loader.load(row(None))
    return loader


def post(loader: Loader, period: Period, resolutions: int) -> int:
    with loader.ledger.Session.begin() as session:
        result = billing.post_charges(
            session,
            "sub_00001",
            period,
            standard_charges(session, resolutions=resolutions),
            rerate=True,
        )
    (invoice_id,) = result.invoice_ids.values()
    return invoice_id


def drafted(loader: Loader, *periods: Period) -> int:
    """May finalized (100 resolutions), drafts for `periods`, and May corrected to 120
    resolutions (+20 x 0.99 = 19.80, carried by the first draft). The May invoice id."""
    may = post(loader, MAY, 100)
    with loader.ledger.Session.begin() as session:
        billing.finalize(session, may, as_of=MAY.end + GRACE, grace=GRACE)
    for period in periods:
        post(loader, period, 50)
    with loader.ledger.Session.begin() as session:
        billing.post_adjustments(
            session, "sub_00001", MAY, standard_charges(session, resolutions=120), rerate=True
        )
    return may


def invoices(loader: Loader) -> list[tuple[datetime, datetime, str, int, list[str]]]:
    """(period start, end, status, total, line kinds) of every live invoice after May."""
    with loader.ledger.Session() as session:
        out = []
        for inv in session.scalars(
            select(Invoice)
            .where(Invoice.status != "void", Invoice.period_start > MAY.start)
            .order_by(Invoice.period_start)
        ):
            kinds = session.scalars(
                select(InvoiceLine.kind).where(InvoiceLine.invoice_id == inv.id)
            ).all()
            out.append(
                (
                    billing.Period(inv.period_start, inv.period_end).start,
                    billing.Period(inv.period_start, inv.period_end).end,
                    inv.status,
                    inv.total_minor,
                    sorted(kinds),
                )
            )
        return out


def finalize_due(loader: Loader, as_of: datetime) -> list[int]:
    with loader.ledger.Session.begin() as session:
        return billing.finalize_due(session, as_of=as_of, grace=GRACE)


def test_an_end_inside_a_drafted_period_cuts_the_draft(loader: Loader) -> None:
    """The breaker's repro on the ledger: June's draft carries May's correction; the end
    moves to June 20. The draft's period becomes June 1..20 at once (its own lines,
    priced for all of June, go; the correction stays), the cut period posts on it, and it
    is finalized at the cut end + 72 h, with the total the cut period's charges + 19.80."""
    drafted(loader, JUNE)
    loader.load(row("2026-06-20"))
    assert invoices(loader) == [(CUT.start, CUT.end, "draft", 1980, ["adjustment"])]

    draft = post(loader, CUT, 30)  # what close posts: the cut period, on the same draft
    # 30 x 0.99 + 3 seats x 99.00 + the correction
    assert invoices(loader) == [
        (CUT.start, CUT.end, "draft", 2970 + 29700 + 1980, ["adjustment", "usage", "usage"])
    ]
    assert CUT.end + GRACE == datetime.fromisoformat("2026-06-23T04:00:00+00:00")
    assert finalize_due(loader, CUT.end + GRACE - timedelta(seconds=1)) == []
    assert finalize_due(loader, CUT.end + GRACE) == [draft]
    assert invoices(loader)[0][2:4] == ("finalized", 2970 + 29700 + 1980)

    # The clean case's advice: the cut period is finalized, so the end stays where it is.
    assert loader.refused(row("2026-06-25")) == [
        f"line 1: end: subscription sub_00001 has finalized invoice {draft} (2026-06-01 to"
        " 2026-06-20); an end of 2026-06-25 would change that period, and a finalized"
        " period never changes: the end can be only 2026-06-20 (where it is now)"
    ]

    # Voiding it: the re-issue (carrying the correction) has the cut period too.
    with loader.ledger.Session.begin() as session:
        billing.void(session, draft, as_of=CUT.end + timedelta(days=10))
    assert invoices(loader) == [(CUT.start, CUT.end, "draft", 1980, ["adjustment"])]


def test_a_later_end_grows_the_draft_back(loader: Loader) -> None:
    drafted(loader, JUNE)
    loader.load(row("2026-06-20"))
    loader.load(row(None))
    assert invoices(loader) == [(JUNE.start, JUNE.end, "draft", 1980, ["adjustment"])]
    loader.load(row("2026-06-20"))
    loader.load(row("2026-06-20"))  # the same file again changes nothing
    assert invoices(loader) == [(CUT.start, CUT.end, "draft", 1980, ["adjustment"])]


def test_a_draft_left_uncut_by_an_earlier_version_is_cut_by_the_next_load(
    loader: Loader,
) -> None:
    """The breaker's ledger: the end was stored while the draft kept all of June."""
    drafted(loader, JUNE)
    with loader.ledger.Session.begin() as session:
        session.execute(update(Subscription).values(end_date=date(2026, 6, 20)))
    assert invoices(loader)[0][:2] == (JUNE.start, JUNE.end)
    assert not loader.load(row("2026-06-20")).changed  # the terms are as stored
    assert invoices(loader) == [(CUT.start, CUT.end, "draft", 1980, ["adjustment"])]


def test_an_end_before_a_draft_leaves_a_carrier_or_nothing(loader: Loader) -> None:
    """Ending on June 1: June's draft carries May's correction, so it stays as its carrier
    (the anchor cycle after the end, only the adjustment) and is finalized at June's end
    + 72 h; July's draft has nothing to carry and is deleted."""
    drafted(loader, JUNE, JULY)
    loader.load(row("2026-06-01"))
    assert invoices(loader) == [(JUNE.start, JUNE.end, "draft", 1980, ["adjustment"])]
    (carrier,) = finalize_due(loader, JUNE.end + GRACE)
    assert invoices(loader) == [(JUNE.start, JUNE.end, "finalized", 1980, ["adjustment"])]
    # The finalized carrier bounds the end from above now; May's end from below.
    assert loader.refused(row("2026-07-15")) == [
        f"line 1: end: subscription sub_00001 ended on 2026-06-01, and finalized invoice"
        f" {carrier} (2026-06-01 to 2026-07-01) carries corrections after its end; an end of"
        " 2026-07-15 would make that a billed period: the end can be only 2026-06-01 (where it"
        " is now); add a new subscription for later days"
    ]


# --- the advice names exactly the ends allowed --------------------------------------------


def _p(start: str, end: str) -> Period:
    return Period(
        local_midnight(date.fromisoformat(start), NY), local_midnight(date.fromisoformat(end), NY)
    )


def _terms(end: str | None) -> Terms:
    return Terms(1, NY, date(2026, 1, 1), date.fromisoformat(end) if end else None)


STATES = {
    # the last finalized period is a full one: that end or later, or open-ended
    "full": (None, [("2026-05-01", "2026-06-01")], "2026-06-01 or later, or none (open-ended)"),
    # the end cuts the last finalized period: no other end keeps it
    "cut": ("2026-06-20", [("2026-06-01", "2026-06-20")], "only 2026-06-20 (where it is now)"),
    # a finalized carrier after the end bounds it from above
    "carrier": (
        "2026-06-01",
        [("2026-05-01", "2026-06-01"), ("2026-07-01", "2026-08-01")],
        "from 2026-06-01 to 2026-07-01",
    ),
    # a carrier only (the periods' own invoices void)
    "carrier only": ("2026-06-01", [("2026-07-01", "2026-08-01")], "2026-07-01 or earlier"),
    # the breaker's ledger: a finalized invoice kept its full period past the end
    "wrong period": (
        "2026-06-20",
        [("2026-05-01", "2026-06-01"), ("2026-06-01", "2026-07-01")],
        "only 2026-06-20 (where it is now)",
    ),
}


@pytest.mark.parametrize("state", sorted(STATES))
def test_the_allowed_ends_are_exactly_those_accepted(state: str) -> None:
    end, periods, text = STATES[state]
    old = _terms(end)
    finalized = [StoredInvoice(i, "finalized", _p(*p)) for i, p in enumerate(periods, 1)]
    first, last, open_ended = allowed_ends(old, finalized)
    assert allowed_text(first, last, open_ended) == text

    def accepted(candidate: date | None) -> bool:
        return _end_problem(1, "s", old, candidate, finalized, []) is None

    def allowed(candidate: date | None) -> bool:
        if candidate is None:
            return open_ended and last is None
        return (first is None or candidate >= first) and (last is None or candidate <= last)

    assert accepted(None) == allowed(None)
    day = date(2026, 1, 2)
    while day < date(2026, 10, 1):
        assert (day, accepted(day)) == (day, allowed(day))
        day += timedelta(days=1)
