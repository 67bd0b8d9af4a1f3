"""The recognition schedule of invoice lines and credit grants (pure; docs/revrec.md).

One rule per kind of line, each placing the line's amount on days, exactly:

- usage of a sum or count meter: on the days the usage happened (its quantity per local
  day, from the hourly rollup), in proportion;
- fixed and seat fees (flat prices, `latest` and `time_weighted` seats), the minimum
  commitment's true-up, and usage with no usage days (max and unique_count meters, whose
  quantity belongs to the whole period; a line whose usage added up to nothing):
  ratably, the same share each local day of its service period;
- a discount: on the days of the line it reduces, in proportion; a credit line: on the
  days of the line it pays (a promotional credit is a revenue reduction; a paid
  commitment's credit is offset by the release of the commitment's deferred revenue:
  `commits`);
- an adjustment: on the days of the late usage behind it when there is some, else on
  the days of the line it corrects.

Remainders of the minor unit: `allocate` (largest remainder, ties to the earliest day).
Every line's rows add up to its amount exactly; a line of 0 has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal

from billing.revrec.allocate import Weight, allocate
from billing.revrec.commits import commit_schedule
from billing.revrec.model import (
    DAILY_AGGREGATIONS,
    PRIMARY_KINDS,
    Category,
    RevGrant,
    RevLine,
    Rule,
    Schedule,
    ScheduleRow,
    local_day,
)

KEY_SEP = "|"
# A line key's parts: subscription, period, price, version, kind[, group][, credit, grant].
_KIND_PART = 4

DayAmounts = list[tuple[date, int]]


def reduced_keys(discount_key: str) -> list[str]:
    """The keys the line a discount reduces may have: the discount's key with its kind
    `usage` or `flat` (a discount reduces its price's line, docs/rating.md)."""
    parts = discount_key.split(KEY_SEP)
    out = []
    for kind in ("usage", "flat"):
        changed = [*parts]
        changed[_KIND_PART] = kind
        out.append(KEY_SEP.join(changed))
    return out


def category_of(line: RevLine) -> Category:
    """The account class of a line's rows: revenue, a discount or a credit (an
    adjustment takes the class of the line it corrects)."""
    if line.kind == "discount":
        return "discount"
    if line.kind == "credit" or (line.kind == "adjustment" and line.grant_id is not None):
        return "credit"
    if line.kind == "adjustment" and line.adjusts_key is not None:
        parts = line.adjusts_key.split(KEY_SEP)
        if len(parts) > _KIND_PART and parts[_KIND_PART] == "discount":
            return "discount"
    return "revenue"


class _Builder:
    def __init__(self, lines: Sequence[RevLine]) -> None:
        self.lines = lines
        # Keys are unique among live invoices; adjustments carry their own.
        self.by_key: dict[str, RevLine] = {ln.key: ln for ln in lines}
        self.done: dict[str, tuple[Rule, DayAmounts]] = {}
        self.active: set[str] = set()

    def of(self, line: RevLine) -> tuple[Rule, DayAmounts]:
        """The line's days and amounts, and the rule that placed them (memoized: a line
        that others follow is placed once)."""
        found = self.done.get(line.key)
        if found is not None:
            return found
        if line.key in self.active:  # a cycle of follows cannot happen; be safe
            return "ratable", self._ratable(line)
        self.active.add(line.key)
        try:
            placed = self._place(line)
        finally:
            self.active.discard(line.key)
        self.done[line.key] = placed
        return placed

    def _place(self, line: RevLine) -> tuple[Rule, DayAmounts]:
        if line.amount_minor == 0:
            return "ratable", []
        if line.kind in PRIMARY_KINDS:
            if line.kind == "usage" and line.aggregation in DAILY_AGGREGATIONS:
                placed = _by_weights(line, _daily(line))
                if placed is not None:
                    return "usage_days", placed
            return "ratable", self._ratable(line)
        if line.kind == "adjustment":
            placed = _by_weights(line, _daily(line))
            if placed is not None:
                return "late_usage_days", placed
            return self._follow(line, self._adjusted(line))
        if line.kind == "discount":
            return self._follow(line, [self.by_key.get(k) for k in reduced_keys(line.key)])
        if line.kind == "credit" and line.pays_key is not None:
            return self._follow(line, [self.by_key.get(line.pays_key)])
        return "ratable", self._ratable(line)

    def _adjusted(self, line: RevLine) -> list[RevLine | None]:
        """What an adjustment follows when it has no late usage days of its own: for an
        adjustment of a discount or credit line, first the adjustment of the line it
        reduces or pays on the same invoice (so a correction for late usage lands, with
        its discount and its credit, on the late usage's days), then the line it
        corrects, then the line that one reduces or pays (a correction adding a line the
        corrected invoice did not have)."""
        key = line.adjusts_key
        if key is None:
            return []
        suffix = line.key[len(key) :] if line.key.startswith(key) else ""
        parts = key.split(KEY_SEP)
        heads: list[str] = []
        if len(parts) > _KIND_PART and parts[_KIND_PART] == "discount":
            heads = reduced_keys(key)
        elif "credit" in parts[_KIND_PART + 1 :]:
            heads = [KEY_SEP.join(parts[: parts.index("credit", _KIND_PART + 1)])]
        siblings = [self.by_key.get(h + suffix) for h in heads] if suffix else []
        corrected = self.by_key.get(key)
        return [*siblings, corrected, *(self.by_key.get(h) for h in heads)]

    def _follow(
        self, line: RevLine, candidates: Sequence[RevLine | None]
    ) -> tuple[Rule, DayAmounts]:
        for other in candidates:
            if other is None or other.key == line.key:
                continue
            _, placed = self.of(other)
            weights: list[tuple[date, Weight]] = [(d, abs(a)) for d, a in placed if a]
            if weights:
                return "follows_line", allocate(line.amount_minor, weights)
        return "ratable", self._ratable(line)

    @staticmethod
    def _ratable(line: RevLine) -> DayAmounts:
        days = line.days or [_fallback_day(line)]
        return allocate(line.amount_minor, [(d, 1) for d in days])


def _fallback_day(line: RevLine) -> date:
    return local_day(line.service_start, line.timezone)


def _daily(line: RevLine) -> list[tuple[date, Decimal]] | None:
    """The line's usage days inside its service period, or None when it has none usable
    (no weights, a negative one, or nothing used)."""
    if not line.daily:
        return None
    days = set(line.days)
    weights = sorted((d, q) for d, q in line.daily.items() if d in days and q != 0)
    if not weights or any(q < 0 for _, q in weights):
        return None
    return weights


def _by_weights(line: RevLine, weights: Sequence[tuple[date, Decimal]] | None) -> DayAmounts | None:
    if not weights:
        return None
    return allocate(line.amount_minor, list(weights))


def build_schedule(lines: Sequence[RevLine], grants: Sequence[RevGrant] = ()) -> Schedule:
    """The schedule of the live lines `lines` and the credit grants `grants` of some
    customers: one row per line and day with an amount (none for a line of 0), the
    paid commitments' releases and breakage (`commits.commit_schedule`), what the
    commitments billed, and the problems found. Rows come in line order, then grant
    order, each source's days in order."""
    builder = _Builder(lines)
    schedule = Schedule()
    placed: dict[str, DayAmounts] = {}
    for line in lines:
        rule, amounts = builder.of(line)
        placed[line.key] = amounts
        total = sum(a for _, a in amounts)
        if total != line.amount_minor:  # allocate guarantees it; a bug otherwise
            schedule.problems.append(
                f"line {line.line_id} ({line.key}): its rows add up to {total} minor units,"
                f" its amount is {line.amount_minor}"
            )
        category = category_of(line)
        schedule.rows += [
            ScheduleRow(
                key=f"{line.key}@{day.isoformat()}",
                customer=line.customer,
                currency=line.currency,
                day=day,
                amount_minor=amount,
                category=category,
                rule=rule,
                product=line.price_id,
                line_key=line.key,
                line_id=line.line_id,
                invoice_id=line.invoice_id,
                billed_on=line.billed_on,
            )
            for day, amount in amounts
            if amount
        ]
    credit_lines: dict[str, list[RevLine]] = {}
    for line in lines:
        if line.grant_id is not None and line.kind in ("credit", "adjustment"):
            credit_lines.setdefault(line.grant_id, []).append(line)
    followers = {g.rolled_over_from: g for g in grants if g.rolled_over_from is not None}
    origins = _origins(grants)
    for grant in grants:
        part = commit_schedule(
            grant,
            credit_lines.get(grant.grant_id, []),
            placed,
            next_term=followers.get(grant.grant_id),
            billed_on=origins.get(grant.grant_id),
        )
        schedule.rows += part.rows
        schedule.billing += part.billing
        schedule.transfers += part.transfers
        schedule.problems += part.problems
    return schedule


def _origins(grants: Sequence[RevGrant]) -> Mapping[str, date]:
    """The day each paid commitment was billed: its own start, or for a grant a rollover
    created, the start of the first term it came from (when known)."""
    by_id = {g.grant_id: g for g in grants}
    out: dict[str, date] = {}
    for grant in grants:
        first = grant
        seen = {first.grant_id}
        while first.rolled_over_from in by_id and first.rolled_over_from not in seen:
            first = by_id[first.rolled_over_from]
            seen.add(first.grant_id)
        out[grant.grant_id] = local_day(first.effective_from, first.timezone)
    return out
