"""What was billed for a key against what re-rating gives now: the one comparison behind
`explain` (a line's verdict), `reconcile` (the line findings) and `rerate` (the
differences it posts). Pure.

Business rules:
- A line is judged by its idempotency key. What was billed for a key is the line on the
  period's live invoice plus every adjustment of that key on live invoices (a finalized
  invoice is never edited, corrections are adjustment lines elsewhere). What should have
  been billed is the same key re-rated from the raw events now.
- Billed and re-rated agree when quantity and amount in minor units are equal (the rule
  `post_adjustments` applies). A line alone agrees when its precise amount is equal too.
- A difference with late events (events the line's rating run did not see) is drift:
  late usage not adjusted yet; without them it is a mismatch nothing in the data explains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import computed_field

from billing.charges import ChargeLine
from meterline.audit.facts import PostedLine
from meterline.audit.values import Billed, Report, total

Verdict = Literal["agrees", "adjusted", "drift", "mismatch"]
AGREES: Verdict = "agrees"
ADJUSTED: Verdict = "adjusted"
DRIFT: Verdict = "drift"
MISMATCH: Verdict = "mismatch"


def charged(charge: ChargeLine | None, currency: str) -> Billed:
    """What a re-rated charge bills (nothing when the re-rating has no such key)."""
    if charge is None:
        return Billed.zero(currency)
    return Billed(
        quantity=charge.quantity,
        amount_minor=charge.amount_minor,
        amount_precise=charge.amount_precise,
        currency=currency,
    )


def verdict(line: Billed | None, net: Billed, recomputed: Billed, late_events: int) -> Verdict:
    """agrees: the line (if any) and the net billed equal the re-rated amount; adjusted:
    the line differs but its adjustments make the net equal; drift: the net differs and
    events arrived after posting; mismatch: the net differs and no late event explains it."""
    if (recomputed - net).is_zero:
        if line is None or (recomputed - line).is_exactly_zero:
            return AGREES
        return ADJUSTED
    return DRIFT if late_events else MISMATCH


class KeyDiff(Report):
    """One key of a period: what was billed (line + adjustments) against the re-rating.
    `what`: missing (never billed), no_longer_charged (billed, re-rated to nothing), or
    differs."""

    key: str
    price_id: str
    kind: str
    group: str | None
    meter: str | None
    line_id: int | None
    adjustment_ids: tuple[int, ...]
    billed: Billed
    rerated: Billed

    @computed_field  # type: ignore[prop-decorator]
    @property
    def what(self) -> Literal["missing", "no_longer_charged", "differs"]:
        if self.line_id is None and not self.adjustment_ids:
            return "missing"
        if self.rerated.is_exactly_zero and not self.billed.is_zero and self.line_id is not None:
            return "no_longer_charged"
        return "differs"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def difference(self) -> Billed:
        """Re-rated minus billed: what an adjustment would post."""
        return self.rerated - self.billed


def billed_by_key(
    originals: Iterable[PostedLine], adjustments: Iterable[PostedLine]
) -> dict[str, tuple[PostedLine | None, list[PostedLine]]]:
    """Per key: the period's own line and the adjustments of that key (live invoices)."""
    out: dict[str, tuple[PostedLine | None, list[PostedLine]]] = {}
    for line in originals:
        out[line.key] = (line, [])
    for adj in sorted(adjustments, key=lambda a: a.id):
        original, adjs = out.get(adj.corrects, (None, []))
        out[adj.corrects] = (original, [*adjs, adj])
    return out


def net_billed(line: PostedLine | None, adjustments: Sequence[PostedLine], currency: str) -> Billed:
    """The line (if any) plus its adjustments."""
    return total([line.billed] if line else [], currency) + total(
        (a.billed for a in adjustments), currency
    )


def compare_period(
    originals: Sequence[PostedLine],
    adjustments: Sequence[PostedLine],
    rerated: Mapping[str, ChargeLine],
    currency: str,
) -> list[KeyDiff]:
    """Every key of a period whose billed total (line + adjustments) differs from the
    re-rated charge, in key order. Empty when the period is right."""
    billed = billed_by_key(originals, adjustments)
    # A price billed under one version and re-rated under another (`catalog load
    # --reprice`) owes nothing under the new key when its charge is zero: post_adjustments
    # posts no line for a zero difference, so none is missing.
    billed_prices = {(ln.price_id, ln.kind, ln.group) for ln in originals}
    diffs = []
    for key in sorted(set(billed) | set(rerated)):
        line, adjs = billed.get(key, (None, []))
        net = net_billed(line, adjs, currency)
        charge = rerated.get(key)
        now = charged(charge, currency)
        if (now - net).is_zero and (
            line is not None
            or adjs
            or charge is None
            or (charge.price_id, charge.kind, charge.group) in billed_prices
        ):
            continue
        diffs.append(_diff(key, line, adjs, charge, net, now))
    return diffs


def _diff(
    key: str,
    line: PostedLine | None,
    adjs: Sequence[PostedLine],
    charge: ChargeLine | None,
    net: Billed,
    now: Billed,
) -> KeyDiff:
    kind: str
    if charge is not None:
        price_id, kind, group, meter = charge.price_id, charge.kind, charge.group, charge.meter
    else:
        posted = line or adjs[0]
        price_id, group, meter = posted.price_id, posted.group, posted.meter
        kind = line.kind if line else "adjustment"
    return KeyDiff(
        key=key,
        price_id=price_id,
        kind=kind,
        group=group,
        meter=meter,
        line_id=line.id if line else None,
        adjustment_ids=tuple(a.id for a in adjs),
        billed=net,
        rerated=now,
    )
