"""The statement's daily usage chart: per local day (the subscription's timezone) and
dimension group, events or their values for counter meters, the time-weighted level
for gauges (a seat held half a day counts half); drawn as a stacked bar per day by the
template macro `bar_chart` (templates/chart.html.j2, inline SVG). Pure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from billing.periods import local_midnight
from meterline.audit.levels import GAUGES, HeldLevel
from meterline.audit.values import Dims, dims_label

if TYPE_CHECKING:
    from meterline.audit.statement.model import StatementInvoice
    from meters.catalog import MeterCatalog

COLORS = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#84cc16")


@dataclass(frozen=True)
class Chart:
    """Daily usage of one meter over one period, per dimension group."""

    meter: str
    unit: str
    measure: str
    aggregation: str
    billed: Decimal
    days: tuple[date, ...]
    bars: Mapping[date, Mapping[str, Decimal]]

    @property
    def gauge(self) -> bool:
        return self.aggregation in GAUGES

    @property
    def groups(self) -> list[str]:
        return sorted({g for per_day in self.bars.values() for g in per_day})

    @property
    def totals(self) -> dict[date, Decimal]:
        return {d: sum(self.bars.get(d, {}).values(), Decimal(0)) for d in self.days}

    @property
    def top(self) -> Decimal:
        return max(self.totals.values(), default=Decimal(0))

    @property
    def total(self) -> Decimal:
        return sum(self.totals.values(), Decimal(0))

    def layout(self) -> dict[str, Any]:
        """SVG geometry: a stacked bar per local day, one colour per group, to scale."""
        width, height, left, bottom, top_pad = 760, 200, 56, 28, 12
        plot_h = height - bottom - top_pad
        top = self.top or Decimal(1)
        step = (width - left - 8) / max(len(self.days), 1)
        bar_w = max(step * 0.75, 1)
        groups = self.groups
        rects, labels = [], []
        for i, day in enumerate(self.days):
            x = left + i * step + (step - bar_w) / 2
            y = float(top_pad + plot_h)
            for g, group in enumerate(groups):
                value = self.bars.get(day, {}).get(group, Decimal(0))
                if not value:
                    continue
                h = float(value / top) * plot_h
                y -= h
                rects.append(
                    {
                        "x": f"{x:.2f}",
                        "y": f"{y:.2f}",
                        "w": f"{bar_w:.2f}",
                        "h": f"{h:.2f}",
                        "color": COLORS[g % len(COLORS)],
                        "day": day,
                        "group": group,
                        "value": value,
                    }
                )
            if i % 5 == 0 or i == len(self.days) - 1:
                labels.append({"x": f"{x + bar_w / 2:.2f}", "text": f"{day:%m-%d}"})
        return {
            "width": width,
            "height": height,
            "left": left,
            "top_pad": top_pad,
            "baseline": top_pad + plot_h,
            "rects": rects,
            "labels": labels,
            "legend": [(COLORS[g % len(COLORS)], group) for g, group in enumerate(groups)],
        }


class DailyUsage(NamedTuple):
    """One customer's raw usage of one meter and dimension group on one local day."""

    day: date
    meter: str
    dims: Dims
    events: int
    value_sum: Decimal


def daily_counts(
    rows: Iterable[DailyUsage], meter: str, aggregation: str
) -> dict[date, dict[str, Decimal]]:
    """Per local day and dimension group: events (count meters) or the sum of values."""
    out: dict[date, dict[str, Decimal]] = defaultdict(dict)
    for row in rows:
        if row.meter != meter:
            continue
        counted = aggregation in ("count", "unique_count")
        out[row.day][dims_label(row.dims)] = Decimal(row.events) if counted else row.value_sum
    return dict(out)


def daily_levels(
    levels: Sequence[HeldLevel], days: Sequence[date], tz: str
) -> dict[date, dict[str, Decimal]]:
    """Per local day and group: the time-weighted average of the levels held that day
    (a level held 12 of a day's 24 hours counts half; a 23-hour DST day is 23 hours)."""
    out: dict[date, dict[str, Decimal]] = {}
    for day in days:
        day_start, day_end = local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)
        day_ms = Decimal((day_end - day_start) // timedelta(milliseconds=1))
        per_group: dict[str, Decimal] = defaultdict(Decimal)
        for level in levels:
            start = max(level.start, day_start)
            end = min(level.end, day_end)
            if end > start:
                held = Decimal((end - start) // timedelta(milliseconds=1))
                per_group[level.group] += level.value * held / day_ms
        if per_group:
            out[day] = {g: v.quantize(Decimal("0.001")) for g, v in per_group.items()}
    return out


def charts(
    inv: StatementInvoice, meters: MeterCatalog, usage: Sequence[DailyUsage]
) -> tuple[Chart, ...]:
    """The invoice's charts, one per meter with usage in the period: counter meters from
    the daily usage, gauges from the levels of their lines' audit chains."""
    tz, days = inv.period.timezone, inv.period.days()
    out = []
    for name, meter in sorted(meters.meters.items()):
        usage_lines = [ln for ln in inv.lines if ln.meter == name and ln.kind == "usage"]
        billed = sum((ln.quantity for ln in usage_lines), Decimal(0))
        aggregation = meter.aggregation.value
        if aggregation in GAUGES:
            found = [
                level
                for ln in usage_lines
                if ln.chain is not None and ln.chain.quantity is not None
                for level in ln.chain.quantity.levels
            ]
            bars = daily_levels(found, days, tz)
            measure = "average level held that day"
        else:
            bars = daily_counts(usage, name, aggregation)
            measure = "events" if aggregation == "count" else "sum of values"
        if any(v for per_day in bars.values() for v in per_day.values()):
            out.append(Chart(name, meter.unit, measure, aggregation, billed, tuple(days), bars))
    return tuple(out)
