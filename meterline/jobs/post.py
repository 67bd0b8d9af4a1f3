"""The post step: rated periods -> the ledger, then the drafts that are due -> final.

One period the ledger refuses (an amount beyond its limits, a conflicting line) is set
aside with the reason and never stops the others; its draft, if any, stays open.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from billing import bulk, finalize_due
from billing.charges import ChargeLine
from billing.errors import LedgerError
from billing.periods import Period
from billing.posting import (
    ChargeBatch,
    PostResult,
    check_batch,
    post_charges_bulk,
    record_rating_run,
)
from meterline.jobs.due import Due
from meterline.jobs.rate import PeriodRating, inputs_hash
from meterline.jobs.watermarks import Watermark

#: The code version a rating run records (billing.models.RatingRun).
CODE_VERSION = "meterline-0.1"


@dataclass
class Posted:
    """What posting the rated periods did (`result`), and the periods it could not post
    or that were not rated, with the reason (`failed`)."""

    result: PostResult = field(default_factory=PostResult)
    failed: dict[Due, str] = field(default_factory=dict)


def check_limits(ratings: Mapping[Due, PeriodRating]) -> None:
    """Set aside (as its `error`) each rated period the ledger's limits refuse: a line or
    an invoice total beyond what a ledger column holds (billing.posting.check_batch)."""
    for item, rating in ratings.items():
        if rating.error is None:
            try:
                check_batch(_batch(item, rating.lines))
            except LedgerError as exc:
                rating.error = str(exc)


def record_run(
    session: Session,
    *,
    at: datetime,
    periods: Sequence[Period],
    ratings: Iterable[PeriodRating],
    seen: Watermark,
    note: str,
) -> int:
    """Record the rating run that rated `periods` at the logical time `at`, having seen
    `seen` of the warehouse; its fingerprint is the hash of the lines it rated (the
    periods without an error). Its id."""
    return record_rating_run(
        session,
        period_start=min(p.start for p in periods),
        period_end=max(p.end for p in periods),
        run_at=at,
        code_version=CODE_VERSION,
        inputs_hash=inputs_hash(line for r in ratings if r.error is None for line in r.lines),
        note=note,
        events_watermark=seen.events,
        stale_days=seen.stale,
    )


def post_periods(
    session: Session, ratings: Mapping[Due, PeriodRating], rating_run_id: int | None
) -> Posted:
    """Post the lines of every rated period (re-rating its draft, if any) in one bulk
    call; when the ledger refuses some period (a LedgerError), post the halves apart,
    each in a savepoint, down to the periods that fail. A period not rated is `failed`
    with its rating's error."""
    out = Posted(failed={d: r.error for d, r in ratings.items() if r.error is not None})

    def attempt(part: list[tuple[Due, list[ChargeLine]]]) -> None:
        try:
            with session.begin_nested():
                posted = post_charges_bulk(
                    session,
                    [_batch(d, lines) for d, lines in part],
                    rerate=True,
                    rating_run_id=rating_run_id,
                )
        except LedgerError as exc:
            if len(part) == 1:
                out.failed[part[0][0]] = f"cannot be posted: {exc}"
                return
            middle = len(part) // 2
            attempt(part[:middle])
            attempt(part[middle:])
            return
        out.result.merge(posted)

    billable = [(d, r.lines) for d, r in ratings.items() if r.error is None]
    if billable:
        attempt(billable)
    return out


def finalize_periods(
    session: Session, as_of: datetime, grace: timedelta, unrated: Collection[Due]
) -> list[int]:
    """Finalize every draft whose period ended the grace period before `as_of` (the
    periods just rated, and drafts carrying corrections: also those of a subscription
    that has ended, which has no period of its own left); but not the draft of a period
    that could not be rated (`unrated`). The ids finalized."""
    pairs = [(d.subscription.id, d.period.start) for d in unrated]
    keep_open = {inv.id for inv in bulk.live_invoices(session, pairs, lock=False).values()}
    return finalize_due(session, as_of=as_of, grace=grace, keep_open=keep_open)


def _batch(item: Due, lines: Sequence[ChargeLine]) -> ChargeBatch:
    return ChargeBatch(item.subscription.external_id, item.period, lines)
