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

A third way, for the live usage of a customer (`LiveCut`, meterline/jobs/usage.py): the
rollup where it holds every event of the customer's day, and for the other days (not
rolled up yet, or with events ingested since the build, and the day in progress) the
hourly rows the rollup's own build queries make of the raw events, merged by the same
window and gauge queries: one set of aggregation rules, not a second copy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, NamedTuple

from meters.catalog import Aggregation, MeterCatalog
from meters.rollup import build_params, definition_params
from meters.sql_files import query
from meters.warehouse.base import Warehouse

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


class WindowRequest(NamedTuple):
    """The quantities of [start, end) for some customers (None: every customer)."""

    start: datetime
    end: datetime
    customer_ids: frozenset[str] | None = None
    normalize_to: tuple[datetime, datetime] | None = None
    """The period a time_weighted integral is divided by (the window itself if None)."""


def period_quantities(
    warehouse: Warehouse,
    catalog: MeterCatalog,
    *,
    start: datetime,
    end: datetime,
    customer_ids: Sequence[str] | None = None,
    normalize_to: tuple[datetime, datetime] | None = None,
    raw: bool = False,
) -> list[QuantityRow]:
    """Billable quantities of [start, end) from the hourly rollup (with `raw`, from the
    raw events: `raw_period_quantities`).

    start and end must be timezone-aware whole UTC hours (a period in any whole-hour
    timezone is). Only the days rolled up so far are seen: see `rollup.dirty_days`.
    """
    request = WindowRequest(start, end, _customer_set(customer_ids), normalize_to)
    return batch_quantities(warehouse, catalog, [request], raw=raw)[0]


def raw_period_quantities(
    warehouse: Warehouse, catalog: MeterCatalog, **window: Any
) -> list[QuantityRow]:
    """The same quantities as `period_quantities`, from the raw events (no rollup);
    `window` takes its keyword arguments."""
    return period_quantities(warehouse, catalog, raw=True, **window)


def _customer_set(customer_ids: Sequence[str] | None) -> frozenset[str] | None:
    return None if customer_ids is None else frozenset(customer_ids)


# The two queries of a read (`_Reader`): sum/count/max/unique_count meters, then gauges.
QueryKind = str


@dataclass(frozen=True)
class LiveCut:
    """What a live read of some customers' quantities sees (`live_cut`): the events before
    `until` that were ingested up to `watermark` (the latest committed ingest). The rollup
    is read before midnight UTC of `until`'s day (its hours hold events after `until`),
    except on the days each query reads from the raw events instead: `window_days` (sum,
    count, max and unique_count meters) and `gauge_days` (latest and time_weighted): the
    days whose rollup does not hold the customers' events of those meters yet, and
    `until`'s own day when they have such events on it. Those days' hourly rows are built
    from the raw events by the rollup's own queries."""

    until: datetime
    watermark: datetime
    window_days: tuple[date, ...] = ()
    gauge_days: tuple[date, ...] = ()

    @property
    def rolled_end(self) -> datetime:
        """The rollup is read before this instant: midnight UTC of `until`'s day."""
        until = self.until.astimezone(UTC)
        return datetime.combine(until.date(), time(0), tzinfo=UTC)

    @property
    def raw_days(self) -> tuple[date, ...]:
        """The UTC days read from the raw events (by either query), oldest first."""
        return tuple(sorted(set(self.window_days) | set(self.gauge_days)))

    @property
    def rolled_up_through(self) -> datetime:
        """Every day before this instant is read from the rollup: the first raw day's
        midnight, or `until` when no day is read raw."""
        days = self.raw_days
        return datetime.combine(days[0], time(0), tzinfo=UTC) if days else self.until

    def days_of(self, kind: QueryKind) -> tuple[date, ...]:
        return self.gauge_days if kind == "gauges" else self.window_days

    def swaps(self, kind: QueryKind) -> tuple[tuple[str, str], ...]:
        """The fragments that turn the rollup's `kind` query ("window" or "gauges") into
        this read (meters.sql_files.query_text): the rollup rows it takes, plus, when it
        reads days from the raw events, the build's rows of those."""
        return (_LIVE_SWAPS if self.days_of(kind) else _ROLLED_SWAPS)[kind]

    def params(self, kind: QueryKind, catalog: MeterCatalog) -> dict[str, Any]:
        """The bound parameters of the swapped fragments of the `kind` query
        (quantities/_rolled_*.sql, quantities/_live_*.sql)."""
        days = self.days_of(kind)
        cut = {"live_days": list(days), "rolled_end": self.rolled_end}
        if not days:
            return cut
        build = {k: v for k, v in build_params(catalog).items() if k != "meters"}
        return {
            **build,
            **cut,
            "day_start": datetime.combine(days[0], time(0), tzinfo=UTC),
            "day_end": self.until,
            "watermark": self.watermark,
        }


_ROLLED_SWAPS = {
    "window": (("quantities/_rollup_window_rows", "quantities/_rolled_window_rows"),),
    "gauges": (("quantities/_rollup_gauge_rows", "quantities/_rolled_gauge_rows"),),
}
_LIVE_SWAPS = {
    "window": (
        ("quantities/_rollup_window_rows", "quantities/_live_window_rows"),
        ("rollup/_day_events", "quantities/_live_events"),
    ),
    "gauges": (
        ("quantities/_rollup_gauge_rows", "quantities/_live_gauge_rows"),
        ("rollup/_day_events", "quantities/_live_events"),
    ),
}


def ingest_watermark(warehouse: Warehouse) -> datetime | None:
    """The logical time of the latest committed ingest (the ingest journal): every event
    ingested up to it is stored. Without a journal entry (events written by other means),
    the latest ingest time of any stored event. None for an empty warehouse."""
    ((latest, runs),) = warehouse.query_rows(query("quantities/ingest_watermark"))
    if int(runs):
        return _aware(latest)
    ((latest, count),) = warehouse.query_rows(query("audit/events_watermark"))
    return _aware(latest) if int(count) else None


def live_cut(
    warehouse: Warehouse,
    catalog: MeterCatalog,
    customer_ids: Sequence[str],
    *,
    since: datetime,
    until: datetime,
    gauges_since: datetime | None = None,
) -> LiveCut:
    """What a live read of the customers' quantities up to `until` sees (LiveCut): the
    latest committed ingest, and the UTC days from `since` (`gauges_since` for latest and
    time_weighted meters, whose level a window carries in from before it) to `until`
    holding events of theirs the rollup has not read (never rolled up, or ingested after
    the day's build watermark), and `until`'s own day when it holds events of theirs
    before `until`; per kind of meter (LiveCut). Reads only their events (the sort key)
    and rollup_state.

    Not seen, as by any rollup reader until the nightly run: an ingest whose logical time
    lies at or before a day's build watermark and that arrived after the build (`ingest
    --as-of` history; meters.rollup.dirty_days finds it by the day's row count)."""
    gauges_since = since if gauges_since is None else gauges_since
    if any(t.tzinfo is None for t in (since, until, gauges_since)):
        raise ValueError("since, gauges_since and until must be timezone-aware")
    mark = ingest_watermark(warehouse)
    if mark is None:
        return LiveCut(until, datetime(1970, 1, 1, tzinfo=UTC))
    # until's own day, when the rollup's hours of it would hold events after until
    bare = LiveCut(until, mark)
    partial = bare.rolled_end.date() if until > bare.rolled_end else None
    rows = warehouse.query_rows(
        query("quantities/live_days"),
        {
            "meters": sorted(catalog.meters),
            "customer_ids": sorted(set(customer_ids)),
            "gauge_meters": build_params(catalog)["gauge_meters"],
            "since": since,
            "gauges_since": gauges_since,
            "until": until,
            "watermark": mark,
        },
    )
    raw: dict[bool, list[date]] = {False: [], True: []}
    for day, gauge, unrolled in rows:
        if unrolled or day == partial:
            raw[bool(gauge)].append(day)
    return LiveCut(until, mark, tuple(raw[False]), tuple(raw[True]))


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# (customer, window number) pairs per query on a ClickHouse server: keeps a query's
# parameters far below its URL limit (http_max_uri_size is 1 MiB) even with long customer
# ids. The embedded engine (an exclusive warehouse, in this process) takes its parameters
# in memory and reads every pair in one query: each query scans the rollup of the whole
# span, so 24,000 subscriptions read in 2 queries of ~2 s instead of 24 of ~0.4 s.
PAIRS_PER_QUERY = 2_000


def batch_quantities(
    warehouse: Warehouse,
    catalog: MeterCatalog,
    requests: Sequence[WindowRequest],
    *,
    raw: bool = False,
    pairs_per_query: int | None = None,
    live: LiveCut | None = None,
) -> list[list[QuantityRow]]:
    """The quantities of many windows, each for its customers: one list per request, in
    the order given. From the rollup, or with `raw` from `usage_events FINAL`, or with
    `live` from the rollup where it is complete and the rollup's own hourly rows of the
    raw events elsewhere, up to `live.until` (LiveCut; customers named, never all).

    All windows are read together, `pairs_per_query` (customer, window) pairs per query
    (None: PAIRS_PER_QUERY on a server, all of them on the embedded engine), instead of
    one query per window: a close needs a window per anchor day, timezone and price
    version, hundreds of them for a few thousand subscriptions. A request for every
    customer (customer_ids None) must be the only one.
    """
    wanted = [check_window(r.start, r.end) for r in requests]
    windows = sorted(set(wanted))
    number = {window: i + 1 for i, window in enumerate(windows)}
    found: dict[tuple[int, str], list[tuple[Any, ...]]] = defaultdict(list)
    if live is not None and (raw or any(r.customer_ids is None for r in requests)):
        raise ValueError("a live read is of the rollup, for customers named")
    reader = _Reader(warehouse, catalog, raw, found, live)
    if any(r.customer_ids is None for r in requests):
        if len(requests) != 1:
            raise ValueError("a request for every customer must be the only request")
        reader.read(windows, [], all_customers=True)
    else:
        pairs = sorted(
            {
                (customer, number[window])
                for r, window in zip(requests, wanted, strict=True)
                for customer in r.customer_ids or ()
            }
        )
        size = pairs_per_query or (
            max(len(pairs), 1) if getattr(warehouse, "exclusive", False) else PAIRS_PER_QUERY
        )
        for i in range(0, len(pairs), size):
            reader.read(windows, pairs[i : i + size], all_customers=False)

    out = []
    for request, window in zip(requests, wanted, strict=True):
        w = number[window]
        norm_ms = _normalization_ms(request.normalize_to or windows[w - 1])
        customers = request.customer_ids
        if customers is None:
            customers = frozenset(c for _, c in found)
        rows = [
            _quantity_row(catalog.meters[values[0]].aggregation, customer, values, norm_ms)
            for customer in customers
            for values in found.get((w, customer), [])
        ]
        # A level carried over as 0 (a gauge removed before the window) bills nothing and
        # says nothing: keep a series only if it had events or a non-zero quantity.
        kept = [r for r in rows if r.events or r.quantity]
        out.append(
            sorted(kept, key=lambda r: (r.customer_id, r.meter, sorted(r.dimensions.items())))
        )
    return out


class _Reader:
    """Runs the window and gauge queries (rollup or raw) for batches of pairs, collecting
    what they return per (window number, customer) into `found`."""

    def __init__(
        self,
        warehouse: Warehouse,
        catalog: MeterCatalog,
        raw: bool,
        found: dict[tuple[int, str], list[tuple[Any, ...]]],
        live: LiveCut | None = None,
    ):
        self.warehouse = warehouse
        self.found = found
        self.prefix = "raw" if raw else "rollup"
        self.live = live
        meters = catalog.meters
        windowed = (n for n, m in meters.items() if m.aggregation in _WINDOW_AGGREGATIONS)
        window_meters = sorted(windowed)
        gauge_meters = sorted(set(meters) - set(window_meters))
        # (query, its meters): sum/count/max/unique_count meters, then latest/time_weighted.
        self.queries = [
            (name, wanted)
            for name, wanted in (("window", window_meters), ("gauges", gauge_meters))
            if wanted
        ]
        self.definitions: dict[str, Any] = {}
        if raw:
            params = definition_params(catalog)
            self.definitions = {
                k: params[k] for k in ("dimensions", "filters", "unique_properties")
            }
        self.catalog = catalog

    def read(
        self,
        windows: Sequence[tuple[datetime, datetime]],
        pairs: Sequence[tuple[str, int]],
        *,
        all_customers: bool,
    ) -> None:
        used = [windows[w - 1] for w in {w for _, w in pairs}] if pairs else list(windows)
        batch = {
            **self.definitions,
            "windows": list(windows),
            "requests": list(pairs),
            "customer_ids": sorted({c for c, _ in pairs}),
            "all_customers": all_customers,
            "first_start": min(s for s, _ in used),
            "last_end": max(e for _, e in used),
        }
        for name, meters in self.queries:
            swaps: tuple[tuple[str, str], ...] = ()
            cut: dict[str, Any] = {}
            if self.live is not None:
                swaps, cut = self.live.swaps(name), self.live.params(name, self.catalog)
            sql = query(f"quantities/{self.prefix}_{name}", swaps=swaps)
            params = {**batch, **cut, "meters": meters}
            for w, customer, *values in self.warehouse.query_rows(sql, params):
                self.found[(int(w), customer)].append(tuple(values))


def _quantity_row(
    aggregation: Aggregation, customer: str, values: Sequence[Any], norm_ms: Decimal
) -> QuantityRow:
    """A quantity from what a window or gauge query returned for one series."""
    meter, dims, events, *rest = values
    if aggregation in _WINDOW_AGGREGATIONS:
        value_sum, value_max, uniques = rest
        quantity = {
            Aggregation.SUM: value_sum,
            Aggregation.COUNT: events,
            Aggregation.MAX: value_max,
            Aggregation.UNIQUE_COUNT: uniques,
        }[aggregation]
        return _row(customer, meter, dims, Decimal(quantity), events)
    latest, integral = rest
    if aggregation is Aggregation.LATEST:
        return _row(customer, meter, dims, Decimal(latest), events)
    return _row(customer, meter, dims, _DIVISION.divide(Decimal(integral), norm_ms), events)


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


def _row(customer: str, meter: str, dims: Any, quantity: Decimal, events: Any) -> QuantityRow:
    return QuantityRow(
        customer_id=customer,
        meter=meter,
        dimensions=dict(dims),
        quantity=quantity.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=_DIVISION),
        events=int(events),
    )
