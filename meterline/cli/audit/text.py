"""The explanation of an invoice line as text for a terminal or a log:
`render_explain` (top, the invoice, to bottom, the raw events), and the helpers the
month's reports share (meterline.cli.audit.reconcile_text). Each prints the report's
typed model (meterline.audit.*) to a console: quantities without trailing zeros
(meterline.output.format_quantity), money through the one money formatter, tables
through meterline.output.print_table, and no line wider than the console or 100 columns
(a word longer than that, such as a file path, is kept whole)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from meterline.audit.values import iso
from meterline.output import (
    format_count,
    format_minor,
    format_money,
    format_quantity,
    plain_numbers,
)

if TYPE_CHECKING:
    from rich.console import Console

    from meterline.audit.explain import Explanation
    from meterline.audit.explain.report import CreditStep, QuantityChain, RatingView
    from meterline.audit.values import Billed


def when(moment: datetime | None) -> str:
    """An instant as UTC text, seconds dropped when zero ("2026-11-01T00:00Z")."""
    shown = iso(moment)
    return shown.replace(":00Z", "Z") if shown else "-"


# --- explain ---------------------------------------------------------------------------


def render_explain(out: Console, doc: Explanation) -> None:
    """The explanation as text, top (invoice) to bottom (raw events): quantities without
    trailing zeros, money through meterline.output.format_money, lines folded at the
    console's width (at most 100 columns), the late events as a table."""
    lines = _explain_head(doc)
    if doc.quantity is not None:
        lines += _explain_quantity(doc.quantity)
    if doc.credit is not None:
        lines += _explain_credit(doc.credit, doc.line.currency)
    else:
        lines += _explain_rating(doc.rating, doc.line.currency)
    lines += _explain_result(doc)
    for line in lines:
        for part in folded(line, min(out.width, MAX_WIDTH)):
            out.print(part, markup=False, highlight=False, soft_wrap=True)
    _explain_events(out, doc)


# Text reports are folded at the console's width, and never wider than this.
MAX_WIDTH = 100


def folded(line: str, width: int) -> list[str]:
    """A line broken between words to fit ``width``, each continuation indented two
    more than the line; a word longer than the width (an id, a path) is kept whole."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
    return textwrap.wrap(
        line,
        width,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [line]


def qty(value: Decimal | None) -> str:
    """A quantity, exact, without trailing zeros, digits grouped ("-" when absent)."""
    return format_quantity(value) if value is not None else "-"


def _m(value: Decimal | str | None, currency: str) -> str:
    """An amount in major units through the one money formatter (never cut)."""
    return format_money(Decimal(value), currency) if value is not None else "-"


def _filter(values: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()))


def price_body_text(body: Mapping[str, object], currency: str) -> str:
    """A stored price body in words: tiers as "up to N at AMOUNT", amounts as money,
    numbers without trailing zeros; the currency is said once, by the amounts."""
    parts = []
    for key, value in body.items():
        if key == "currency":
            continue
        if key == "tiers" and isinstance(value, list):
            tiers = []
            for tier in value:
                if not isinstance(tier, Mapping):
                    tiers.append(str(tier))
                    continue
                up_to = tier.get("up_to")
                bound = f"up to {_number(up_to)}" if up_to is not None else "above"
                what = f"{bound} at {_amount(tier.get('unit_amount'), currency)}"
                flat = tier.get("flat_amount")
                if flat is not None and _decimal(flat) != 0:
                    what += f" + flat {_amount(flat, currency)}"
                tiers.append(what)
            parts.append("tiers: " + "; ".join(tiers))
        elif isinstance(value, Mapping):
            parts.append(f"{key} {_filter({str(k): str(v) for k, v in value.items()})}")
        elif isinstance(value, list):
            parts.append(f"{key} " + ", ".join(_number(v) for v in value))
        elif key.endswith("_amount") or key in ("amount", "minimum", "maximum"):
            parts.append(f"{key} {_amount(value, currency)}")
        else:
            parts.append(f"{key} {_number(value)}")
    return ", ".join(parts)


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


def _number(value: object) -> str:
    """A stored value: a number without trailing zeros, anything else as written."""
    number = _decimal(value)
    return format_quantity(number) if number is not None else str(value)


def _amount(value: object, currency: str) -> str:
    number = _decimal(value)
    if number is None:
        return str(value)
    try:
        return format_money(number, currency)
    except ValueError:  # an unknown currency code: the number alone
        return format_quantity(number)


def _explain_head(doc: Explanation) -> list[str]:
    line, inv = doc.line, doc.invoice
    period = inv.period
    cur = line.currency
    out = [
        f"line {line.id}: {line.kind} {line.price_id}"
        + (f" [{line.group}]" if line.group else "")
        + f" on invoice {inv.id} ({inv.status}"
        + (f" {when(inv.finalized_at)}" if inv.finalized_at else "")
        + ")",
        f'  customer  {inv.customer} "{inv.customer_name}", subscription'
        f" {inv.subscription}, plan {inv.plan}, {inv.currency}",
        f"  period    {period.start_local.isoformat()} -> {period.end_local.isoformat()}"
        f" ({period.timezone})",
        f"            UTC {when(period.start_utc)} -> {when(period.end_utc)};"
        f" billing cycle {qty(inv.billing_cycle.hours)} h",
        f"  posted    {format_minor(line.amount_minor, cur)} (precise"
        f" {qty(line.amount_precise)})"
        # A credit line's quantity is what it took from its grant (see "credit" below).
        + ("" if line.kind == "credit" else f", quantity {qty(line.quantity)}"),
        f"            by rating run {line.rating_run_id or '-'} as of {when(line.posted_at)}",
    ]
    for sent in doc.delivered:
        where = (
            f"invoice {sent.invoice}, item {sent.item or '-'}"
            if sent.invoice
            else "not delivered (`meterline outbox list`)"
        )
        out.append(f"  {sent.sink:<9} {where}")
    if doc.corrects is not None:
        corrects, source = doc.corrects, doc.corrects.invoice
        out.append(
            f"  corrects  line {corrects.line_id or '-'} of invoice {source.id}, period"
            f" from {when(source.period.start_utc)} (key {corrects.key})"
        )
    price = doc.price
    out.append(
        f"price {price.price_id} @ {price.version}"
        + (f", meter {price.meter}" if price.meter else "")
        + (f", filter {_filter(price.filter)}" if price.filter else "")
    )
    for w in price.windows:
        out.append(f"  {when(w.start)} -> {when(w.end)}  {w.version}:")
        out.append(f"    {price_body_text(w.body, cur)}")
    return out


def _explain_quantity(chain: QuantityChain) -> list[str]:
    out = [f"quantity  {chain.aggregation} of {chain.meter} ({chain.unit}): {chain.how}"]
    for w in chain.windows:
        out.append(
            f"  window {when(w.start)} -> {when(w.end)}"
            + (f" [{w.version}]" if w.version else "")
            + f": raw {qty(w.raw_quantity)}, rollup {qty(w.rollup_quantity)}"
        )
        for g in w.groups:
            out.append(f"    {g.group}: {qty(g.quantity)} ({format_count(g.events)} events)")
    for level in chain.levels:
        shown = ", ".join(level.events[:3]) + (" ..." if len(level.events) > 3 else "")
        out.append(
            f"  level {level.group}: {qty(level.value)} from {when(level.start)} to"
            f" {when(level.end)} ({qty(level.hours)} h) = {qty(level.share_of_cycle)} of the"
            f" cycle [{shown}]"
        )
    if chain.from_events is not None:
        out.append(f"  from the events by the meter's rule: {qty(chain.from_events)}")
    raw, rollup, diff = chain.raw_events, chain.rollup, chain.raw_vs_rollup
    out.append(
        f"  raw events (usage_events FINAL): {format_count(raw.events)} events, sum"
        f" {qty(raw.value_sum)}, last ingested {when(raw.last_ingested_at)}"
    )
    out.append(
        f"  rollup: {format_count(rollup.rows)} hourly rows over {len(rollup.days)} day(s),"
        f" {format_count(rollup.events)} events, sum {qty(rollup.value_sum)}"
    )
    out.append(f"  raw - rollup: {format_count(diff.events)} events, {qty(diff.value_sum)}")
    return out


def _taken(units: Decimal, unit: str, paid: Decimal, currency: str) -> str:
    """What a grant paid: money ("USD 80.00"), or units and the money they paid
    ("50 fin_resolution for USD 25.00")."""
    money = _m(paid, currency)
    return money if unit == currency else f"{qty(units)} {unit} for {money}"


def _balance(value: Decimal, unit: str, currency: str) -> str:
    return _m(value, currency) if unit == currency else f"{qty(value)} {unit}"


def _explain_credit(step: CreditStep, currency: str) -> list[str]:
    """A credit line: the grant, what it paid of which line, the grant's balance before
    and after, and the drawdown's order over the line it pays (docs/credits.md)."""
    paid_line = f"line {step.pays_line_id}" if step.pays_line_id else f"key {step.pays_key}"
    out = [
        f"credit    grant {step.grant_id}"
        + (f" ({step.grant_kind})" if step.grant_kind else "")
        + f" pays {_taken(step.units, step.unit, step.paid, currency)} of {paid_line}",
    ]
    if step.balance_before is not None and step.balance_after is not None:
        before = _balance(step.balance_before, step.unit, currency)
        after = _balance(step.balance_after, step.unit, currency)
        out.append(
            f"  balance of grant {step.grant_id}: {before} before, {after} after (its"
            " consume entry)"
        )
    else:
        out.append(
            f"  balance of grant {step.grant_id}: recorded when the invoice is finalized (a"
            " draft's credits are drawn again at each close): `meterline credits balance`"
        )
    out.append(f"  drawdown of {paid_line}: {step.rule}")
    for n, draw in enumerate(step.order, 1):
        terms = ", ".join(
            t
            for t in (
                f"priority {draw.priority}" if draw.priority is not None else "",
                f"expires {when(draw.expires_at)}" if draw.expires_at else "never expires",
            )
            if t
        )
        out.append(
            f"    {n}. line {draw.line_id}: grant {draw.grant_id} ({terms}) pays"
            f" {_taken(draw.units, draw.unit, draw.paid, currency)}"
        )
    return out


def _explain_rating(rating: RatingView | dict[str, object] | None, currency: str) -> list[str]:
    if rating is None:
        return []
    if isinstance(rating, dict) and "grant_id" in rating and "pays" in rating:
        # A credit line (docs/credits.md): which grant paid which line, and how much.
        units, unit = Decimal(str(rating["units"])), str(rating["unit"])
        paid = -Decimal(str(rating["amount"]))
        return [
            f"credit    grant {rating['grant_id']} pays {_taken(units, unit, paid, currency)}"
            f" of {rating['pays']} (the drawdown of docs/credits.md)"
        ]
    if isinstance(rating, dict):
        return [f"rating    {price_body_text(rating, currency)}"]
    out = [
        f"rating    {rating.model}: quantity {qty(rating.quantity)}, free"
        f" {qty(rating.free_units)}, billable {qty(rating.billable_quantity)}"
    ]
    for e in rating.entries:
        what = f"tier {e.tier}" if e.tier else e.kind
        version = f" [{e.version}]" if e.version else ""
        out.append(
            f"  {what}{version}: {qty(e.units)} × {_m(e.unit_amount, currency)}"
            + (f" + flat {_m(e.flat_amount, currency)}" if e.flat_amount else "")
            + f" = {_m(e.amount, currency)}"
        )
    if rating.minimum_adjustment:
        out.append(f"  raised to the price's minimum by {_m(rating.minimum_adjustment, currency)}")
    out.append(
        f"  = {_m(rating.amount, currency)} (precise {qty(rating.amount_precise)},"
        f" rounded {rating.rounding.replace('_', '-')})"
    )
    if rating.proration is not None:
        # A partial period's fixed fee bills its share of the cycle's amount above.
        out.append(f"  {rating.proration.explanation}")
    return out


def _billed(b: Billed, currency: str) -> str:
    return f"quantity {qty(b.quantity)}, {format_minor(b.amount_minor, currency)}"


def _explain_result(doc: Explanation) -> list[str]:
    cur = doc.line.currency
    out = [
        f"related   line {rel.id} {rel.kind} {rel.price_id}:"
        f" {format_minor(rel.amount_minor, cur)} ({plain_numbers(rel.description)})"
        for rel in doc.related_lines
    ]
    rec, diff = doc.recomputed, doc.difference
    credit = doc.credit
    if credit is not None:
        paid = f"line {credit.pays_line_id}" if credit.pays_line_id else f"key {credit.pays_key}"
        out.append(
            f"re-rated   the drawdown again pays {format_minor(-rec.amount_minor, cur)}"
            f" (precise {qty(-rec.amount_precise)}) of the re-rated usage; that usage is"
            f" recomputed from raw events by explaining {paid}"
            + (f": `meterline audit explain {credit.pays_line_id}`" if credit.pays_line_id else "")
        )
        out.append(
            f"difference: {format_minor(diff.amount_minor, cur)} (precise"
            f" {qty(diff.amount_precise)})  ->  {doc.status.upper()}"
        )
    else:
        out.append(
            f"recomputed from raw events: {_billed(rec, cur)} (precise"
            f" {qty(rec.amount_precise)}) at {rec.price_version or '-'}"
        )
        out.append(
            f"difference: {_billed(diff, cur)} (precise {qty(diff.amount_precise)})"
            f"  ->  {doc.status.upper()}"
        )
    for adj in doc.adjustments:
        out.append(
            f"adjusted by line {adj.id} on invoice {adj.invoice_id}"
            f" ({adj.invoice_status}): quantity {qty(adj.quantity)},"
            f" {format_minor(adj.amount_minor, cur)}"
        )
    if doc.adjustments:
        net = doc.net
        out.append(
            f"net billed {_billed(net.billed, cur)}; net difference {_billed(net.difference, cur)}"
        )
    late = doc.late_events
    if late.since is not None:
        run = f"rating run {late.rating_run_id}" if late.rating_run_id else "the rating"
        stale = late.stale_days
        out.append(
            f"late events (not seen by {run}: it saw events ingested up to {when(late.since)}"
            + (f", and on {len(stale)} stale rollup day(s) less" if stale else "")
            + f"): {format_count(late.count)}"
            + (f", sum {qty(late.value_sum)}" if late.count else "")
        )
    return out


def _explain_events(out: Console, doc: Explanation) -> None:
    """The late events (each: id, time, value and group, then when and from where it
    was ingested), the sample events and the notes."""
    width = min(out.width, MAX_WIDTH)
    lines = []
    late = doc.late_events
    if late.since is not None:
        for e in late.events:
            lines.append(
                f"  {e.event_id} at {_event_time(e.timestamp)}, value {qty(e.value)}"
                + (f", {e.group}" if e.group else "")
            )
            lines.append(f"    ingested {when(e.ingested_at)} from {e.source}")
    if doc.sample_events:
        lines.append("sample events: " + ", ".join(e.event_id for e in doc.sample_events))
    lines += [f"note: {plain_numbers(note)}" for note in doc.notes]
    for line in lines:
        for part in folded(line, width):
            out.print(part, markup=False, highlight=False, soft_wrap=True)


def _event_time(moment: datetime) -> str:
    """An event's time in UTC to the millisecond it is stored with."""
    utc = moment.astimezone(UTC)
    ms = f".{utc.microsecond // 1000:03d}" if utc.microsecond else ""
    return f"{utc:%Y-%m-%dT%H:%M:%S}{ms}Z"


def narrow(out: Console, width: int) -> Console:
    """The console itself, or one like it at most ``width`` columns wide."""
    if out.width <= width:
        return out
    from rich.console import Console as RichConsole

    return RichConsole(
        file=out.file, width=width, highlight=False, soft_wrap=True, color_system=None
    )
