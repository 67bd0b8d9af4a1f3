"""What a voided grant holds for a period's drawdown (billing/credits/available.py; docs/
credits.md, "Void a grant": what it paid stays paid). Pure: a CreditBook built by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from billing.credits.available import CreditBook, _Entry
from rating.credits import Grant

OCT = ("sub", datetime(2026, 10, 1, tzinfo=UTC))
NOV = ("sub", datetime(2026, 11, 1, tzinfo=UTC))
OCT_END, NOV_END = NOV[1], datetime(2026, 12, 1, tzinfo=UTC)
VOID_AT = datetime(2026, 11, 15, tzinfo=UTC)


def _book(*entries: _Entry) -> CreditBook:
    grant = Grant("g", "KWD", Decimal(5), 50, datetime(2026, 10, 1, tzinfo=UTC), None, 1)
    book = CreditBook(grants={"c": [(grant, Decimal(5))]}, voided={"g"})
    book.entries["g"] = [_Entry("grant", Decimal(5), grant.effective_from, None), *entries]
    return book


def _available(book: CreditBook, period: tuple[str, datetime], end: datetime) -> Decimal:
    (grant,) = book.grants_for("c", period, end)
    return grant.remaining


def test_a_voided_grant_pays_again_only_what_it_paid_and_only_its_periods() -> None:
    paid = _Entry("consume", Decimal("4.489"), OCT_END, OCT)
    voided = _Entry("void", Decimal("0.511"), VOID_AT, None)
    book = _book(paid, voided)
    # A late correction of October: its consumption stays as booked, never more (its
    # rest went back to the issuer); November, which it never paid, gets nothing.
    assert _available(book, OCT, OCT_END) == Decimal("4.489")
    assert _available(book, NOV, NOV_END) == 0
    # October's invoice voided after the grant: the re-issue draws it again, up to what
    # it paid; November still nothing.
    back = _Entry("reverse", Decimal("4.489"), OCT_END, OCT)
    book = _book(paid, voided, back)
    assert _available(book, OCT, OCT_END) == Decimal("4.489")
    assert _available(book, NOV, NOV_END) == 0
    # Re-issued and consumed again: the peak stays what it paid once.
    again = _Entry("consume", Decimal("4.000"), OCT_END, OCT)
    book = _book(paid, voided, back, again)
    assert _available(book, OCT, OCT_END) == Decimal("4.489")
