"""Warehouse reads shared by the audit's use cases: raw events and rollup rows as typed
facts (``meterline.audit.facts``). Queries are sql/queries/audit/*.sql, with bound
parameters only; the caller opens the warehouse (``meterline.connections.open_warehouse``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from meterline.audit.facts import EventList, EventRow, Span, UsageTotals
from meterline.audit.values import Dims, dims_of
from meterline.jobs.watermarks import EPOCH, Watermark
from meters.catalog import MeterCatalog
from meters.rollup import definition_params
from meters.sql_files import query
from meters.warehouse.base import Warehouse

# A usage window: (id, customer, start, end), [start, end).
UsageWindow = tuple[int, str, datetime, datetime]


class MeterWindow(NamedTuple):
    """One customer's meter over [start, end)."""

    customer: str
    meter: str
    start: datetime
    end: datetime


def meter_rules(meters: MeterCatalog) -> dict[str, Any]:
    """The meters' dimensions and filters as the bound parameters that the shared SQL
    fragments (shared/meter_dimensions, shared/matches_meter_filter) read."""
    params = definition_params(meters)
    return {"dimensions": params["dimensions"], "filters": params["filters"]}


def _params(
    meters: MeterCatalog, window: MeterWindow, price_filter: Mapping[str, str]
) -> dict[str, Any]:
    """The bound parameters of a window, for the dimension groups of a price."""
    meters.get(window.meter)  # an unknown meter is an error here, not an empty answer
    return {**window._asdict(), **meter_rules(meters), "price_filter": dict(price_filter)}


def usage_totals(
    warehouse: Warehouse,
    meters: MeterCatalog,
    windows: Sequence[UsageWindow],
    *,
    rollup: bool,
) -> dict[int, dict[tuple[str, Dims], UsageTotals]]:
    """Per window: events and value sums per (meter, dimension group), from the raw
    events or from the rollup rows."""
    out: dict[int, dict[tuple[str, Dims], UsageTotals]] = defaultdict(dict)
    if not windows:
        return out
    base: dict[str, Any] = {
        "windows": list(windows),
        "customer_ids": sorted({w[1] for w in windows}),
        "start": min(w[2] for w in windows),
        "end": max(w[3] for w in windows),
        "meters": sorted(meters.meters),
    }
    if rollup:
        for wid, meter, dims, rows, events, value_sum, latest in warehouse.query_rows(
            query("audit/rollup_window_totals"), base
        ):
            out[int(wid)][(meter, dims_of(dims))] = UsageTotals(
                int(events), Decimal(value_sum), latest, int(rows)
            )
    else:
        for wid, meter, dims, events, value_sum, latest in warehouse.query_rows(
            query("audit/window_totals"), {**base, **meter_rules(meters)}
        ):
            out[int(wid)][(meter, dims_of(dims))] = UsageTotals(
                int(events), Decimal(value_sum), latest
            )
    return out


def rollup_days(warehouse: Warehouse, window: MeterWindow) -> list[tuple[date, Dims, UsageTotals]]:
    """The rollup rows of one customer's meter over the window, per UTC day and group."""
    return [
        (day, dims_of(dims), UsageTotals(int(events), Decimal(value_sum), latest, int(rows)))
        for day, dims, rows, events, value_sum, latest in warehouse.query_rows(
            query("audit/rollup_days"), window._asdict()
        )
    ]


def line_events(
    warehouse: Warehouse,
    meters: MeterCatalog,
    window: MeterWindow,
    *,
    price_filter: Mapping[str, str],
    seen: Watermark | None,
    limit: int,
    rating_run_id: int | None = None,
) -> EventList:
    """Events of a line's window: all of them (`seen` None, a sample), or those the
    rating run with watermark `seen` did not see (the late ones), oldest first."""
    rows = warehouse.query_rows(
        query("audit/line_events"),
        {
            **_params(meters, window, price_filter),
            "since": seen.events if seen else EPOCH,
            "stale": dict(seen.stale) if seen else {},
            "order_by_time": seen is not None,
            "limit": max(limit, 1),
        },
    )
    events = tuple(
        EventRow(
            event_id=str(eid),
            timestamp=ts,
            value=Decimal(value),
            dims=dims_of(dims),
            ingested_at=ingested,
            source=str(source),
        )
        for eid, ts, value, dims, ingested, source, _n, _v in rows[:limit]
    )
    count = int(rows[0][6]) if rows else 0
    value_sum = Decimal(rows[0][7]) if rows else Decimal(0)
    if seen is None:
        return EventList(count=count, value_sum=value_sum, events=events)
    return EventList(
        since=seen.events,
        stale_days=dict(sorted(seen.stale.items())),
        rating_run_id=rating_run_id,
        count=count,
        value_sum=value_sum,
        events=events,
    )


def gauge_spans(warehouse: Warehouse, meters: MeterCatalog, window: MeterWindow) -> list[Span]:
    """Every dimension group's gauge spans of one customer's meter over [start, end)
    (the level carried in at `start` included)."""
    rows = warehouse.query_rows(query("audit/gauge_spans"), _params(meters, window, {}))
    return [
        Span(dims_of(dims), str(eid), ts, Decimal(value), int(from_ms), int(to_ms))
        for dims, eid, ts, value, _ingested, from_ms, to_ms in rows
    ]
