"""Billable quantities of a window, per (customer, meter, dimensions).

Two engines give the same numbers: `period_quantities` merges the hourly rollup (the
billing path), `raw_period_quantities` reads `usage_events FINAL` directly (the audit
path, and the rollup's test oracle). Per meter aggregation:

- sum: the sum of the values of the window's events; count: their number; max: the
  largest value;
- unique_count: the number of distinct values of the meter's unique_property among the
  window's events (exact, across hours and days; events without the property count
  towards `events` but add no value);
- latest: the last value before `end` (by timestamp, then event_id), carried over from
  before `start` if the window has no event, however old;
- time_weighted: the integral of the gauge over [start, end) divided by the length of
  the normalization period (the window itself by default). The gauge holds each event's
  value until the next event of its series; at `start` it holds the last value before
  (0 if none). A seat held 10 days of a 30-day month gives 1/3.

Quantities are exact in the engine (Decimal, value x milliseconds for integrals); the
one division (time_weighted) is done here and every quantity is rounded once to 9
decimal places, half-even. Windows normalized to one period therefore add up to the
period's quantity to within 1e-9 per window, exactly when each part is a multiple of
1e-9 (docs/rollups.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, NamedTuple

from meters.catalog import Aggregation, MeterCatalog
from meters.rollup import definition_params
from meters.sql_files import query
from meters.warehouse import Warehouse

QUANTUM = Decimal("1e-9")
# Enough digits for any Decimal(76, 9) integral divided by a period in milliseconds.
_DIVISION = Context(prec=100, rounding=ROUND_HALF_EVEN)
_WINDOW_AGGREGATIONS = (
    Aggregation.SUM,
    Aggregation.COUNT,
    Aggregation.MAX,
    Aggregation.UNIQUE_COUNT,
)


class QuantityRow(NamedTuple):
    customer_id: str
    meter: str
    dimensions: dict[str, str]
    quantity: Decimal
    events: int
    """Events of the window (a carried-over level has 0)."""


def period_quantities(
    warehouse: Warehouse,
    catalog: MeterCatalog,
    *,
    start: datetime,
    end: datetime,
    customer_ids: Sequence[str] | None = None,
    normalize_to: tuple[datetime, datetime] | None = None,
) -> list[QuantityRow]:
    """Billable quantities of [start, end) from the hourly rollup.

    start and end must be timezone-aware whole UTC hours (a period in any whole-hour
    timezone is). Only the days rolled up so far are seen: see `rollup.dirty_days`.
    """
    return _quantities(warehouse, catalog, start, end, customer_ids, normalize_to, raw=False)


def raw_period_quantities(
    warehouse: Warehouse,
    catalog: MeterCatalog,
    *,
    start: datetime,
    end: datetime,
    customer_ids: Sequence[str] | None = None,
    normalize_to: tuple[datetime, datetime] | None = None,
) -> list[QuantityRow]:
    """The same quantities as `period_quantities`, from the raw events (no rollup)."""
    return _quantities(warehouse, catalog, start, end, customer_ids, normalize_to, raw=True)


def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The window in UTC; ValueError unless both ends are aware whole hours, start < end."""
    out = []
    for name, moment in (("start", start), ("end", end)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{name} {moment!r} must be timezone-aware")
        utc = moment.astimezone(UTC)
        if (utc.minute, utc.second, utc.microsecond) != (0, 0, 0):
            raise ValueError(
                f"{name} {moment.isoformat()} is not a whole UTC hour; rollups are hourly, "
                "so a window must start and end on whole hours"
            )
        out.append(utc)
    if out[0] >= out[1]:
        raise ValueError(f"empty window: start {start.isoformat()} is not before end")
    return out[0], out[1]


def _normalization_ms(normalize_to: tuple[datetime, datetime]) -> Decimal:
    n_start, n_end = normalize_to
    for moment in normalize_to:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"normalize_to {moment!r} must be timezone-aware")
    length = n_end - n_start
    if length <= timedelta(0):
        raise ValueError("normalize_to must be a period of positive length")
    # Exact: timedelta is whole microseconds.
    return Decimal(length // timedelta(microseconds=1)) / 1000


def _quantities(
    warehouse: Warehouse,
    catalog: MeterCatalog,
    start: datetime,
    end: datetime,
    customer_ids: Sequence[str] | None,
    normalize_to: tuple[datetime, datetime] | None,
    *,
    raw: bool,
) -> list[QuantityRow]:
    start, end = check_window(start, end)
    prefix = "raw" if raw else "rollup"
    norm_ms = _normalization_ms(normalize_to or (start, end))
    meters = catalog.meters
    window_meters = sorted(n for n, m in meters.items() if m.aggregation in _WINDOW_AGGREGATIONS)
    gauge_meters = sorted(n for n, m in meters.items() if m.aggregation not in _WINDOW_AGGREGATIONS)
    base: dict[str, Any] = {
        "start": start,
        "end": end,
        "all_customers": customer_ids is None,
        "customer_ids": sorted(set(customer_ids or ())),
    }
    if raw:
        params = definition_params(catalog)
        base.update({k: params[k] for k in ("dimensions", "filters", "unique_properties")})

    rows: list[QuantityRow] = []
    if window_meters:
        for customer, meter, dims, events, value_sum, value_max, uniques in warehouse.query_rows(
            query(f"quantities/{prefix}_window"), {**base, "meters": window_meters}
        ):
            aggregation = meters[meter].aggregation
            quantity = {
                Aggregation.SUM: value_sum,
                Aggregation.COUNT: events,
                Aggregation.MAX: value_max,
                Aggregation.UNIQUE_COUNT: uniques,
            }[aggregation]
            rows.append(_row(customer, meter, dims, Decimal(quantity), events))
    if gauge_meters:
        for customer, meter, dims, events, latest, integral in warehouse.query_rows(
            query(f"quantities/{prefix}_gauges"), {**base, "meters": gauge_meters}
        ):
            if meters[meter].aggregation is Aggregation.LATEST:
                quantity = Decimal(latest)
            else:
                quantity = _DIVISION.divide(Decimal(integral), norm_ms)
            rows.append(_row(customer, meter, dims, quantity, events))
    # A level carried over as 0 (a gauge removed before the window) bills nothing and
    # says nothing: keep a series only if it had events or a non-zero quantity.
    kept = [r for r in rows if r.events or r.quantity]
    return sorted(kept, key=lambda r: (r.customer_id, r.meter, sorted(r.dimensions.items())))


def _row(customer: str, meter: str, dims: Any, quantity: Decimal, events: Any) -> QuantityRow:
    return QuantityRow(
        customer_id=customer,
        meter=meter,
        dimensions=dict(dims),
        quantity=quantity.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=_DIVISION),
        events=int(events),
    )
