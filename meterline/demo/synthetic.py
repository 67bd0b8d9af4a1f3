"""Synthetic Intercom-like usage data with known ground truth.

`generate(GeneratorConfig)` writes, into one folder:

- `customers.jsonl`: customers and their subscriptions (plan, currency, timezone, anchor day,
  start, discounts), one JSON object per line;
- `events/YYYY-MM-DD.parquet` (or `.jsonl`): one file per UTC day of the range, every column
  a string so that malformed values can be represented;
- `late/events-late.parquet` (or `.jsonl`): events of the range delivered after it;
- `truth.parquet`: per customer and meter, the count and value sum of the valid events;
- `manifest.json`: what was written and the exact counts an ingestion must reproduce.
  It is written last: a folder without it is an interrupted run.

Everything is a pure function of the configuration: the same arguments give byte-identical
files. Each random stream is seeded from (seed, stream, day), so the messiness options never
change which valid events exist, and days can be generated one at a time in bounded memory.

The volume is vectorized: per (customer, UTC hour) event counts are Poisson draws from an
intensity (customer rate x weekday rhythm x daytime rhythm in the customer's timezone), then
expanded with numpy and formatted into Arrow string buffers without per-event Python.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meterline.settings import DEMO_CATALOG

FIN = "fin_resolution"
SEATS = "seats"
METERS = (FIN, SEATS)
EVENT_COLUMNS = ("event_id", "customer_id", "meter", "timestamp", "value", "properties")
EVENT_SCHEMA = pa.schema([(name, pa.string()) for name in EVENT_COLUMNS])
MALFORMED_REASONS = (
    "missing_field",
    "bad_timestamp",
    "timestamp_too_old",
    "timestamp_in_future",
    "unknown_meter",
    "negative_value",
    "non_numeric_value",
    "bad_properties",
    "bad_event_id",
)
# Offsets of the out-of-window malformed timestamps: far outside any acceptance window.
OUT_OF_WINDOW_DAYS = 400

Format = Literal["parquet", "jsonl"]
ProgressFn = Callable[[int, int, str], None]
"""Called as (rows written so far, rows to write in total, file being written)."""

_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 86_400_000
_CHUNK_ROWS = 1_000_000

# Random streams (the second element of every SeedSequence).
_S_CUSTOMERS, _S_COUNTS, _S_DETAILS, _S_MESS, _S_MALFORMED, _S_PLACEMENT = 1, 2, 3, 4, 5, 6

# Customer mix.
_CURRENCIES = ("USD", "EUR", "GBP")
_CURRENCY_P = (0.70, 0.20, 0.10)
_TIMEZONES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "USD": (
        ("America/New_York", "America/Los_Angeles", "America/Chicago", "UTC"),
        (0.40, 0.25, 0.20, 0.15),
    ),
    "EUR": (("Europe/Dublin", "Europe/Berlin", "Europe/Paris"), (0.30, 0.40, 0.30)),
    "GBP": (("Europe/London",), (1.0,)),
}
# Daily resolution rate: lognormal, median ~3.6/day, mean ~27/day, a few accounts at thousands.
_RATE_MEDIAN = 3.6
_RATE_SIGMA = 2.0
_RATE_MAX = 20_000.0
_VOLUME_SHARE = 0.03  # the largest accounts are on the volume plan
_COMMITTED_SHARE = 0.05  # mid-size accounts on a minimum commitment
_MID_RANGE_START_SHARE = 0.08
_PERCENT_OFF_SHARE = 0.09
_AMOUNT_OFF_SHARE = 0.02
_SEAT_CHANGE_SHARE = 0.15
_SEAT_LOG_MEDIAN = {"standard": 1.0, "volume": 2.3, "committed": 1.8}
_SEAT_MAX = 50
# A weekend day carries ~40% of a weekday's resolutions (Monday = 0).
_WEEKDAY_WEIGHT = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.4, 0.4])
# Share of a day's resolutions per local hour: quiet nights, busy office hours.
_HOUR_WEIGHT = np.array(
    [0.15, 0.10, 0.10, 0.10, 0.15, 0.25, 0.45, 0.75, 1.00, 1.20, 1.30, 1.30,
     1.20, 1.25, 1.30, 1.25, 1.10, 0.90, 0.70, 0.55, 0.45, 0.35, 0.25, 0.20]
)  # fmt: skip
_HOUR_WEIGHT = _HOUR_WEIGHT / _HOUR_WEIGHT.sum()
_CHANNEL_WEIGHT = {"chat": 0.72, "email": 0.16, "phone": 0.04, "sms": 0.08}
# Re-sent copies: share placed in the next day's file (the rest later in the same file).
_NEXT_DAY_COPY_SHARE = 0.5
# Late rows that are re-sent copies of events already in the daily files, per moved event.
_LATE_DUPLICATE_SHARE = 0.1

_NAME_FIRST = (
    "Acme", "Blue", "Bright", "Cedar", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Harbor",
    "Indigo", "Juniper", "Kite", "Lumen", "Maple", "Nimbus", "Orbit", "Pine", "Quartz", "River",
    "Summit", "Tidal", "Umber", "Vertex", "Willow", "Zephyr",
)  # fmt: skip
_NAME_SECOND = (
    "Analytics", "Apps", "Bank", "Cloud", "Commerce", "Data", "Foods", "Games", "Health",
    "Insurance", "Labs", "Logistics", "Media", "Motors", "Networks", "Pay", "Retail", "Robotics",
    "Security", "Software", "Studios", "Travel",
)  # fmt: skip
_NAME_SUFFIX = ("Inc.", "Ltd", "GmbH", "SAS", "LLC", "Group", "Co.", "plc")


# --------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class GeneratorConfig:
    """Arguments of one generation; the output is a pure function of them."""

    customers: int
    start: date
    days: int
    seed: int
    out: Path
    duplicates: float = 0.0
    late: float = 0.0
    malformed: float = 0.0
    format: Format = "parquet"
    events_per_day: int | None = None
    """Scale the resolution rates so the range averages about this many per day."""
    catalog_path: Path = DEMO_CATALOG
    overwrite: bool = False
    """Replace the generator's own files in `out` (never anything else)."""

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError("customers must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.seed < 0:
            raise ValueError("seed must be a non-negative integer")
        for name in ("duplicates", "late", "malformed"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, got {value}")
        if self.format not in ("parquet", "jsonl"):
            raise ValueError(f"format must be parquet or jsonl, got {self.format!r}")
        if self.events_per_day is not None and self.events_per_day < 1:
            raise ValueError("events_per_day must be at least 1")
        if not isinstance(self.start, date) or isinstance(self.start, datetime):
            raise ValueError("start must be a datetime.date")

    @property
    def end(self) -> date:
        """First day after the range."""
        return self.start + timedelta(days=self.days)


@dataclass(frozen=True)
class MeterTotal:
    events: int
    value_sum: int

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, "value_sum": str(self.value_sum)}


@dataclass
class FileCounts:
    """Counts of a set of rows read in file order (days in order, rows in order)."""

    rows: int = 0
    valid_events: int = 0
    exact_duplicates: int = 0
    conflicting_duplicates: int = 0
    malformed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MALFORMED_REASONS, 0))
    totals_by_meter: dict[str, MeterTotal] = field(
        default_factory=lambda: {m: MeterTotal(0, 0) for m in METERS}
    )

    def add(self, other: FileCounts) -> None:
        self.rows += other.rows
        self.valid_events += other.valid_events
        self.exact_duplicates += other.exact_duplicates
        self.conflicting_duplicates += other.conflicting_duplicates
        for reason, n in other.malformed.items():
            self.malformed[reason] += n
        for meter, total in other.totals_by_meter.items():
            mine = self.totals_by_meter[meter]
            self.totals_by_meter[meter] = MeterTotal(
                mine.events + total.events, mine.value_sum + total.value_sum
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "valid_events": self.valid_events,
            "exact_duplicates": self.exact_duplicates,
            "conflicting_duplicates": self.conflicting_duplicates,
            "malformed": dict(self.malformed),
            "totals_by_meter": {m: t.to_dict() for m, t in self.totals_by_meter.items()},
        }


@dataclass
class Manifest:
    """The ground truth of one generated folder (`manifest.json`)."""

    seed: int
    customers: int
    start: date
    days: int
    format: Format
    options: dict[str, Any]
    files: list[str]
    late_files: list[str]
    daily: FileCounts
    late: FileCounts
    file_stats: dict[str, FileCounts]
    truth_file: str = "truth.parquet"
    customers_file: str = "customers.jsonl"

    @property
    def rows_written(self) -> int:
        return self.daily.rows

    @property
    def valid_events(self) -> int:
        return self.daily.valid_events

    def to_dict(self) -> dict[str, Any]:
        daily = self.daily.to_dict()
        return {
            "seed": self.seed,
            "customers": self.customers,
            "start": self.start.isoformat(),
            "days": self.days,
            "format": self.format,
            "options": dict(self.options),
            "customers_file": self.customers_file,
            "truth_file": self.truth_file,
            "files": list(self.files),
            "late_files": list(self.late_files),
            "rows_written": daily["rows"],
            "valid_events": daily["valid_events"],
            "exact_duplicates": daily["exact_duplicates"],
            "conflicting_duplicates": daily["conflicting_duplicates"],
            "malformed": daily["malformed"],
            "totals_by_meter": daily["totals_by_meter"],
            "late": self.late.to_dict(),
            "file_stats": {path: c.to_dict() for path, c in self.file_stats.items()},
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Manifest:
        def counts(d: dict[str, Any]) -> FileCounts:
            return FileCounts(
                rows=d["rows"],
                valid_events=d["valid_events"],
                exact_duplicates=d["exact_duplicates"],
                conflicting_duplicates=d["conflicting_duplicates"],
                malformed=dict(d["malformed"]),
                totals_by_meter={
                    m: MeterTotal(t["events"], int(t["value_sum"]))
                    for m, t in d["totals_by_meter"].items()
                },
            )

        daily = counts({**doc, "rows": doc["rows_written"]})
        return cls(
            seed=doc["seed"],
            customers=doc["customers"],
            start=date.fromisoformat(doc["start"]),
            days=doc["days"],
            format=doc["format"],
            options=dict(doc["options"]),
            files=list(doc["files"]),
            late_files=list(doc["late_files"]),
            daily=daily,
            late=counts(doc["late"]),
            file_stats={p: counts(c) for p, c in doc["file_stats"].items()},
            truth_file=doc["truth_file"],
            customers_file=doc["customers_file"],
        )

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        return cls.from_dict(json.loads((Path(folder) / "manifest.json").read_text()))


def generate(config: GeneratorConfig, progress: ProgressFn | None = None) -> Manifest:
    """Write the synthetic data set described by `config`; return its manifest."""
    return _Generator(config, progress).run()


def read_customers(folder: Path) -> list[dict[str, Any]]:
    """The customers of a generated folder, as written in `customers.jsonl`."""
    with (Path(folder) / "customers.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --------------------------------------------------------------------------------------------
# Catalog


@dataclass(frozen=True)
class _Catalog:
    channels: tuple[str, ...]
    seat_types: tuple[str, ...]
    plan_seat_types: dict[str, tuple[str, ...]]


def _load_catalog(path: Path) -> _Catalog:
    from billing import yamlio  # the one reader of user YAML (no aliases, exact numbers)

    doc = yamlio.load(Path(path).read_text(encoding="utf-8"))
    meters = {m["name"]: m for m in doc.get("meters", [])}
    for name in METERS:
        if name not in meters:
            raise ValueError(f"catalog {path} has no meter {name!r}")
    channels = tuple(meters[FIN]["properties"]["channel"])
    seat_types = tuple(meters[SEATS]["properties"]["seat_type"])
    plans: dict[str, tuple[str, ...]] = {}
    for plan in doc.get("plans", []):
        priced = {
            (price.get("filter") or {}).get("seat_type")
            for price in plan.get("prices", [])
            if price.get("meter") == SEATS
        }
        plans[plan["id"]] = tuple(t for t in seat_types if t in priced)
    for plan_id in ("standard", "volume", "committed"):
        if plan_id not in plans:
            raise ValueError(f"catalog {path} has no plan {plan_id!r}")
    return _Catalog(channels, seat_types, plans)


# --------------------------------------------------------------------------------------------
# Customers and seats


_PLANS = ("standard", "volume", "committed")
IntArray = npt.NDArray[np.int64]


@dataclass
class _Population:
    ids: list[str]
    rate: npt.NDArray[np.float64]  # resolutions per weekday, before scaling
    tz_index: IntArray  # into timezones
    timezones: list[str]
    start_day: IntArray  # subscription start, days since 1970-01-01 (a local date)
    records: list[dict[str, Any]]


def _make_population(cfg: GeneratorConfig, catalog: _Catalog) -> _Population:
    n = cfg.customers
    rng = _rng(cfg.seed, _S_CUSTOMERS)
    width = max(5, len(str(n)))
    ids = [f"cus_{i:0{width}d}" for i in range(1, n + 1)]

    rate = np.minimum(rng.lognormal(math.log(_RATE_MEDIAN), _RATE_SIGMA, n), _RATE_MAX)

    # The largest accounts are on the volume plan; a few mid-size ones on a commitment.
    plan = np.zeros(n, dtype=np.int64)
    by_size = np.argsort(-rate, kind="stable")
    n_volume = max(1, round(_VOLUME_SHARE * n)) if n >= 10 else min(1, n - 1)
    n_committed = max(1, round(_COMMITTED_SHARE * n)) if n >= 10 else min(1, max(0, n - 2))
    plan[by_size[:n_volume]] = 1
    candidates = by_size[n_volume : max(n_volume + n_committed, n // 2 + 1)]
    if n_committed:
        plan[rng.choice(candidates, size=n_committed, replace=False)] = 2

    currency = rng.choice(len(_CURRENCIES), size=n, p=_CURRENCY_P)
    timezones = [tz for c in _CURRENCIES for tz in _TIMEZONES[c][0]]
    tz_index = np.zeros(n, dtype=np.int64)
    base = 0
    for ci, code in enumerate(_CURRENCIES):
        zones, p = _TIMEZONES[code]
        mask = currency == ci
        tz_index[mask] = base + rng.choice(len(zones), size=int(mask.sum()), p=p)
        base += len(zones)

    u = rng.random(n)
    anchor = np.where(u < 0.75, 1, np.where(u < 0.95, rng.integers(1, 29, n), 31))

    range_start = _epoch_day(cfg.start)
    # A few customers start mid-range (there is no mid-range in a one-day range).
    mid_range = (rng.random(n) < _MID_RANGE_START_SHARE) & (cfg.days >= 2)
    start_day = np.where(
        mid_range,
        range_start + rng.integers(1, max(cfg.days, 2), n),
        range_start - rng.integers(30, 731, n),
    )

    u = rng.random(n)
    discount_kind = np.where(
        u < _PERCENT_OFF_SHARE, 1, np.where(u < _PERCENT_OFF_SHARE + _AMOUNT_OFF_SHARE, 2, 0)
    )
    names = (
        rng.integers(0, len(_NAME_FIRST), n),
        rng.integers(0, len(_NAME_SECOND), n),
        rng.integers(0, len(_NAME_SUFFIX), n),
    )

    records: list[dict[str, Any]] = []
    for i in range(n):
        start = _from_epoch_day(int(start_day[i]))
        discounts: list[dict[str, Any]] = []
        if discount_kind[i]:
            discounts.append(
                {
                    "price": "fin_resolution",
                    "percent_off": "10" if discount_kind[i] == 1 else None,
                    "amount_off": "50" if discount_kind[i] == 2 else None,
                    "valid_from": start.isoformat(),
                    "valid_to": None,
                }
            )
        records.append(
            {
                "customer_id": ids[i],
                "name": " ".join(
                    (
                        _NAME_FIRST[names[0][i]],
                        _NAME_SECOND[names[1][i]],
                        _NAME_SUFFIX[names[2][i]],
                    )
                ),
                "currency": _CURRENCIES[currency[i]],
                "timezone": timezones[tz_index[i]],
                "subscription_id": f"sub_{ids[i][4:]}",
                "plan": _PLANS[plan[i]],
                "billing_anchor_day": int(anchor[i]),
                "start": start.isoformat(),
                "end": None,
                "discounts": discounts,
            }
        )
    return _Population(ids, rate, tz_index, timezones, start_day.astype(np.int64), records)


@dataclass
class _Rows:
    """Valid events as columns of codes (formatted into strings only when written)."""

    cust: IntArray
    meter: IntArray  # index into METERS
    ts: IntArray  # epoch milliseconds
    value: IntArray
    prop: IntArray  # index into the generator's property strings
    eid: IntArray  # the n of evt_<seed>_<n>

    def __len__(self) -> int:
        return len(self.ts)

    def copy(self) -> _Rows:
        return _Rows(*(getattr(self, f).copy() for f in _ROW_FIELDS))

    def take(self, idx: npt.ArrayLike) -> _Rows:
        return _Rows(*(getattr(self, f)[idx] for f in _ROW_FIELDS))

    @staticmethod
    def concat(parts: list[_Rows]) -> _Rows:
        if not parts:
            return _Rows.empty()
        return _Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in _ROW_FIELDS))

    @staticmethod
    def empty() -> _Rows:
        return _Rows(*(np.zeros(0, dtype=np.int64) for _ in _ROW_FIELDS))


_ROW_FIELDS = ("cust", "meter", "ts", "value", "prop", "eid")


def _plan_seats(cfg: GeneratorConfig, catalog: _Catalog, pop: _Population, prop_base: int) -> _Rows:
    """One gauge reading per (customer, seat type) at the start, and some mid-range changes."""
    rng = _rng(cfg.seed, _S_CUSTOMERS, 1)
    n = cfg.customers
    range_start_ms = _epoch_day(cfg.start) * _MS_PER_DAY
    range_end_ms = range_start_ms + cfg.days * _MS_PER_DAY
    plan_of = [r["plan"] for r in pop.records]

    # A customer starting mid-range reports its seats from its local midnight of that day.
    first_ms = np.full(n, range_start_ms, dtype=np.int64)
    for i in np.nonzero(pop.start_day * _MS_PER_DAY > range_start_ms)[0]:
        local_midnight = datetime.combine(
            _from_epoch_day(int(pop.start_day[i])),
            datetime.min.time(),
            ZoneInfo(pop.timezones[pop.tz_index[i]]),
        )
        first_ms[i] = max(range_start_ms, _to_ms(local_midnight))

    cust_parts, type_parts = [], []
    for ti, seat_type in enumerate(catalog.seat_types):
        has = np.array([seat_type in catalog.plan_seat_types[p] for p in plan_of], dtype=bool)
        cust_parts.append(np.nonzero(has)[0])
        type_parts.append(np.full(int(has.sum()), ti, dtype=np.int64))
    cust = np.concatenate(cust_parts).astype(np.int64)
    stype = np.concatenate(type_parts)
    order = np.lexsort((stype, cust))
    cust, stype = cust[order], stype[order]

    mu = np.array([_SEAT_LOG_MEDIAN[plan_of[c]] for c in cust]) if len(cust) else np.zeros(0)
    count = np.clip(np.rint(np.exp(rng.normal(mu, 0.9))), 1, _SEAT_MAX).astype(np.int64)
    initial = _Rows(
        cust=cust,
        meter=np.full(len(cust), METERS.index(SEATS), dtype=np.int64),
        ts=first_ms[cust],
        value=count,
        prop=prop_base + stype,
        eid=np.zeros(len(cust), dtype=np.int64),
    )

    # ~15% of customers add or remove seats of one seat type once during the range.
    changers = np.nonzero(rng.random(n) < _SEAT_CHANGE_SHARE)[0]
    row_start = np.searchsorted(cust, changers, side="left")
    row_count = np.searchsorted(cust, changers, side="right") - row_start
    changers, row_start, row_count = (
        changers[row_count > 0],
        row_start[row_count > 0],
        row_count[row_count > 0],
    )
    rows = row_start + (rng.random(len(changers)) * row_count).astype(np.int64)
    span = range_end_ms - first_ms[changers] - 1
    at = first_ms[changers] + 1 + (rng.random(len(changers)) * span).astype(np.int64)
    delta = rng.choice(np.array([-3, -2, -1, 1, 2, 3, 4, 5]), size=len(changers))
    old = count[rows]
    new = np.clip(old + delta, 1, _SEAT_MAX)
    new = np.where(new == old, np.where(old > 1, old - 1, old + 1), new)
    changes = _Rows(
        cust=changers.astype(np.int64),
        meter=np.full(len(changers), METERS.index(SEATS), dtype=np.int64),
        ts=at,
        value=new.astype(np.int64),
        prop=initial.prop[rows],
        eid=np.zeros(len(changers), dtype=np.int64),
    )
    seats = _Rows.concat([initial, changes])
    return seats.take(np.argsort(seats.ts, kind="stable"))


# --------------------------------------------------------------------------------------------
# Generator


@dataclass
class _DayPlan:
    fin: int
    seats: _Rows
    offset: int = 0  # global index of the day's first valid event

    @property
    def total(self) -> int:
        return self.fin + len(self.seats)


@dataclass
class _Selection:
    """Which valid events (by day-local position) get which treatment."""

    late: IntArray
    dup: IntArray
    dup_next: npt.NDArray[np.bool_]
    conflict: IntArray
    conflict_next: npt.NDArray[np.bool_]
    late_dup: IntArray


@dataclass
class _Malformed:
    """Malformed rows of one day file: parquet column values and JSONL lines."""

    reasons: list[str]
    columns: dict[str, pa.Array]
    lines: pa.Array

    def __len__(self) -> int:
        return len(self.reasons)


class _Generator:
    def __init__(self, cfg: GeneratorConfig, progress: ProgressFn | None) -> None:
        self.cfg = cfg
        self.progress = progress
        self.catalog = _load_catalog(cfg.catalog_path)
        self.pop = _make_population(cfg, self.catalog)
        self.n_customers = cfg.customers
        self.range_start_ms = _epoch_day(cfg.start) * _MS_PER_DAY
        self.range_end_ms = self.range_start_ms + cfg.days * _MS_PER_DAY
        self.ext = "parquet" if cfg.format == "parquet" else "jsonl"

        channels = self.catalog.channels
        self.prop_strings = [_json({"channel": c}) for c in channels] + [
            _json({"seat_type": t}) for t in self.catalog.seat_types
        ]
        self.seat_prop_base = len(channels)
        weights = np.array([_CHANNEL_WEIGHT.get(c, 0.05) for c in channels])
        self.channel_cdf = np.cumsum(weights / weights.sum())
        self.channel_cdf[-1] = 1.0

        self.a_customer_ids = pa.array(self.pop.ids, pa.string())
        self.a_meters = pa.array(METERS, pa.string())
        self.a_props = pa.array(self.prop_strings, pa.string())
        self.eid_prefix = f"evt_{cfg.seed}_"
        self.rows_done = 0
        self.rows_total = 0
        self.scale = 1.0

    # ---- planning ---------------------------------------------------------------------------

    def _intensity(self, day: int) -> npt.NDArray[np.float64]:
        """Expected resolutions per (customer, UTC hour) of day `day`, before scaling."""
        day_start = self.range_start_ms + day * _MS_PER_DAY
        hours_ms = day_start + np.arange(24, dtype=np.int64) * _MS_PER_HOUR
        n_tz = len(self.pop.timezones)
        offset_min = np.zeros((n_tz, 24), dtype=np.int64)
        for z, name in enumerate(self.pop.timezones):
            zone = ZoneInfo(name)
            for h in range(24):
                instant = datetime.fromtimestamp(int(hours_ms[h]) // 1000, UTC)
                off = instant.astimezone(zone).utcoffset() or timedelta(0)
                offset_min[z, h] = int(off.total_seconds()) // 60
        local_min = hours_ms[None, :] // 60_000 + offset_min
        local_hour = (local_min // 60) % 24
        local_day = local_min // 1440
        weekday = (local_day + 3) % 7  # 1970-01-01 was a Thursday
        tz_weight = _HOUR_WEIGHT[local_hour] * _WEEKDAY_WEIGHT[weekday]  # (tz, hour)
        tz = self.pop.tz_index
        active = local_day[tz] >= self.pop.start_day[:, None]
        return self.pop.rate[:, None] * tz_weight[tz] * active

    def _counts(self, day: int) -> npt.NDArray[np.int64]:
        lam = self._intensity(day) * self.scale
        return _rng(self.cfg.seed, _S_COUNTS, day).poisson(lam).astype(np.int64)

    def _plan(self) -> list[_DayPlan]:
        cfg = self.cfg
        if cfg.events_per_day is not None:
            expected = sum(float(self._intensity(d).sum()) for d in range(cfg.days))
            if expected > 0:
                self.scale = cfg.events_per_day * cfg.days / expected
        seats = _plan_seats(cfg, self.catalog, self.pop, self.seat_prop_base)
        day_of_seat = (seats.ts - self.range_start_ms) // _MS_PER_DAY
        plans = []
        offset = 0
        for d in range(cfg.days):
            plan = _DayPlan(int(self._counts(d).sum()), seats.take(day_of_seat == d), offset)
            offset += plan.total
            plans.append(plan)
        return plans

    def _select(self, plans: list[_DayPlan]) -> tuple[list[_Selection], int]:
        """Pick the late, duplicated and conflicting events; return them per day."""
        cfg = self.cfg
        total = sum(p.total for p in plans)
        n_late = round(cfg.late * total)
        n_late_dup = max(1, round(_LATE_DUPLICATE_SHARE * n_late)) if n_late else 0
        n_dup = max(1, round(cfg.duplicates * total)) if cfg.duplicates > 0 else 0
        n_conflict = max(1, round(n_dup / 10)) if n_dup else 0
        needed = n_late + n_late_dup + n_dup + n_conflict
        if needed > total:
            raise ValueError(
                f"late and duplicates need {needed} distinct events but only {total} exist: "
                "lower the fractions or generate more events"
            )
        rng = _rng(cfg.seed, _S_MESS)
        chosen = rng.choice(total, size=needed, replace=False) if needed else np.zeros(0, int)
        cuts = np.cumsum([n_late, n_dup, n_conflict])
        late_g, dup_g, conflict_g, late_dup_g = np.split(chosen.astype(np.int64), cuts)
        dup_next_g = rng.random(len(dup_g)) < _NEXT_DAY_COPY_SHARE
        conflict_next_g = rng.random(len(conflict_g)) < _NEXT_DAY_COPY_SHARE

        offsets = np.array([p.offset for p in plans], dtype=np.int64)

        def per_day(g: IntArray, flags: npt.NDArray[np.bool_] | None = None) -> list[Any]:
            day = np.searchsorted(offsets, g, side="right") - 1
            out = []
            for d in range(len(plans)):
                mask = day == d
                pos = g[mask] - offsets[d]
                order = np.argsort(pos)
                if flags is None:
                    out.append(pos[order])
                else:
                    # The last day has no next file: its copies go later in the same file.
                    nxt = flags[mask][order] & (d + 1 < len(plans))
                    out.append((pos[order], nxt))
            return out

        late = per_day(late_g)
        dup = per_day(dup_g, dup_next_g)
        conflict = per_day(conflict_g, conflict_next_g)
        late_dup = per_day(late_dup_g)
        selections = [
            _Selection(late[d], dup[d][0], dup[d][1], conflict[d][0], conflict[d][1], late_dup[d])
            for d in range(len(plans))
        ]
        return selections, total

    # ---- per-day events -----------------------------------------------------------------------

    def _day_events(self, day: int, plan: _DayPlan) -> _Rows:
        """The day's valid events, in timestamp order, with their global sequence numbers."""
        counts = self._counts(day)
        n_customers = counts.shape[0]
        cell = np.repeat(np.arange(n_customers * 24, dtype=np.int64), counts.ravel())
        rng = _rng(self.cfg.seed, _S_DETAILS, day)
        n = len(cell)
        day_start = self.range_start_ms + day * _MS_PER_DAY
        ts = day_start + (cell % 24) * _MS_PER_HOUR + rng.integers(0, _MS_PER_HOUR, n)
        channel = np.searchsorted(self.channel_cdf, rng.random(n), side="right")
        fin = _Rows(
            cust=cell // 24,
            meter=np.zeros(n, dtype=np.int64),
            ts=ts,
            value=np.ones(n, dtype=np.int64),
            prop=np.minimum(channel, len(self.channel_cdf) - 1).astype(np.int64),
            eid=np.zeros(n, dtype=np.int64),
        )
        rows = _Rows.concat([plan.seats, fin])
        rows = rows.take(np.argsort(rows.ts, kind="stable"))
        rows.eid = plan.offset + 1 + np.arange(len(rows), dtype=np.int64)
        return rows

    def _conflicting(self, rows: _Rows, rng: np.random.Generator) -> _Rows:
        """Same ids, different content: another channel for resolutions, another seat count."""
        out = rows.copy()
        is_fin = out.meter == METERS.index(FIN)
        n_channels = self.seat_prop_base
        shift = rng.integers(1, max(n_channels, 2), len(out))
        out.prop = np.where(is_fin, (out.prop + shift) % n_channels, out.prop)
        out.value = np.where(is_fin, out.value, out.value + 1)
        return out

    # ---- malformed rows -----------------------------------------------------------------------

    def _plan_malformed(self, total_valid: int) -> list[list[dict[str, Any]]]:
        """Malformed rows per day: as many of each reason (spread evenly), one defect each."""
        cfg = self.cfg
        per_day: list[list[dict[str, Any]]] = [[] for _ in range(cfg.days)]
        if cfg.malformed <= 0:
            return per_day
        n = max(len(MALFORMED_REASONS), round(cfg.malformed * total_valid))
        rng = _rng(cfg.seed, _S_MALFORMED)
        reasons = np.arange(n) % len(MALFORMED_REASONS)
        day = rng.integers(0, cfg.days, n)
        cust = rng.integers(0, self.n_customers, n)
        ms_in_day = rng.integers(0, _MS_PER_DAY, n)
        channel = rng.integers(0, self.seat_prop_base, n)
        variant_of = np.zeros(len(MALFORMED_REASONS), dtype=np.int64)
        for k in range(n):
            reason = MALFORMED_REASONS[reasons[k]]
            variant = int(variant_of[reasons[k]])
            variant_of[reasons[k]] += 1
            ts_ms = self.range_start_ms + int(day[k]) * _MS_PER_DAY + int(ms_in_day[k])
            row = self._malformed_row(
                reason, variant, k + 1, self.pop.ids[cust[k]], ts_ms, int(channel[k])
            )
            per_day[int(day[k])].append(row)
        return per_day

    def _malformed_row(
        self, reason: str, variant: int, k: int, customer_id: str, ts_ms: int, channel: int
    ) -> dict[str, Any]:
        """A valid resolution event with exactly one defect named by `reason`.

        Values are strings, None for a missing field; `properties` holds the raw JSON value
        (written as a JSON string in Parquet, as JSON in JSONL).
        """
        seed = self.cfg.seed
        row: dict[str, Any] = {
            "event_id": f"evt_{seed}_bad_{k}",
            "customer_id": customer_id,
            "meter": FIN,
            "timestamp": _format_ms(ts_ms),
            "value": "1",
            "properties": {"channel": self.catalog.channels[channel]},
            "_reason": reason,
        }
        if reason == "missing_field":
            field_name, empty = [
                ("customer_id", None),
                ("meter", ""),
                ("event_id", None),
                ("customer_id", ""),
                ("meter", None),
            ][variant % 5]
            row[field_name] = empty
        elif reason == "bad_timestamp":
            plain = _format_ms(ts_ms)[:19]
            row["timestamp"] = ["yesterday", plain, plain[:5] + "02-30" + plain[10:] + ".000Z"][
                variant % 3
            ]
        elif reason == "timestamp_too_old":
            row["timestamp"] = _format_ms(
                self.range_start_ms
                - OUT_OF_WINDOW_DAYS * _MS_PER_DAY
                + (ts_ms - self.range_start_ms) % _MS_PER_DAY
            )
        elif reason == "timestamp_in_future":
            row["timestamp"] = _format_ms(
                self.range_end_ms
                + OUT_OF_WINDOW_DAYS * _MS_PER_DAY
                + (ts_ms - self.range_start_ms) % _MS_PER_DAY
            )
        elif reason == "unknown_meter":
            row["meter"] = "fin_resolutoin"
        elif reason == "negative_value":
            row["value"] = "-1"
        elif reason == "non_numeric_value":
            if variant % 2:
                row["meter"] = SEATS
                row["properties"] = {"seat_type": self.catalog.seat_types[0]}
            row["value"] = "abc"
        elif reason == "bad_properties":
            row["properties"] = [
                [self.catalog.channels[channel]],
                {"colour": "red"},
                {"channel": "fax"},
            ][variant % 3]
        elif reason == "bad_event_id":
            base = f"evt_{seed}_bad_{k}"
            row["event_id"] = (
                base + "_" + "x" * (199 - len(base)) if variant % 2 == 0 else (base + "\x07")
            )
        return row

    def _malformed_arrays(self, rows: list[dict[str, Any]]) -> _Malformed:
        columns: dict[str, pa.Array] = {}
        for name in EVENT_COLUMNS:
            values = [r[name] for r in rows]
            if name == "properties":
                values = [_json(v) for v in values]
            columns[name] = pa.array(values, pa.string())
        lines = []
        for r in rows:
            obj = {k: r[k] for k in EVENT_COLUMNS if r[k] is not None}
            lines.append(json.dumps(obj, separators=(",", ":")) + "\n")
        return _Malformed([r["_reason"] for r in rows], columns, pa.array(lines, pa.string()))

    # ---- formatting and writing ---------------------------------------------------------------

    def _columns(self, rows: _Rows) -> dict[str, pa.Array]:
        return {
            "event_id": pc.binary_join_element_wise(
                self.eid_prefix, pc.cast(pa.array(rows.eid), pa.string()), ""
            ),
            "customer_id": self.a_customer_ids.take(pa.array(rows.cust)),
            "meter": self.a_meters.take(pa.array(rows.meter)),
            "timestamp": _format_ts_array(rows.ts),
            "value": _int_strings(rows.value),
            "properties": self.a_props.take(pa.array(rows.prop)),
        }

    def _lines(self, rows: _Rows) -> pa.Array:
        c = self._columns(rows)
        return pc.binary_join_element_wise(
            '{"event_id":"', c["event_id"],
            '","customer_id":"', c["customer_id"],
            '","meter":"', c["meter"],
            '","timestamp":"', c["timestamp"],
            '","value":"', c["value"],
            '","properties":', c["properties"],
            "}\n",
            "",
        )  # fmt: skip

    def _write(
        self, path: Path, rows: _Rows, malformed: _Malformed | None, order: IntArray
    ) -> None:
        """Write rows in `order`: indices below len(rows) are valid rows, the rest malformed."""
        n_valid = len(rows)
        label = str(path.relative_to(self.cfg.out))
        sink: Any
        if self.cfg.format == "parquet":
            sink = pq.ParquetWriter(str(path), EVENT_SCHEMA)
        else:
            sink = path.open("wb")
        try:
            for lo in range(0, max(len(order), 1), _CHUNK_ROWS):
                idx = order[lo : lo + _CHUNK_ROWS]
                is_valid = idx < n_valid
                part = rows.take(idx[is_valid])
                bad = idx[~is_valid] - n_valid
                if self.cfg.format == "parquet":
                    cols = self._columns(part)
                    if len(bad) and malformed is not None:
                        cols = {
                            name: _merge(cols[name], malformed.columns[name].take(bad), is_valid)
                            for name in EVENT_COLUMNS
                        }
                    sink.write_table(pa.table(cols, schema=EVENT_SCHEMA))
                else:
                    lines = self._lines(part)
                    if len(bad) and malformed is not None:
                        lines = _merge(lines, malformed.lines.take(bad), is_valid)
                    sink.write(_string_data(lines))
                self.rows_done += len(idx)
                if self.progress:
                    self.progress(self.rows_done, self.rows_total, label)
        finally:
            sink.close()

    # ---- run -----------------------------------------------------------------------------------

    def _prepare_out(self) -> None:
        out = self.cfg.out
        ours = [out / "manifest.json", out / "customers.jsonl", out / "truth.parquet"]
        ours += sorted((out / "events").glob("*.parquet")) + sorted(
            (out / "events").glob("*.jsonl")
        )
        ours += sorted((out / "late").glob("events-late.*"))
        existing = [p for p in ours if p.exists()]
        if existing and not self.cfg.overwrite:
            raise FileExistsError(
                f"{out} already holds generated data ({existing[0].name}, ...): "
                "choose another folder or pass overwrite"
            )
        for p in existing:
            p.unlink()
        (out / "events").mkdir(parents=True, exist_ok=True)

    def run(self) -> Manifest:
        cfg = self.cfg
        self._prepare_out()
        plans = self._plan()
        selections, total_valid = self._select(plans)
        malformed_rows = self._plan_malformed(total_valid)
        n_malformed = sum(len(m) for m in malformed_rows)
        self.rows_total = (
            total_valid
            + sum(len(s.dup) + len(s.conflict) + len(s.late_dup) for s in selections)
            + n_malformed
        )

        with (cfg.out / "customers.jsonl").open("w", encoding="utf-8") as fh:
            for record in self.pop.records:
                fh.write(json.dumps(record, separators=(",", ":")) + "\n")

        n_c = self.n_customers
        truth_events = np.zeros((2, len(METERS), n_c), dtype=np.int64)  # daily, late
        truth_values = np.zeros((2, len(METERS), n_c), dtype=np.int64)
        files: list[str] = []
        file_stats: dict[str, FileCounts] = {}
        daily = FileCounts()
        late_parts: list[_Rows] = []
        late_dup_parts: list[_Rows] = []
        carry = _Rows.empty()
        carry_conflicts = 0

        for d, (plan, sel) in enumerate(zip(plans, selections, strict=True)):
            rows = self._day_events(d, plan)
            rng = _rng(cfg.seed, _S_PLACEMENT, d)
            n_base = len(rows)
            kept = np.ones(n_base, dtype=bool)
            kept[sel.late] = False
            late_parts.append(rows.take(sel.late))
            late_dup_parts.append(rows.take(sel.late_dup))

            dup_same = sel.dup[~sel.dup_next]
            conf_same = sel.conflict[~sel.conflict_next]
            conf_rows = self._conflicting(rows.take(sel.conflict), rng)
            same_conf_rows = conf_rows.take(~sel.conflict_next)
            parts = [
                rows.take(kept),
                rows.take(dup_same),
                same_conf_rows,
                carry,
            ]
            slots = [
                np.nonzero(kept)[0],
                rng.integers(dup_same, n_base) if len(dup_same) else np.zeros(0, np.int64),
                rng.integers(conf_same, n_base) if len(conf_same) else np.zeros(0, np.int64),
                rng.integers(-1, n_base, len(carry)),
            ]
            valid_rows = _Rows.concat(parts)
            mal = self._malformed_arrays(malformed_rows[d]) if malformed_rows[d] else None
            n_mal = len(mal) if mal else 0
            slots.append(rng.integers(-1, n_base, n_mal))
            after = [np.zeros(len(parts[0]), np.int64)] + [
                np.ones(len(s), np.int64) for s in slots[1:]
            ]
            slot = np.concatenate(slots).astype(np.int64)
            tie = np.concatenate(after)
            order = np.lexsort((np.arange(len(slot)), tie, slot)).astype(np.int64)

            stats = FileCounts(
                rows=len(slot),
                valid_events=int(kept.sum()),
                exact_duplicates=len(dup_same) + len(carry) - carry_conflicts,
                conflicting_duplicates=len(conf_same) + carry_conflicts,
            )
            if mal:
                for reason in mal.reasons:
                    stats.malformed[reason] += 1
            stats.totals_by_meter = self._tally(parts[0], truth_events[0], truth_values[0])

            rel = f"events/{_from_epoch_day(_epoch_day(cfg.start) + d).isoformat()}.{self.ext}"
            self._write(cfg.out / rel, valid_rows, mal, order)
            files.append(rel)
            file_stats[rel] = stats
            daily.add(stats)

            nxt_dup = sel.dup[sel.dup_next]
            carry = _Rows.concat([rows.take(nxt_dup), conf_rows.take(sel.conflict_next)])
            carry_conflicts = int(sel.conflict_next.sum())
            del rows, valid_rows, parts

        late = FileCounts()
        late_files: list[str] = []
        moved = _Rows.concat(late_parts)
        resent = _Rows.concat(late_dup_parts)
        if len(moved) or len(resent):
            (cfg.out / "late").mkdir(exist_ok=True)
            rel = f"late/events-late.{self.ext}"
            all_late = _Rows.concat([moved, resent])
            is_copy = np.r_[np.zeros(len(moved), np.int64), np.ones(len(resent), np.int64)]
            order = np.lexsort((all_late.eid, is_copy, all_late.ts)).astype(np.int64)
            self._write(cfg.out / rel, all_late, None, order)
            late_files.append(rel)
            late.rows = len(all_late)
            late.valid_events = len(moved)
            late.exact_duplicates = len(resent)
            late.totals_by_meter = self._tally(moved, truth_events[1], truth_values[1])

        self._write_truth(truth_events, truth_values)
        manifest = Manifest(
            seed=cfg.seed,
            customers=cfg.customers,
            start=cfg.start,
            days=cfg.days,
            format=cfg.format,
            options={
                "duplicates": cfg.duplicates,
                "late": cfg.late,
                "malformed": cfg.malformed,
                "events_per_day": cfg.events_per_day,
            },
            files=files,
            late_files=late_files,
            daily=daily,
            late=late,
            file_stats=file_stats,
        )
        tmp = cfg.out / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(cfg.out / "manifest.json")
        return manifest

    def _tally(self, rows: _Rows, events: IntArray, values: IntArray) -> dict[str, MeterTotal]:
        """Totals by meter of valid events; adds their per-customer counts and value sums."""
        totals = {}
        for m, meter in enumerate(METERS):
            is_m = rows.meter == m
            cust, value = rows.cust[is_m], rows.value[is_m]
            events[m] += np.bincount(cust, minlength=self.n_customers)
            # Float weights are exact here: integer sums far below 2**53.
            values[m] += np.rint(
                np.bincount(cust, weights=value, minlength=self.n_customers)
            ).astype(np.int64)
            totals[meter] = MeterTotal(int(is_m.sum()), int(value.sum()))
        return totals

    def _write_truth(self, events: IntArray, values: IntArray) -> None:
        """Per (customer, meter): count and value sum of the valid daily and late events."""
        n_c = self.n_customers
        cust = np.repeat(np.arange(n_c), len(METERS))
        meter = np.tile(np.arange(len(METERS)), n_c)
        ev, vs = events[:, meter, cust], values[:, meter, cust]
        keep = (ev[0] > 0) | (ev[1] > 0)
        table = pa.table(
            {
                "customer_id": self.a_customer_ids.take(pa.array(cust[keep])),
                "meter": self.a_meters.take(pa.array(meter[keep])),
                "events": pa.array(ev[0][keep], pa.int64()),
                "value_sum": _int_strings(vs[0][keep]),
                "late_events": pa.array(ev[1][keep], pa.int64()),
                "late_value_sum": _int_strings(vs[1][keep]),
            }
        )
        pq.write_table(table, self.cfg.out / "truth.parquet")


# --------------------------------------------------------------------------------------------
# Helpers


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *keys])))


_EPOCH = date(1970, 1, 1)


def _epoch_day(d: date) -> int:
    return (d - _EPOCH).days


def _from_epoch_day(n: int) -> date:
    return _EPOCH + timedelta(days=n)


def _to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _format_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-10-01T13:04:05.123Z (any year)."""
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _fixed_width_strings(matrix: npt.NDArray[np.uint8]) -> pa.Array:
    """An Arrow string array whose i-th value is row i of an (n, width) byte matrix."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _format_ts_array(ts: IntArray) -> pa.Array:
    """Epoch milliseconds (1970..9999) -> 'YYYY-MM-DDTHH:MM:SS.mmmZ', vectorized."""
    n = len(ts)
    if n == 0:
        return pa.array([], pa.string())
    days, ms = np.divmod(ts, _MS_PER_DAY)
    first = int(days.min())
    dates = np.frombuffer(
        "".join(_from_epoch_day(d).isoformat() for d in range(first, int(days.max()) + 1)).encode(),
        dtype=np.uint8,
    ).reshape(-1, 10)
    out = np.empty((24, n), dtype=np.uint8)  # column-major fill, transposed once
    out[0:10] = dates[days - first].T
    out[10] = ord("T")
    out[13] = out[16] = ord(":")
    out[19] = ord(".")
    out[23] = ord("Z")
    ms32 = ms.astype(np.int32)
    for pos, divisor, modulo in (
        (11, 36_000_000, 10), (12, 3_600_000, 10),
        (14, 600_000, 6), (15, 60_000, 10),
        (17, 10_000, 6), (18, 1_000, 10),
        (20, 100, 10), (21, 10, 10), (22, 1, 10),
    ):  # fmt: skip
        out[pos] = (ms32 // divisor) % modulo + 48
    return _fixed_width_strings(out.T)


_SMALL_INTS = pa.array([str(i) for i in range(1024)], pa.string())


def _int_strings(values: IntArray) -> pa.Array:
    if len(values) and values.min() >= 0 and values.max() < len(_SMALL_INTS):
        return _SMALL_INTS.take(pa.array(values))
    return pc.cast(pa.array(values, pa.int64()), pa.string())


def _merge(valid: pa.Array, bad: pa.Array, is_valid: npt.NDArray[np.bool_]) -> pa.Array:
    """Interleave: position i takes the next valid value where is_valid[i], else the next bad."""
    positions = np.empty(len(is_valid), dtype=np.int64)
    n_valid = int(is_valid.sum())
    positions[is_valid] = np.arange(n_valid)
    positions[~is_valid] = n_valid + np.arange(len(is_valid) - n_valid)
    return pa.concat_arrays([valid, bad]).take(pa.array(positions))


def _string_data(lines: pa.Array) -> memoryview:
    """The bytes of a string array's values, back to back."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if len(lines) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset :]
    data = lines.buffers()[2]
    return memoryview(data)[int(offsets[0]) : int(offsets[len(lines)])]
