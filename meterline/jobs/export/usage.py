"""The warehouse's side of a month's export: daily usage and rejected events.

Daily usage: for each finalized invoice of the month, each local day of its billing
period (in the subscription's timezone, cut to the period), the customer's quantity per
meter and dimension values, read from the hourly rollup by the rating's own quantity
code (meters.quantities.batch_quantities, all days in one batch). A time_weighted meter
is divided by the whole period, so its days add up to the period's quantity, as sum and
count days do; a max, unique_count or latest day is that day's own figure (docs/export.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pyarrow as pa

from billing.periods import local_midnight, zone
from billing.views import month_bounds
from meterline.sinks.lake.tables import DAILY_USAGE, INSTANT, REJECTED_EVENTS
from meters.catalog import MeterCatalog
from meters.quantities import WindowRequest, batch_quantities
from meters.sql_files import query
from meters.warehouse.base import Warehouse

#: The longest text a Redshift VARCHAR holds, in bytes: a longer raw row is cut to it.
RAW_LIMIT = 65_535


@dataclass(frozen=True)
class UsagePeriod:
    """A finalized invoice's billing period, with whom and where it is."""

    invoice_id: int
    subscription: str
    customer: str
    timezone: str
    start: datetime
    end: datetime


def local_days(p: UsagePeriod) -> Iterator[tuple[date, datetime, datetime]]:
    """Each local day of the period: (day, start, end) in UTC, cut to the period."""
    day = p.start.astimezone(zone(p.timezone)).date()
    while True:
        start = max(local_midnight(day, p.timezone), p.start)
        if start >= p.end:
            return
        end = min(local_midnight(day + timedelta(days=1), p.timezone), p.end)
        yield day, start, end
        day += timedelta(days=1)


def dimensions_text(dimensions: dict[str, str]) -> str:
    """A row's dimension values as its key spells them: JSON, keys sorted, no spaces."""
    return json.dumps(dict(sorted(dimensions.items())), separators=(",", ":"), ensure_ascii=False)


def daily_usage(
    warehouse: Warehouse, meters: MeterCatalog, periods: Sequence[UsagePeriod]
) -> pa.Table:
    """The daily usage rows of these periods (module docstring), in key order."""
    requests, days = [], []
    for p in periods:
        for day, start, end in local_days(p):
            requests.append(
                WindowRequest(start, end, frozenset({p.customer}), normalize_to=(p.start, p.end))
            )
            days.append((p, day))
    found = batch_quantities(warehouse, meters, requests) if requests else []
    cols: dict[str, list[object]] = {c.name: [] for c in DAILY_USAGE.columns}
    # A month has few distinct dimension values and many rows: each is written once.
    texts: dict[tuple[tuple[str, str], ...], str] = {}
    for (p, day), rows in zip(days, found, strict=True):
        for row in rows:
            dims = tuple(sorted(row.dimensions.items()))
            if dims not in texts:
                texts[dims] = dimensions_text(row.dimensions)
            cols["subscription_id"].append(p.subscription)
            cols["day"].append(day)
            cols["meter"].append(row.meter)
            cols["dimensions"].append(texts[dims])
            cols["customer_id"].append(p.customer)
            cols["invoice_id"].append(p.invoice_id)
            cols["timezone"].append(p.timezone)
            cols["aggregation"].append(str(meters.meters[row.meter].aggregation))
            cols["events"].append(row.events)
            cols["quantity"].append(row.quantity)
    types = {c.name: c.type for c in DAILY_USAGE.columns}
    return pa.table({name: pa.array(values, types[name]) for name, values in cols.items()})


def rejected_events(warehouse: Warehouse, period: str) -> pa.Table:
    """The rows ingested in the month (UTC) and rejected; the raw row cut to RAW_LIMIT
    UTF-8 bytes, with its whole length in ``raw_bytes``."""
    first, nxt = month_bounds(period)
    got = warehouse.query_arrow(
        query("export/rejected_events"),
        {
            "start": datetime.combine(first, time(0), tzinfo=UTC),
            "end": datetime.combine(nxt, time(0), tzinfo=UTC),
        },
    )
    raw = [str(v) for v in got.column("raw").to_pylist()]
    cut, sizes = [], []
    for text in raw:
        data = text.encode()
        sizes.append(len(data))
        cut.append(data[:RAW_LIMIT].decode(errors="ignore") if len(data) > RAW_LIMIT else text)
    types = {c.name: c.type for c in REJECTED_EVENTS.columns}
    out = {
        name: got.column(name).cast(types[name])
        for name in ("ingest_id", "source", "source_line", "event_id", "customer_id", "meter")
    }
    out["ingested_at"] = got.column("ingested_at").cast(INSTANT)
    out["reason"] = got.column("reason").cast(pa.string())
    out["detail"] = got.column("detail").cast(pa.string())
    out["raw_row"] = pa.array(cut, pa.string())
    out["raw_bytes"] = pa.array(sizes, pa.int64())
    return pa.table(out)
