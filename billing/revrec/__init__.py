"""Revenue recognition and the accounting journal (docs/revrec.md): pure rules over
typed values, no I/O. meterline/jobs/revrec.py and journal.py gather the ledger and
warehouse facts and call these."""

from billing.revrec.allocate import allocate
from billing.revrec.balances import Balance, RevInvoice, balances
from billing.revrec.commits import deferred_value
from billing.revrec.journal import Accounts, JournalEntry, JournalLine, journal_entries
from billing.revrec.model import (
    BillingEvent,
    GrantEntry,
    RevGrant,
    RevLine,
    Schedule,
    ScheduleRow,
    Transfer,
)
from billing.revrec.schedule import build_schedule
from billing.revrec.waterfall import Waterfall, waterfall

__all__ = [
    "Accounts",
    "Balance",
    "BillingEvent",
    "GrantEntry",
    "JournalEntry",
    "JournalLine",
    "RevGrant",
    "RevInvoice",
    "RevLine",
    "Schedule",
    "ScheduleRow",
    "Transfer",
    "Waterfall",
    "allocate",
    "balances",
    "build_schedule",
    "deferred_value",
    "journal_entries",
    "waterfall",
]
