"""Revenue balances per customer, currency and day (pure; DESIGN.md invariant 9,
docs/revrec.md, "Balances").

At the end of each day, cumulatively since the first line:

- **billed**: invoices finalized (their totals, from the ledger), paid commitments sold
  (their price) less the unused part of those voided;
- **recognized**: the schedule's rows up to that day;
- **unbilled** (earned, not invoiced yet; a contract asset): the rows up to that day of
  lines whose invoice is not finalized by then (drafts, and periods finalized later);
- **deferred** (billed, not earned yet; a contract liability): what finalized invoices
  billed beyond their rows so far, plus each paid commitment's price not yet released,
  broken or voided (moved along by rollovers).

Each is summed from its own source, and the identity
``billed = recognized + deferred - unbilled`` is then checked to the minor unit
(`Balance.gap`); reconcile reports a day where it does not hold. Deferred and unbilled
are signed: a negative deferred is revenue earned ahead of its billing (a commitment
paying usage from before it started), netted per contract as ASC 606 presents a
contract's position.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from billing.revrec.model import BillingEvent, ScheduleRow


@dataclass(frozen=True, slots=True)
class RevInvoice:
    """A live invoice as the balances need it: its total from the ledger (minor units)
    and the local day it was finalized (None: a draft)."""

    invoice_id: int
    customer: str
    currency: str
    total_minor: int
    billed_on: date | None


@dataclass(frozen=True, slots=True)
class Balance:
    """One customer's balances in one currency at the end of `day` (minor units)."""

    customer: str
    currency: str
    day: date
    billed: int
    recognized: int
    deferred: int
    unbilled: int
    deferred_commitments: int
    """The part of `deferred` that is paid commitments' price not yet released."""

    @property
    def gap(self) -> int:
        """billed - (recognized + deferred - unbilled): zero when the identity holds."""
        return self.billed - (self.recognized + self.deferred - self.unbilled)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def balances(
    rows: Iterable[ScheduleRow],
    invoices: Sequence[RevInvoice],
    billing: Iterable[BillingEvent],
    days: Sequence[date],
) -> list[Balance]:
    """The balances of every (customer, currency) that has an invoice, a row, a billing
    event or a transfer, at the end of each of `days` (ascending), by customer, currency
    and day. `rows` must hold every row of those customers' lines and grants up to the
    last day (earlier days count into the first day's balances). A rollover moves
    deferred revenue between two grants of one customer: its balances do not change."""
    if not days:
        return []
    last = days[-1]
    by_invoice: dict[int, RevInvoice] = {i.invoice_id: i for i in invoices}
    # Per (customer, currency): per-day movements of each balance's source.
    rec: dict[tuple[str, str], dict[date, int]] = defaultdict(lambda: defaultdict(int))
    inv_rows: dict[int, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    grant_moves: dict[tuple[str, str], dict[date, int]] = defaultdict(lambda: defaultdict(int))
    billed: dict[tuple[str, str], dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        if row.day > last:
            continue
        who = (row.customer, row.currency)
        rec[who][row.day] += row.amount_minor
        if row.grant_id is not None:  # a commitment's release or breakage
            grant_moves[who][row.day] -= row.amount_minor
        elif row.invoice_id is not None:
            inv_rows[row.invoice_id][row.day] += row.amount_minor
    for event in billing:
        who = (event.customer, event.currency)
        billed[who][event.day] += event.amount_minor
        grant_moves[who][event.day] += event.amount_minor
    for inv in invoices:
        if inv.billed_on is not None:
            billed[(inv.customer, inv.currency)][inv.billed_on] += inv.total_minor
    customers = sorted({*rec, *billed, *grant_moves, *((i.customer, i.currency) for i in invoices)})
    invoices_of: dict[tuple[str, str], list[RevInvoice]] = defaultdict(list)
    for inv in invoices:
        invoices_of[(inv.customer, inv.currency)].append(inv)
    for invoice_id in inv_rows:
        if invoice_id not in by_invoice:
            raise ValueError(f"schedule rows of invoice {invoice_id}, which is not given")
    out: list[Balance] = []
    for who in customers:
        out += _customer(
            who, days, rec[who], billed[who], grant_moves[who], invoices_of[who], inv_rows
        )
    return out


def _cumulative(moves: dict[date, int], days: Sequence[date]) -> list[int]:
    """The running total of `moves` at the end of each day of `days`."""
    first = days[0]
    total = sum(v for d, v in moves.items() if d < first)
    out = []
    for day in days:
        total += moves.get(day, 0)
        out.append(total)
    return out


def _customer(
    who: tuple[str, str],
    days: Sequence[date],
    recognized: dict[date, int],
    billed: dict[date, int],
    grants: dict[date, int],
    invoices: Sequence[RevInvoice],
    inv_rows: dict[int, dict[date, int]],
) -> list[Balance]:
    rec = _cumulative(recognized, days)
    bill = _cumulative(billed, days)
    commitments = _cumulative(grants, days)
    unbilled = [0] * len(days)
    deferred_invoices = [0] * len(days)
    for inv in invoices:
        earned = _cumulative(inv_rows.get(inv.invoice_id, {}), days)
        for i, day in enumerate(days):
            if inv.billed_on is not None and inv.billed_on <= day:
                deferred_invoices[i] += inv.total_minor - earned[i]
            else:
                unbilled[i] += earned[i]
    return [
        Balance(
            customer=who[0],
            currency=who[1],
            day=day,
            billed=bill[i],
            recognized=rec[i],
            deferred=deferred_invoices[i] + commitments[i],
            unbilled=unbilled[i],
            deferred_commitments=commitments[i],
        )
        for i, day in enumerate(days)
    ]
