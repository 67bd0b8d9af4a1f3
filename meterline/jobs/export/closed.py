"""Whether a month can be exported: it is closed (docs/export.md, "Which months").

A month is the invoices whose billing period starts in it, local time (as `meterline
audit reconcile --period` and `invoices list --period` read it). It is closed when:

- it exists: the ledger has an invoice of it, or a subscription has a billing period
  starting in it (otherwise ``PeriodNotFound``, exit code 3);
- no invoice of it is a draft (a draft still changes);
- every billable subscription period starting in it (meterline.jobs.due: after the
  go-live, within the subscription) has a live finalized invoice, or was due at the
  latest close the ledger records (the latest ``finalized_at``) and still has none:
  close could not bill it, said so, and the month's reconcile findings carry it
  (missing_invoice), so it does not hold the month back for ever.

Otherwise ``PeriodNotClosed`` (exit code 2) names how many periods are open, the first
one, and the close to run. `open_periods` is the rule, pure; `check_closed` reads the
ledger for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.errors import LedgerError, NotFound
from billing.models import Customer, Invoice, Subscription
from billing.periods import iso_utc
from billing.tax import pending_invoice_ids
from billing.views import month_bounds
from meterline.jobs.close import period_due
from meterline.jobs.due import billable_periods
from meterline.settings import Settings


class PeriodNotFound(NotFound):
    """The month has no invoice and no billing period (exit code 3)."""


class PeriodNotClosed(LedgerError):
    """The month still has drafts, or periods not closed yet (exit code 2)."""


@dataclass(frozen=True)
class Expected:
    """A billable subscription period starting in the month."""

    subscription_id: int
    subscription: str
    customer: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class MonthInvoice:
    """An invoice of the month, as the rule needs it."""

    invoice_id: int
    subscription_id: int
    subscription: str
    customer: str
    start: datetime
    end: datetime
    status: str


@dataclass(frozen=True)
class OpenPeriod:
    """A period that holds the month open, and why."""

    subscription: str
    customer: str
    start: datetime
    end: datetime
    why: str

    def text(self) -> str:
        """The period for the refusal: its instants in UTC, whole (a month is local
        time: a Berlin December starts 2026-11-30T23:00:00Z, which a UTC date alone
        would show as a November period)."""
        span = f"{iso_utc(self.start)}..{iso_utc(self.end)}"
        return f"{self.subscription} of {self.customer}, {span}: {self.why}"


def open_periods(
    expected: Sequence[Expected],
    invoices: Sequence[MonthInvoice],
    last_close: datetime | None,
    grace: timedelta,
) -> list[OpenPeriod]:
    """The periods that keep the month open (module rules), in period order:
    every draft invoice of the month, and every expected period without a live invoice
    that was not due yet at `last_close` (the latest finalization the ledger records;
    None: none yet)."""
    out = [
        OpenPeriod(i.subscription, i.customer, i.start, i.end, f"invoice {i.invoice_id} is a draft")
        for i in invoices
        if i.status == "draft"
    ]
    live = {(i.subscription_id, i.start) for i in invoices if i.status != "void"}
    for p in expected:
        due_at = p.end + grace
        if (p.subscription_id, p.start) not in live and (last_close is None or due_at > last_close):
            why = f"not closed yet (due {iso_utc(due_at)})"
            out.append(OpenPeriod(p.subscription, p.customer, p.start, p.end, why))
    return sorted(out, key=lambda o: (o.start, o.subscription))


def check_closed(session: Session, period: str, config: Settings) -> datetime | None:
    """PeriodNotFound / PeriodNotClosed unless `period` (YYYY-MM) is closed; else the
    latest finalization the ledger records (the close time its reconcile is read as of;
    None only when the ledger has never finalized an invoice)."""
    first, nxt = month_bounds(period)
    following = f"{nxt:%Y-%m}"
    # Every period that starts in the month has ended, with the grace, by then.
    horizon = period_due(following, config.finalize_grace_hours)
    expected = []
    subs = session.execute(select(Subscription, Customer.external_id).join(Customer)).all()
    for sub, customer in subs:
        for p in billable_periods(sub, horizon, config):
            if first <= p.local_start(sub.timezone) < nxt:
                expected.append(Expected(sub.id, sub.external_id, customer, p.start, p.end))
    invoices = [
        MonthInvoice(*row)
        for row in session.execute(
            select(
                Invoice.id,
                Invoice.subscription_id,
                Subscription.external_id,
                Customer.external_id,
                Invoice.period_start,
                Invoice.period_end,
                Invoice.status,
            )
            .join(Subscription, Subscription.id == Invoice.subscription_id)
            .join(Customer, Customer.id == Invoice.customer_id)
            .where(Invoice.period_start_local >= first, Invoice.period_start_local < nxt)
        )
    ]
    if not invoices and not expected:
        raise PeriodNotFound(
            f"period {period}: no invoice and no billing period starts in it: check the month"
            " (`meterline invoices list` shows the months that have invoices)"
        )
    last_close = session.scalar(select(func.max(Invoice.finalized_at)))
    grace = timedelta(hours=config.finalize_grace_hours)
    held = open_periods(expected, invoices, last_close, grace)
    if held:
        first_open = held[0]
        # A close is suggested outright only once its time has come: run before, it would
        # finalize periods that have not ended yet.
        now = datetime.now(UTC)  # wall clock: advice only, never a billing time
        todo = (
            f"run `meterline close --period {following}` (or let the nightly close run) and"
            " export it again"
            if horizon <= now
            else f"its periods are not all due before {iso_utc(horizon)}: export it after the"
            f" close that bills them (the nightly close, or `meterline close --period"
            f" {following}` from then on)"
        )
        raise PeriodNotClosed(
            f"period {period} is not closed: {len(held):,} of its billing periods are open"
            f" (first: {first_open.text()}); {todo}"
        )
    # An invoice taxed through the tax sink is exported once its tax is recorded
    # (docs/tax.md): until then the month waits, as Stripe does.
    pending = pending_invoice_ids(session, [i.invoice_id for i in invoices])
    if pending:
        raise PeriodNotClosed(
            f"period {period}: the tax of {len(pending):,} invoice(s) is pending (first:"
            f" invoice {min(pending)}); run `meterline outbox deliver --sink avalara`"
            " (docs/tax.md) and export it again"
        )
    return last_close
