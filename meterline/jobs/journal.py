"""The accounting journal of a month: what `meterline journal` runs (docs/revrec.md,
"The journal").

The entries are billing.revrec.journal's, built from the month's revenue recognition
(meterline.jobs.revrec) with the account mapping of the settings; each is checked to
balance, and the month's totals are tied to the ledger (the invoices finalized in it)
and to the revrec balances (recognized revenue, accounts receivable, unbilled
receivables and deferred revenue moved exactly as the balances did). Written as
NetSuite's journal entry CSV import (one row per line, the entry's fields repeated on
each, lines of one entry sharing its External ID) or as JSON.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from billing.money import minor_text
from billing.revrec.journal import Accounts, JournalEntry, journal_entries, role_totals
from meterline.jobs.revrec import RevrecPeriod, revrec_period
from meterline.settings import Settings, SettingsError, settings

__all__ = [
    "CSV_COLUMNS",
    "Journal",
    "Tie",
    "accounts_of",
    "journal",
    "journal_csv",
    "journal_doc",
    "journal_of",
]

#: The columns of the NetSuite CSV file: the entry's (header) fields, then the line's.
CSV_COLUMNS = (
    "External ID",
    "Date",
    "Subsidiary",
    "Currency",
    "Memo",
    "Line: Account",
    "Line: Debit",
    "Line: Credit",
    "Line: Memo",
    "Line: Name",
)


@dataclass(frozen=True)
class Tie:
    """One check of the month's journal against another source, per currency, minor
    units: `journal` what the entries moved, `expected` what the source says."""

    name: str
    currency: str
    journal: int
    expected: int
    source: str

    @property
    def ok(self) -> bool:
        return self.journal == self.expected


@dataclass
class Journal:
    """The month's entries, the ties, and the subsidiary written on them."""

    period: str
    entries: list[JournalEntry]
    ties: list[Tie] = field(default_factory=list)
    subsidiary: str | None = None

    @property
    def ok(self) -> bool:
        """Every entry balances and every tie holds."""
        return all(e.balanced for e in self.entries) and all(t.ok for t in self.ties)


#: Roles whose accounts are on the balance sheet; the others take revenue (or reduce it).
_BALANCE_SHEET = ("accounts_receivable", "unbilled_receivables", "deferred_revenue")


def accounts_of(config: Settings) -> Accounts:
    """The account mapping of the settings (METERLINE_JOURNAL_ACCOUNTS over the
    defaults; METERLINE_JOURNAL_REVENUE_ACCOUNTS per product line). SettingsError (exit
    code 2) when a balance sheet role shares its account with a revenue role (revenue,
    discounts, credits, breakage or a product line's revenue), or deferred revenue (a
    liability) with a receivable (an asset): the entries would still balance, and book
    revenue as a receivable or a sale of a commitment as nothing."""
    found = config.journal_account_map
    income = {
        role: found[role] for role in ("revenue", "discounts", "credits", "breakage") if found[role]
    }
    income.update(
        {f"revenue of {p}": a for p, a in sorted(config.journal_revenue_accounts.items())}
    )
    for role in _BALANCE_SHEET:
        clash = [other for other, account in income.items() if account == found[role]]
        why = "a balance sheet account cannot also take revenue"
        if not clash and role == "deferred_revenue":
            clash = [r for r in _BALANCE_SHEET[:2] if found[r] == found[role]]
            why = "deferred revenue is a liability, a receivable an asset"
        if clash:
            variable = "REVENUE_ACCOUNTS" if clash[0].startswith("revenue of ") else "ACCOUNTS"
            raise SettingsError(
                f"invalid setting METERLINE_JOURNAL_{variable}: {role} and {clash[0]} are"
                f" both account {found[role]!r}: {why}; give each its own account"
                " (docs/revrec.md, Account mapping)"
            )
    return Accounts(
        accounts_receivable=found["accounts_receivable"],
        unbilled_receivables=found["unbilled_receivables"],
        deferred_revenue=found["deferred_revenue"],
        revenue=found["revenue"],
        discounts=found["discounts"] or None,
        credits=found["credits"],
        breakage=found["breakage"],
        revenue_by_product=dict(config.journal_revenue_accounts),
    )


def journal_of(revrec: RevrecPeriod, config: Settings) -> Journal:
    """The journal of a month's revenue recognition, with its ties."""
    entries = journal_entries(
        revrec.period,
        revrec.last,
        revrec.rows,
        revrec.invoices,
        revrec.commitments,
        accounts_of(config),
    )
    return Journal(revrec.period, entries, _ties(revrec, entries), config.journal_subsidiary)


def _ties(revrec: RevrecPeriod, entries: list[JournalEntry]) -> list[Tie]:
    moved = role_totals(entries)
    ties: list[Tie] = []
    for s in revrec.summaries():
        cur = s.currency

        def net(role: str, currency: str = cur) -> int:
            return moved.get((currency, role), 0)

        open_, close = s.opening, s.closing
        earned = sum(s.recognized.values())
        contract = (close.unbilled - (close.deferred - close.deferred_commitments)) - (
            open_.unbilled - (open_.deferred - open_.deferred_commitments)
        )
        ties += [
            Tie(
                "invoices finalized = accounts receivable debited by the invoices entry",
                cur,
                sum(
                    ln.debit_minor - ln.credit_minor
                    for e in entries
                    if e.currency == cur and e.kind == "invoices"
                    for ln in e.lines
                    if ln.role == "accounts_receivable"
                ),
                s.invoices_billed_minor,
                "ledger: totals of the invoices finalized in the month",
            ),
            Tie(
                "revenue credited (net of discounts and credits, with breakage)",
                cur,
                -sum(net(r) for r in ("revenue", "discounts", "credits", "breakage")),
                close.recognized - open_.recognized,
                "revrec balances: recognized at the month's end less the day before",
            ),
            Tie(
                "revenue recognized = the month's schedule rows",
                cur,
                earned,
                close.recognized - open_.recognized,
                "revrec schedule rows of the month",
            ),
            Tie(
                "accounts receivable debited",
                cur,
                net("accounts_receivable"),
                close.billed - open_.billed,
                "revrec balances: billed",
            ),
            Tie(
                "unbilled receivables debited (earned less invoiced)",
                cur,
                net("unbilled_receivables"),
                contract,
                "revrec balances: unbilled less deferred on invoices",
            ),
            Tie(
                "deferred revenue credited",
                cur,
                -net("deferred_revenue"),
                close.deferred_commitments - open_.deferred_commitments,
                "revrec balances: paid commitments' deferred revenue",
            ),
        ]
    return ties


def journal(period: str, *, config: Settings | None = None) -> Journal:
    """The journal of month `period` (YYYY-MM). ValueError for a bad month;
    SettingsError (exit code 2) for an account mapping `accounts_of` refuses, or a
    product line in METERLINE_JOURNAL_REVENUE_ACCOUNTS that neither the catalog nor the
    month's revenue has (a mistyped price id would book its revenue to the default
    account without a word)."""
    from meterline.jobs.catalog import loaded_catalog

    config = config or settings()
    accounts_of(config)
    found = revrec_period(period, config=config)
    products = {p.price_id for p in loaded_catalog(config).prices} | {r.product for r in found.rows}
    unknown = sorted(set(config.journal_revenue_accounts) - products)
    if unknown:
        raise SettingsError(
            f"invalid setting METERLINE_JOURNAL_REVENUE_ACCOUNTS: unknown product line(s)"
            f" {', '.join(unknown)}: a product line is a price id of the catalog"
            f" ({', '.join(sorted(products)) or 'none'})"
        )
    return journal_of(found, config)


def _amount(minor: int, currency: str) -> str:
    return minor_text(minor, currency) if minor else ""


def journal_csv(found: Journal) -> str:
    """The entries in NetSuite's journal entry CSV import layout (docs/revrec.md): a
    header row, then one row per line, the entry's External ID, Date (YYYY-MM-DD),
    Subsidiary, Currency and Memo repeated on each of its lines; Debit or Credit in
    major units with the currency's decimals (the other empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in found.entries:
        for line in entry.lines:
            writer.writerow(
                (
                    entry.external_id,
                    entry.date.isoformat(),
                    found.subsidiary or "",
                    entry.currency,
                    entry.memo,
                    line.account,
                    _amount(line.debit_minor, entry.currency),
                    _amount(line.credit_minor, entry.currency),
                    line.memo,
                    "",
                )
            )
    return out.getvalue()


def journal_doc(found: Journal) -> dict[str, Any]:
    """The journal as JSON data: the entries with their lines (amounts as text in major
    units and as integer minor units), the ties, and whether all hold."""
    return {
        "period": found.period,
        "ok": found.ok,
        "subsidiary": found.subsidiary,
        "entries": [
            {
                "external_id": e.external_id,
                "kind": e.kind,
                "date": e.date.isoformat(),
                "currency": e.currency,
                "memo": e.memo,
                "debits": minor_text(e.debits, e.currency),
                "credits": minor_text(e.credits, e.currency),
                "balanced": e.balanced,
                "lines": [
                    {
                        "account": ln.account,
                        "role": ln.role,
                        "debit": minor_text(ln.debit_minor, e.currency),
                        "credit": minor_text(ln.credit_minor, e.currency),
                        "debit_minor": ln.debit_minor,
                        "credit_minor": ln.credit_minor,
                        "memo": ln.memo,
                    }
                    for ln in e.lines
                ],
            }
            for e in found.entries
        ],
        "ties": [
            {
                "name": t.name,
                "currency": t.currency,
                "journal": minor_text(t.journal, t.currency),
                "expected": minor_text(t.expected, t.currency),
                "source": t.source,
                "ok": t.ok,
            }
            for t in found.ties
        ],
    }
