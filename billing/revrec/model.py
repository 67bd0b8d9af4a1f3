"""The typed inputs and outputs of revenue recognition (docs/revrec.md). Pure values.

Amounts are integer minor units of their currency (invariant 4's unit), signed: a
discount or a credit line is negative, as on the invoice. Days are local calendar days
in the customer's timezone. Instants are aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

#: What a schedule row is, which decides its account in the journal (docs/revrec.md):
#: revenue of a product line; a discount or a credit line (contra revenue); the release
#: of a paid commitment's deferred revenue as its credit pays usage; breakage.
Category = Literal["revenue", "discount", "credit", "commit_release", "breakage"]
CATEGORIES: tuple[Category, ...] = ("revenue", "discount", "credit", "commit_release", "breakage")

#: Which rule placed a row on its day (docs/revrec.md, one section each).
Rule = Literal[
    "usage_days",  # usage of a sum/count meter: on the days it happened (hourly rollup)
    "ratable",  # fixed and seat fees, and what has no usage days: evenly per day
    "follows_line",  # a discount or credit: the days of the line it reduces or pays
    "late_usage_days",  # an adjustment for late usage: the late events' own days
    "commit_release",  # a paid commitment's deferred revenue, as its credit pays usage
    "breakage",  # a paid commitment's value expired unused: on the expiry day
]

#: Line kinds whose amount is recognized by their own rule (the others follow a line).
PRIMARY_KINDS = frozenset({"usage", "flat", "minimum_true_up"})
#: Meter aggregations whose quantity is a sum over the days: usage recognized per day.
DAILY_AGGREGATIONS = frozenset({"sum", "count"})


@dataclass(frozen=True, slots=True)
class RevLine:
    """One line of a live (draft or finalized) invoice, as the schedule needs it.

    ``key`` is the line's idempotency key (unique among live invoices); ``billed_on`` the
    local day its invoice was finalized (None: a draft, not billed yet). ``daily`` holds
    the weights of its days when it has usage days: for a usage line of a sum or count
    meter, its quantity per local day (the hourly rollup, matching its price's filter);
    for an adjustment, the quantity per day of the late usage behind it. None otherwise.
    ``grant_kind`` is the kind of the grant of a credit line (or of an adjustment of one).
    """

    line_id: int
    key: str
    invoice_id: int
    customer: str
    currency: str
    timezone: str
    kind: str
    price_id: str
    aggregation: str | None
    amount_minor: int
    quantity: Decimal
    service_start: datetime
    service_end: datetime
    billed_on: date | None
    adjusts_key: str | None = None
    pays_key: str | None = None
    grant_id: str | None = None
    grant_kind: str | None = None
    daily: Mapping[date, Decimal] | None = None

    @property
    def days(self) -> list[date]:
        """The local days of its service period [start, end), in the customer's timezone."""
        return service_days(self.service_start, self.service_end, self.timezone)


@dataclass(frozen=True, slots=True)
class GrantEntry:
    """A credit ledger entry of a grant that moves value other than by paying a line:
    ``expire`` (breakage), ``void`` (back to the issuer), ``rollover`` (to the next
    term's grant). ``key`` is its idempotency key (stable)."""

    key: str
    kind: Literal["expire", "void", "rollover"]
    amount: Decimal
    effective_at: datetime


@dataclass(frozen=True, slots=True)
class RevGrant:
    """A credit grant (docs/credits.md) as revenue recognition needs it. ``granted`` is in
    the grant's unit (major units of money, or units of a meter); ``price_paid_minor``
    what the customer paid for a paid commitment (None for a promotional credit); a grant
    that a rollover created names the grant it came from (it is not billed again: its
    value and price moved over from that grant). ``remaining`` is the balance its credit
    ledger holds now, for the tie of docs/revrec.md ("Reconcile")."""

    grant_id: str
    customer: str
    currency: str
    timezone: str
    kind: str
    granted: Decimal
    price_paid_minor: int | None
    effective_from: datetime
    rolled_over_from: str | None = None
    entries: Sequence[GrantEntry] = ()
    remaining: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """Revenue recognized on one day from one source: a line (``line_key``) or a grant
    (``grant_id``: a commitment's release or breakage). ``key`` is stable across runs and
    ledgers (made of idempotency keys and the day), the export's primary key.
    ``billed_on`` is the day its source was billed: the line's invoice finalization, or
    the paid commitment's start (None: not billed yet)."""

    key: str
    customer: str
    currency: str
    day: date
    amount_minor: int
    category: Category
    rule: Rule
    product: str
    line_key: str | None = None
    line_id: int | None = None
    invoice_id: int | None = None
    grant_id: str | None = None
    billed_on: date | None = None


@dataclass(frozen=True, slots=True)
class BillingEvent:
    """Something billed (positive) or un-billed (negative) on a day: an invoice finalized
    (its total), a paid commitment sold (its price) or voided (the unused part's price)."""

    key: str
    customer: str
    currency: str
    day: date
    amount_minor: int
    kind: Literal["invoice", "commit", "commit_void"]
    invoice_id: int | None = None
    grant_id: str | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """Deferred revenue moving from a grant to the next term's grant at a rollover."""

    customer: str
    currency: str
    day: date
    from_grant: str
    to_grant: str
    amount_minor: int


@dataclass
class Schedule:
    """The recognition schedule of a set of lines and grants: its rows, what was billed,
    deferred revenue moved by rollovers, and the problems found while building it (a
    line whose rows would not add up, a commitment whose value does not tie to its
    credit ledger: reconcile's revenue findings)."""

    rows: list[ScheduleRow] = field(default_factory=list)
    billing: list[BillingEvent] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def local_day(instant: datetime, tz: str) -> date:
    """The local calendar day of an instant in a timezone."""
    return instant.astimezone(ZoneInfo(tz)).date()


def last_day(end: datetime, tz: str) -> date:
    """The local day of the last instant before `end` (a half-open period's last day)."""
    return local_day(end - timedelta(microseconds=1), tz)


def service_days(start: datetime, end: datetime, tz: str) -> list[date]:
    """Every local day touched by [start, end), in order (none for an empty period)."""
    if end <= start:
        return []
    first, last = local_day(start, tz), last_day(end, tz)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
