"""`meterline statement`: one customer's month as a self-contained HTML page.

What a customer (or their account manager) asks about a usage invoice, on one page that
needs nothing else (inline CSS and SVG, no script, no web font, no image file):

- the invoices whose period starts in the month, line by line, with their totals;
- the usage per local day (in the customer's timezone) and meter, as a stacked bar chart
  per dimension group: events (or their values) for counter meters, the time-weighted
  level for gauges (a seat held half a day counts half);
- tier progress for tiered prices: how far the period's quantity reached into each tier;
- the audit chain of every line (`meterline audit explain`): re-rated from the raw events,
  the difference, the events and rollup rows behind it.

`statement_data` gathers the facts (I/O); `render` is pure: facts in, HTML out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

from sqlalchemy import select

from billing.models import Customer
from billing.periods import local_midnight, zone
from billing.views import invoice_detail
from meterline.app import meter_catalog, open_warehouse
from meterline.audit import dims_label, dims_of, iso
from meterline.audit_io import AuditError, explain_lines, ledger_session, month_invoices
from meterline.settings import Settings, settings
from meters.rollup import definition_params
from meters.sql_files import query

COLORS = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#84cc16")


# --- facts ------------------------------------------------------------------------------


def statement_data(customer: str, period: str, *, config: Settings | None = None) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able values."""
    config = config or settings()
    meters = meter_catalog(config)
    with ledger_session(config) as session:
        row = session.scalars(
            select(Customer).where(Customer.external_id == customer)
        ).one_or_none()
        if row is None:
            raise AuditError(f"no customer {customer!r}")
        invoices, _void = month_invoices(session, period, customer)
        if not invoices:
            raise AuditError(f"{customer} has no invoice whose period starts in {period}")
        details = [invoice_detail(session, inv.id) for inv in invoices]
        who = {"id": row.external_id, "name": row.name, "currency": row.currency}
        timezones = {inv.id: inv.subscription.timezone for inv in invoices}
    line_ids = [ln["id"] for d in details for ln in d["lines"]]
    chains = {doc["line"]["id"]: doc for doc in explain_lines(line_ids, config=config)}
    params = definition_params(meters)
    usage: dict[int, list[tuple[Any, ...]]] = {}
    with open_warehouse(config) as warehouse:
        for d in details:
            usage[d["id"]] = warehouse.query_rows(
                query("audit/daily_usage"),
                {
                    "customer": customer,
                    "timezone": timezones[d["id"]],
                    "start": datetime.fromisoformat(d["period_start"]),
                    "end": datetime.fromisoformat(d["period_end"]),
                    "meters": params["meters"],
                    "dimensions": params["dimensions"],
                    "filters": params["filters"],
                },
            )
    out_invoices = []
    for d in details:
        tz = timezones[d["id"]]
        start = datetime.fromisoformat(d["period_start"])
        end = datetime.fromisoformat(d["period_end"])
        days = local_days(start, end, tz)
        lines = [{**ln, "chain": chains[ln["id"]]} for ln in d["lines"]]
        charts = []
        for name, meter in sorted(meters.meters.items()):
            usage_lines = [ln for ln in lines if ln["meter"] == name and ln["kind"] == "usage"]
            billed = sum((Decimal(ln["quantity"]) for ln in usage_lines), Decimal(0))
            if meter.aggregation.value in ("time_weighted", "latest"):
                found = [
                    lv
                    for ln in usage_lines
                    for lv in ln["chain"].get("quantity", {}).get("levels", [])
                ]
                bars = daily_levels(found, days, tz)
                measure = "average level held that day"
            else:
                bars = daily_counts(usage[d["id"]], name, meter.aggregation.value)
                measure = "events" if meter.aggregation.value == "count" else "sum of values"
            if any(v for per_day in bars.values() for v in per_day.values()):
                charts.append(
                    {
                        "meter": name,
                        "unit": meter.unit,
                        "measure": measure,
                        "aggregation": meter.aggregation.value,
                        "billed": str(billed),
                        "days": [day.isoformat() for day in days],
                        "bars": {
                            day.isoformat(): {g: str(v) for g, v in per_day.items()}
                            for day, per_day in bars.items()
                        },
                    }
                )
        out_invoices.append(
            {**d, "timezone": tz, "lines": lines, "charts": charts, "tiers": tier_progress(lines)}
        )
    return {"customer": who, "period": period, "invoices": out_invoices}


def local_days(start: datetime, end: datetime, tz: str) -> list[date]:
    """The local calendar days [start, end) touches, in `tz`."""
    first = start.astimezone(zone(tz)).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone(tz)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def daily_counts(
    rows: Iterable[tuple[Any, ...]], meter: str, aggregation: str
) -> dict[date, dict[str, Decimal]]:
    """Per local day and dimension group: events (count meters) or the sum of values."""
    out: dict[date, dict[str, Decimal]] = defaultdict(dict)
    for day, name, dims, events, value_sum in rows:
        if name != meter:
            continue
        value = Decimal(events) if aggregation in ("count", "unique_count") else Decimal(value_sum)
        out[day][dims_label(dims_of(dims))] = value
    return dict(out)


def daily_levels(
    levels: Sequence[Mapping[str, Any]], days: Sequence[date], tz: str
) -> dict[date, dict[str, Decimal]]:
    """Per local day and group: the time-weighted average of the levels held that day
    (a level held 12 of a day's 24 hours counts half; a 23-hour DST day is 23 hours)."""
    out: dict[date, dict[str, Decimal]] = {}
    for day in days:
        day_start, day_end = local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)
        day_ms = Decimal((day_end - day_start) // timedelta(milliseconds=1))
        per_group: dict[str, Decimal] = defaultdict(Decimal)
        for level in levels:
            start = max(datetime.fromisoformat(level["from"]), day_start)
            end = min(datetime.fromisoformat(level["to"]), day_end)
            if end > start:
                held = Decimal((end - start) // timedelta(milliseconds=1))
                per_group[level["group"]] += Decimal(level["value"]) * held / day_ms
        if per_group:
            out[day] = {g: v.quantize(Decimal("0.001")) for g, v in per_group.items()}
    return out


def tier_progress(lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For each tiered usage line: each tier's range, how much of it the period used, and
    what it cost (from the line's rating)."""
    out = []
    for ln in lines:
        chain = ln["chain"]
        rating = chain.get("rating") or {}
        if ln["kind"] != "usage" or rating.get("model") not in ("graduated", "volume"):
            continue
        windows = chain["price"]["windows"]
        tiers = windows[-1]["body"].get("tiers", []) if windows else []
        billable = Decimal(rating.get("billable_quantity") or 0)
        amounts: dict[int, Decimal] = defaultdict(Decimal)
        for entry in rating.get("entries", []):
            if entry.get("kind") == "tier" and entry.get("tier"):
                amounts[int(entry["tier"])] += Decimal(entry["amount"])
        rows, lower = [], Decimal(0)
        for number, tier in enumerate(tiers, start=1):
            upper = Decimal(tier["up_to"]) if tier.get("up_to") is not None else None
            used = max(Decimal(0), (billable if upper is None else min(billable, upper)) - lower)
            size = (upper - lower) if upper is not None else None
            rows.append(
                {
                    "tier": number,
                    "from": str(lower),
                    "to": None if upper is None else str(upper),
                    "unit_amount": str(tier.get("unit_amount", "0")),
                    "used": str(used),
                    "filled": str(
                        (used / size).quantize(Decimal("0.0001"))
                        if size
                        else (Decimal(1) if used else Decimal(0))
                    ),
                    "amount": str(amounts.get(number, Decimal(0))),
                }
            )
            if upper is None:
                break
            lower = upper
        out.append(
            {
                "line_id": ln["id"],
                "price_id": ln["price_id"],
                "model": rating.get("model"),
                "billable": str(billable),
                "versions": [w["version"] for w in windows],
                "tiers": rows,
            }
        )
    return out


# --- page -------------------------------------------------------------------------------


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;
 margin:0;background:#f9fafb}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
h3{font-size:15px;margin:18px 0 6px}
.muted{color:#6b7280}.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;
 padding:16px;margin:12px 0}
table{border-collapse:collapse;width:100%}th,td{padding:6px 8px;border-bottom:1px solid #e5e7eb;
 text-align:left;vertical-align:top}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tfoot td{font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.agrees{background:#d1fae5;color:#065f46}.adjusted{background:#e0e7ff;color:#3730a3}
.drift{background:#fef3c7;color:#92400e}.mismatch{background:#fee2e2;color:#991b1b}
.bar{background:#e5e7eb;border-radius:4px;height:12px;width:240px;overflow:hidden}
.bar>span{display:block;height:100%;background:#2563eb}
details{border-top:1px solid #e5e7eb;padding:6px 0}summary{cursor:pointer}
code{font-size:12px}.legend span{margin-right:12px}.legend i{display:inline-block;width:10px;
 height:10px;margin-right:4px;border-radius:2px}
"""


def _num(value: Any, places: int | None = None) -> str:
    number = Decimal(str(value))
    if places is not None:
        number = number.quantize(Decimal(1).scaleb(-places))
    elif number == number.to_integral_value():
        number = number.quantize(Decimal(1))
    else:
        number = number.normalize()
    return f"{number:,}"


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def render(data: Mapping[str, Any]) -> str:
    """The statement as one HTML document (pure)."""
    who = data["customer"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Usage statement {_e(who['name'])} {_e(data['period'])}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>Usage statement: {_e(who['name'])}</h1>",
        f'<p class="muted">Customer <code>{_e(who["id"])}</code>, billing periods starting in'
        f" {_e(data['period'])}, amounts in {_e(who['currency'])}.</p>",
    ]
    for inv in data["invoices"]:
        parts.append(_invoice(inv))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _invoice(inv: Mapping[str, Any]) -> str:
    cur, tz = inv["currency"], inv["timezone"]
    start = datetime.fromisoformat(inv["period_start"]).astimezone(zone(tz))
    end = datetime.fromisoformat(inv["period_end"]).astimezone(zone(tz))
    out = [
        f'<section class="card invoice" data-invoice="{inv["id"]}">',
        f'<h2>Invoice {inv["id"]} <span class="muted">({_e(inv["status"])})</span></h2>',
        f'<p class="muted">Subscription <code>{_e(inv["subscription"])}</code>, period'
        f" {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} {_e(tz)}"
        f" (UTC {_e(iso(datetime.fromisoformat(inv['period_start'])))} to"
        f" {_e(iso(datetime.fromisoformat(inv['period_end'])))})</p>",
        '<table class="lines"><thead><tr><th>Line</th><th>Charge</th><th>Group</th>'
        '<th class="num">Quantity</th><th class="num">Unit price</th>'
        f'<th class="num">Amount ({_e(cur)})</th><th>Audit</th></tr></thead><tbody>',
    ]
    for ln in inv["lines"]:
        status = ln["chain"]["status"]
        out.append(
            f'<tr data-line="{ln["id"]}"><td>{ln["id"]}</td><td>{_e(ln["kind"])}'
            f' {_e(ln["price_id"])}<br><span class="muted">{_e(ln["description"])}</span></td>'
            f"<td>{_e(ln['group'] or '')}</td>"
            f'<td class="num">{_num(ln["quantity"])}</td>'
            f'<td class="num">{_num(ln["unit_amount"]) if ln["unit_amount"] else ""}</td>'
            f'<td class="num amount">{_num(ln["amount"], 2 if "." in ln["amount"] else 0)}</td>'
            f'<td><span class="badge {_e(status)}">{_e(status)}</span></td></tr>'
        )
    out.append("</tbody><tfoot>")
    for label, key in (
        ("Subtotal", "subtotal"),
        ("Discounts", "discounts"),
        ("Adjustments", "adjustments"),
        ("Total", "total"),
    ):
        out.append(
            f'<tr><td colspan="5">{label}</td><td class="num" data-total="{key}">'
            f"{_num(inv[key], 2 if '.' in inv[key] else 0)}</td><td></td></tr>"
        )
    out.append("</tfoot></table>")
    if inv["charts"]:
        out.append("<h3>Daily usage</h3>")
        for chart in inv["charts"]:
            out.append(_chart(chart, tz))
    for tiered in inv["tiers"]:
        out.append(_tiers(tiered, cur))
    out.append("<h3>Audit chain per line</h3>")
    for ln in inv["lines"]:
        out.append(_chain(ln, cur))
    out.append("</section>")
    return "\n".join(out)


def _chart(chart: Mapping[str, Any], tz: str) -> str:
    """A stacked bar chart, one bar per local day, one colour per dimension group."""
    days: list[str] = chart["days"]
    bars: Mapping[str, Mapping[str, str]] = chart["bars"]
    groups = sorted({g for per_day in bars.values() for g in per_day})
    totals = {d: sum((Decimal(v) for v in bars.get(d, {}).values()), Decimal(0)) for d in days}
    top = max(totals.values(), default=Decimal(0)) or Decimal(1)
    width, height, left, bottom, top_pad = 760, 200, 56, 28, 12
    plot_h = height - bottom - top_pad
    step = (width - left - 8) / max(len(days), 1)
    bar_w = max(step * 0.75, 1)
    total = sum(totals.values(), Decimal(0))
    svg = [
        f'<svg class="chart" data-meter="{_e(chart["meter"])}" data-billed="{chart["billed"]}"'
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="daily {_e(chart["meter"])}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{width - 4}" y2="{top_pad + plot_h}"'
        ' stroke="#9ca3af"/>',
        f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end" font-size="11"'
        f' fill="#6b7280">{_num(top)}</text>',
        f'<text x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end" font-size="11"'
        ' fill="#6b7280">0</text>',
    ]
    for i, day in enumerate(days):
        x = left + i * step + (step - bar_w) / 2
        y = float(top_pad + plot_h)
        for g, group in enumerate(groups):
            value = Decimal(bars.get(day, {}).get(group, "0"))
            if not value:
                continue
            h = float(value / top) * plot_h
            y -= h
            svg.append(
                f'<rect x="{x:.2f}" y="{y:.2f}" width="{bar_w:.2f}" height="{h:.2f}"'
                f' fill="{COLORS[g % len(COLORS)]}" data-day="{day}" data-group="{_e(group)}"'
                f' data-value="{value}"><title>{day} {_e(group)}: {_num(value)}</title></rect>'
            )
        if i % 5 == 0 or i == len(days) - 1:
            svg.append(
                f'<text x="{x + bar_w / 2:.2f}" y="{height - 10}" text-anchor="middle"'
                f' font-size="11" fill="#6b7280">{day[5:]}</text>'
            )
    svg.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{COLORS[g % len(COLORS)]}"></i>{_e(group)}</span>'
        for g, group in enumerate(groups)
    )
    return (
        f'<figure class="usage" data-meter="{_e(chart["meter"])}">'
        f"<figcaption><strong>{_e(chart['meter'])}</strong>: {_e(chart['measure'])} per day"
        f" ({_e(chart['unit'])}, days in {_e(tz)}); billed quantity {_num(chart['billed'])}"
        + (
            f" (time-weighted over the billing cycle; {_num(top)} at most in a day)"
            if chart["aggregation"] in ("time_weighted", "latest")
            else f" ({_num(total)} in the chart)"
        )
        + "</figcaption>"
        + "".join(svg)
        + f'<div class="legend muted">{legend}</div></figure>'
    )


def _tiers(tiered: Mapping[str, Any], cur: str) -> str:
    rows = [
        f"<h3>Tier progress: {_e(tiered['price_id'])} (line {tiered['line_id']})</h3>",
        f'<table class="tiers" data-line="{tiered["line_id"]}"><thead><tr><th>Tier</th>'
        '<th>Range</th><th class="num">Unit price</th><th>Reached</th>'
        f'<th class="num">Used</th><th class="num">Amount ({_e(cur)})</th></tr></thead><tbody>',
    ]
    for t in tiered["tiers"]:
        upper = _num(t["to"]) if t["to"] is not None else "and above"
        percent = Decimal(t["filled"]) * 100
        rows.append(
            f'<tr data-tier="{t["tier"]}" data-used="{t["used"]}"><td>{t["tier"]}</td>'
            f"<td>{_num(t['from'])} to {upper}</td>"
            f'<td class="num">{_num(t["unit_amount"])}</td>'
            f'<td><div class="bar"><span style="width:{percent:.1f}%"></span></div></td>'
            f'<td class="num">{_num(t["used"])}</td>'
            f'<td class="num">{_num(t["amount"], 2)}</td></tr>'
        )
    rows.append(
        f'</tbody></table><p class="muted">{_num(tiered["billable"])} billable units,'
        f" {_e(tiered['model'])} tiers; versions {_e(', '.join(tiered['versions']))}</p>"
    )
    return "\n".join(rows)


def _chain(ln: Mapping[str, Any], cur: str) -> str:
    doc = ln["chain"]
    status = doc["status"]
    rec, diff = doc["recomputed"], doc["difference"]
    items = [
        f"<li>Posted: quantity {_num(ln['quantity'])}, {_e(cur)} {_e(ln['amount'])} (precise"
        f" {_e(ln['amount_precise'])}) at price version"
        f" <code>{_e(ln['price_version'])}</code></li>",
        f"<li>Re-rated from the raw events: quantity {_num(rec['quantity'])}, {_e(cur)}"
        f" {_e(rec['amount'])}; difference {_num(diff['quantity'])} / {_e(cur)}"
        f" {_e(diff['amount'])}</li>",
    ]
    chain = doc.get("quantity")
    if chain:
        raw, rollup = chain["raw_events"], chain["rollup"]
        items.append(
            f"<li>Quantity: {_e(chain['how'])}. Raw events: {raw['events']:,} (sum"
            f" {_num(raw['value_sum'])}); rollup: {rollup['rows']:,} hourly rows,"
            f" {rollup['events']:,} events"
            + (f"; from the events: {_num(chain['from_events'])}" if "from_events" in chain else "")
            + "</li>"
        )
        for level in chain.get("levels", []):
            items.append(
                f"<li>{_e(level['group'])}: {_num(level['value'])} from {_e(level['from'])} to"
                f" {_e(level['to'])} ({_num(level['hours'])} h), {_num(level['share_of_cycle'])}"
                " of the billing cycle</li>"
            )
    for adj in doc["adjustments"]:
        items.append(
            f"<li>Adjusted by line {adj['id']} on invoice {adj['invoice_id']}: {_e(cur)}"
            f" {_e(adj['amount'])}</li>"
        )
    late = doc["late_events"]
    if late["count"]:
        listed = ", ".join(
            f"<code>{_e(e['event_id'])}</code> (ingested {_e(e['ingested_at'])})"
            for e in late["events"]
        )
        items.append(f"<li>Events ingested after posting: {late['count']}: {listed}</li>")
    if doc["sample_events"]:
        items.append(
            "<li>Sample events: "
            + ", ".join(f"<code>{_e(e['event_id'])}</code>" for e in doc["sample_events"])
            + "</li>"
        )
    for note in doc["notes"]:
        items.append(f"<li>{_e(note)}</li>")
    return (
        f'<details class="chain" data-line="{ln["id"]}" data-status="{_e(status)}"><summary>'
        f"Line {ln['id']} {_e(ln['kind'])} {_e(ln['price_id'])}"
        f"{' ' + _e(ln['group']) if ln['group'] else ''}: "
        f'<span class="badge {_e(status)}">{_e(status)}</span></summary><ul>'
        + "".join(items)
        + "</ul></details>"
    )


def write_statement(
    customer: str, period: str, out: Path, *, config: Settings | None = None
) -> Path:
    """Write the statement of `customer` for month `period` to `out` (HTML)."""
    page = render(statement_data(customer, period, config=config))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
