"""The accounting journal of a month (pure; docs/revrec.md, "The journal").

Per month and currency, up to three balanced entries, each with a stable external id
(`meterline-YYYY-MM-CUR-KIND`), so importing the same month again changes nothing:

- ``revenue``: the month's schedule rows. Credit revenue per product line (a line's
  price id), discounts and credit lines (contra revenue), a paid commitment's releases
  (to the credits account, where they offset its credit lines: what is left there is
  the commitment's discount) and breakage; debit unbilled receivables with the lines'
  rows and deferred revenue with the commitments' releases and breakage.
- ``invoices``: the invoices finalized in the month: debit accounts receivable with
  their totals, credit unbilled receivables (the revenue entry put them there).
- ``commitments``: paid commitments sold in the month (debit accounts receivable,
  credit deferred revenue with their price) and voided (the reverse, for the unused
  part's price).

Unbilled receivables thus holds each contract's net position: revenue earned less
invoiced (a contract asset; negative: invoiced ahead, a liability), as ASC 606 presents
a contract. Amounts are integer minor units; debits equal credits in every entry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from billing.revrec.balances import RevInvoice
from billing.revrec.model import CATEGORIES, BillingEvent, ScheduleRow

#: The roles an account plays (settings map each to an account number; docs/revrec.md).
ROLES = (
    "accounts_receivable",
    "unbilled_receivables",
    "deferred_revenue",
    "revenue",
    "discounts",
    "credits",
    "breakage",
)
ENTRY_KINDS = ("revenue", "invoices", "commitments")
_BALANCE_SHEET = frozenset({"accounts_receivable", "unbilled_receivables", "deferred_revenue"})


@dataclass(frozen=True)
class Accounts:
    """Account numbers per role; `revenue_by_product` overrides `revenue` for a product
    line (a price id). `discounts` None books discounts to their product's revenue
    account (net revenue) instead of a contra account."""

    accounts_receivable: str
    unbilled_receivables: str
    deferred_revenue: str
    revenue: str
    discounts: str | None
    credits: str
    breakage: str
    revenue_by_product: Mapping[str, str] = field(default_factory=dict)

    def revenue_of(self, product: str) -> str:
        return self.revenue_by_product.get(product, self.revenue)

    def of_row(self, row: ScheduleRow) -> tuple[str, str]:
        """The (account, role) a schedule row is credited to (debited when negative)."""
        if row.category == "revenue":
            return self.revenue_of(row.product), "revenue"
        if row.category == "discount":
            return self.discounts or self.revenue_of(row.product), "discounts"
        if row.category in ("credit", "commit_release"):
            return self.credits, "credits"
        return self.breakage, "breakage"

    def of_role(self, role: str) -> str:
        """The account of a balance sheet role."""
        return {
            "accounts_receivable": self.accounts_receivable,
            "unbilled_receivables": self.unbilled_receivables,
            "deferred_revenue": self.deferred_revenue,
        }[role]


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One line of an entry: a debit or a credit (the other 0), minor units, on the
    account of `role` (ROLES)."""

    account: str
    role: str
    debit_minor: int
    credit_minor: int
    memo: str


@dataclass(frozen=True)
class JournalEntry:
    """One balanced journal entry of a month and currency."""

    external_id: str
    kind: str
    period: str
    currency: str
    date: date
    memo: str
    lines: tuple[JournalLine, ...]

    @property
    def debits(self) -> int:
        return sum(ln.debit_minor for ln in self.lines)

    @property
    def credits(self) -> int:
        return sum(ln.credit_minor for ln in self.lines)

    @property
    def balanced(self) -> bool:
        return self.debits == self.credits


def external_id(period: str, currency: str, kind: str) -> str:
    """The entry's stable external id: the same month, currency and kind always give
    the same id, so a re-import updates (or is refused as) the same entry."""
    return f"meterline-{period}-{currency}-{kind}"


class _Lines:
    """Signed credits per (account, role, memo), in first-seen order: positive credits,
    negative debits."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.amounts: dict[tuple[str, str, str], int] = {}

    def credit(self, account: str, role: str, memo: str, amount: int) -> None:
        key = (account, role, memo)
        self.amounts[key] = self.amounts.get(key, 0) + amount

    def credit_role(self, role: str, memo: str, amount: int) -> None:
        self.credit(self.accounts.of_role(role), role, memo, amount)

    def debit_role(self, role: str, memo: str, amount: int) -> None:
        self.credit_role(role, memo, -amount)

    def lines(self) -> tuple[JournalLine, ...]:
        """The lines with an amount: revenue and contra revenue first, then the balance
        sheet's (receivables, deferred revenue), each in first-seen order."""
        found = [
            JournalLine(account, role, -amount if amount < 0 else 0, max(amount, 0), memo)
            for (account, role, memo), amount in self.amounts.items()
            if amount
        ]
        return tuple(sorted(found, key=lambda ln: ln.role in _BALANCE_SHEET))


def _revenue_memo(row: ScheduleRow) -> str:
    return {
        "revenue": f"revenue: {row.product}",
        "discount": f"discounts: {row.product}",
        "credit": f"credits applied: {row.product}",
        "commit_release": f"paid commitment released: {row.product}",
        "breakage": "breakage of paid commitments",
    }[row.category]


def journal_entries(
    period: str,
    last_day: date,
    rows: Iterable[ScheduleRow],
    invoices: Iterable[RevInvoice],
    billing: Iterable[BillingEvent],
    accounts: Accounts,
) -> list[JournalEntry]:
    """The month's entries per currency (by currency, then kind), each balanced, dated
    `last_day` (the month's last day). `rows` are the schedule rows recognized in the
    month, `invoices` those finalized in it, `billing` the commitments' billing events in
    it. An entry with nothing to book is left out."""
    revenue: dict[str, _Lines] = {}
    invoiced: dict[str, _Lines] = {}
    commits: dict[str, _Lines] = {}

    def book(found: dict[str, _Lines], currency: str) -> _Lines:
        return found.setdefault(currency, _Lines(accounts))

    order = {c: i for i, c in enumerate(CATEGORIES)}
    for row in sorted(rows, key=lambda r: (order[r.category], r.product, r.key)):
        lines = book(revenue, row.currency)
        account, role = accounts.of_row(row)
        lines.credit(account, role, _revenue_memo(row), row.amount_minor)
        if row.category in ("commit_release", "breakage"):
            lines.debit_role("deferred_revenue", "deferred revenue released", row.amount_minor)
        else:
            lines.debit_role("unbilled_receivables", "revenue earned", row.amount_minor)
    counts: dict[str, int] = defaultdict(int)
    for inv in sorted(invoices, key=lambda i: i.invoice_id):
        counts[inv.currency] += 1
        lines = book(invoiced, inv.currency)
        lines.debit_role("accounts_receivable", "invoices", inv.total_minor)
        lines.credit_role("unbilled_receivables", "invoices", inv.total_minor)
    for event in sorted(billing, key=lambda e: e.key):
        memo = "paid commitments sold" if event.kind == "commit" else "paid commitments voided"
        lines = book(commits, event.currency)
        lines.debit_role("accounts_receivable", memo, event.amount_minor)
        lines.credit_role("deferred_revenue", memo, event.amount_minor)
    out: list[JournalEntry] = []
    for currency in sorted({*revenue, *invoiced, *commits}):
        for kind, found, memo in (
            ("revenue", revenue, f"meterline revenue recognized in {period} ({currency})"),
            (
                "invoices",
                invoiced,
                f"meterline invoices finalized in {period} ({currency},"
                f" {counts[currency]} invoice(s))",
            ),
            ("commitments", commits, f"meterline paid commitments in {period} ({currency})"),
        ):
            booked = found[currency].lines() if currency in found else ()
            if booked:
                out.append(
                    JournalEntry(
                        external_id(period, currency, kind),
                        kind,
                        period,
                        currency,
                        last_day,
                        memo,
                        booked,
                    )
                )
    return out


def role_totals(entries: Sequence[JournalEntry]) -> dict[tuple[str, str], int]:
    """Net debits (debits - credits) per (currency, role) over `entries`: what the
    journal moved on each role's account, whichever account a role is mapped to."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        for line in entry.lines:
            out[(entry.currency, line.role)] += line.debit_minor - line.credit_minor
    return dict(out)
