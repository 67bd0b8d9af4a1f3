"""What each grant holds for a period's drawdown (docs/credits.md, "The drawdown").

Read once per close for the customers it rates (`CreditBook.read`: their grants, their
ledger entries, and the credit lines of their drafts), then asked per period
(`CreditBook.grants_for`) in the order the close rates them, without another query.

Rules:
- A period draws on the grants **as they stood** for it: a grant's balance counting the
  entries effective by the period's end (a consumption, and a return of it, at the end
  of the period it paid, an expiry or a rollover at the grant's expiry, a void at its
  ``as_of``; the next term's grant of a rollover by its own grant entry), and never
  more than it holds now, so that what a later finalized period took is not spent twice;
  plus what the period itself consumed when it was finalized (it is drawn down again:
  a late correction, docs/ledger.md "Adjustments").
- Less the credit lines (and corrections of credit lines) of the customer's drafts for
  earlier periods, which are not finalized yet (their consumption is recorded at
  finalize) and which this close does not rate again; and less what the periods this
  close rated before it took beyond what their finalized invoices consumed (`took`).
- A period is its service period: a correction of a credit line on a later invoice
  counts for the period it corrects.
- A voided grant pays only periods it paid, at most the most it paid each (what it
  paid stays paid): a late correction of such a period draws on it as it stood, so its
  consumption stays as booked and only the usage difference is re-rated (a correction
  returns to it only what the corrected lines no longer use). It never pays another
  period, nor more than it paid, nor more than it holds (value returned to it after its
  void: an invoice it paid voided, which the re-issue draws on again).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import CreditGrant, CreditLedgerEntry, Customer, Invoice, InvoiceLine
from billing.models import Subscription as SubscriptionRow
from rating.credits import Grant

ZERO = Decimal(0)
#: Entry kinds that take value out of ``available`` (+) or give it back (-).
_OUT = {"consume": 1, "expire": 1, "void": 1, "rollover": 1, "reverse": -1, "grant": 0}

PeriodRef = tuple[str, datetime]  # (subscription external id, period start)


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    amount: Decimal
    effective_at: datetime
    period: PeriodRef | None  # the service period of the line a consumption paid


@dataclass(frozen=True, slots=True)
class _DraftCredit:
    grant_id: str
    units: Decimal
    period: PeriodRef
    period_end: datetime


@dataclass
class CreditBook:
    """The grants of some customers with their entries and their drafts' credit lines."""

    grants: dict[str, list[tuple[Grant, Decimal]]] = field(default_factory=dict)
    entries: dict[str, list[_Entry]] = field(default_factory=dict)
    drafts: dict[str, list[_DraftCredit]] = field(default_factory=dict)
    took: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    voided: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, session: Session, customers: Iterable[str]) -> CreditBook:
        """One read of the customers' grants (voided ones marked), ledger entries and
        draft credit lines. Customers without grants cost nothing further."""
        book = cls()
        wanted = sorted(set(customers))
        if not wanted:
            return book
        rows = session.execute(
            select(CreditGrant, Customer.external_id, SubscriptionRow.external_id)
            .join(Customer, Customer.id == CreditGrant.customer_id)
            .outerjoin(SubscriptionRow, SubscriptionRow.id == CreditGrant.subscription_id)
            .where(Customer.external_id.in_(wanted))
            .order_by(CreditGrant.id)
        ).all()
        if not rows:
            return book
        by_pk = {}
        for grant, customer, sub in rows:
            book.grants.setdefault(customer, []).append((_grant(grant, sub), grant.amount))
            by_pk[grant.id] = grant.grant_id
            if grant.voided_at is not None:
                book.voided.add(grant.grant_id)
        entries = session.execute(
            select(
                CreditLedgerEntry.grant_id,
                CreditLedgerEntry.kind,
                CreditLedgerEntry.amount,
                CreditLedgerEntry.effective_at,
                SubscriptionRow.external_id,
                InvoiceLine.service_period_start,
                InvoiceLine.service_period_end,
            )
            .outerjoin(InvoiceLine, InvoiceLine.id == CreditLedgerEntry.invoice_line_id)
            .outerjoin(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .outerjoin(SubscriptionRow, SubscriptionRow.id == Invoice.subscription_id)
            .where(CreditLedgerEntry.grant_id.in_(sorted(by_pk)))
            .order_by(CreditLedgerEntry.id)
        ).all()
        for pk, kind, amount, at, sub, start, end in entries:
            ref = None if sub is None else (sub, start)
            # A consumption and its returns count as of the end of the period they paid
            # for: a void's return (at its as_of) gives the period back what it took.
            when = at if end is None else end
            book.entries.setdefault(by_pk[pk], []).append(_Entry(kind, amount, when, ref))
        drafts = session.execute(
            select(
                Customer.external_id,
                SubscriptionRow.external_id,
                InvoiceLine.service_period_start,
                InvoiceLine.service_period_end,
                InvoiceLine.credit_grant_id,
                InvoiceLine.quantity,
            )
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .join(Customer, Customer.id == Invoice.customer_id)
            .join(SubscriptionRow, SubscriptionRow.id == Invoice.subscription_id)
            .where(
                Invoice.status == "draft",
                InvoiceLine.credit_grant_id.is_not(None),
                Customer.external_id.in_(wanted),
            )
        ).all()
        # A credit line's quantity is the units it takes; a correction's, the difference.
        for customer, sub, start, end, grant_id, units in drafts:
            assert grant_id is not None  # selected for it
            book.drafts.setdefault(customer, []).append(
                _DraftCredit(grant_id, units, (sub, start), end)
            )
        return book

    def grants_for(
        self,
        customer: str,
        period: PeriodRef,
        period_end: datetime,
        rerated: frozenset[PeriodRef] = frozenset(),
    ) -> list[Grant]:
        """The customer's grants with the balance available to ``period`` (module
        docstring); ``rerated``: the periods this close rates (their drafts' credit lines
        are being replaced)."""
        out = []
        for grant, granted in self.grants.get(customer, []):
            stood = now = granted
            for entry in self.entries.get(grant.grant_id, []):
                out_of = _OUT[entry.kind] * entry.amount
                now -= out_of
                if entry.effective_at <= period_end:
                    stood -= out_of
            own = self._own(grant.grant_id, period)
            pending = sum(
                (
                    d.units
                    for d in self.drafts.get(customer, [])
                    if d.grant_id == grant.grant_id
                    and d.period != period
                    and d.period not in rerated
                    and d.period_end <= period_end
                ),
                ZERO,
            )
            took = self.took[grant.grant_id]
            if grant.grant_id in self.voided:
                # What it paid stays paid: the period's own consumption, and what was
                # returned of it back up to the most it paid, as far as the grant holds it.
                again = min(now - pending - took, self._peak(grant.grant_id, period) - own)
                available = own + max(again, ZERO)
            else:
                available = min(stood, now) + own - pending - took
            out.append(replace(grant, remaining=max(available, ZERO)))
        return out

    def take(self, period: PeriodRef, consumed: Sequence[tuple[str, Decimal]]) -> None:
        """Record what ``period``, just rated, took: (grant id, units). Only what differs
        from what its finalized invoice consumed counts for the periods rated after it:
        the ledger's balances hold that already."""
        taken: dict[str, Decimal] = defaultdict(Decimal)
        for grant_id, units in consumed:
            taken[grant_id] += units
        for grant_id in set(taken) | {g.grant_id for gs in self.grants.values() for g, _ in gs}:
            self.took[grant_id] += taken[grant_id] - self._own(grant_id, period)

    def _own(self, grant_id: str, period: PeriodRef) -> Decimal:
        """What ``period``'s finalized lines consumed of the grant, net of returns."""
        return sum(
            (
                _OUT[e.kind] * e.amount
                for e in self.entries.get(grant_id, [])
                if e.kind in ("consume", "reverse") and e.period == period
            ),
            ZERO,
        )

    def _peak(self, grant_id: str, period: PeriodRef) -> Decimal:
        """The most ``period``'s finalized lines ever held of the grant at once (its
        consumptions net of returns, in ledger order)."""
        held = peak = ZERO
        for e in self.entries.get(grant_id, []):
            if e.kind in ("consume", "reverse") and e.period == period:
                held += _OUT[e.kind] * e.amount
                peak = max(peak, held)
        return peak


def _grant(row: CreditGrant, subscription: str | None) -> Grant:
    return Grant(
        grant_id=row.grant_id,
        currency=row.currency,
        remaining=row.amount,
        priority=row.priority,
        effective_from=row.effective_from,
        expires_at=row.expires_at,
        order=row.id,
        meter=row.meter,
        applies_to=row.applies_to,
        applies_to_ids=frozenset(row.applies_to_ids),
        subscription=subscription,
    )
