"""Valid usage events: seat readings (a gauge per customer and seat type) and AI-agent
resolutions, whose per (customer, UTC hour) counts are Poisson draws from an intensity
(customer rate x weekday rhythm x daytime rhythm in the customer's timezone), expanded
with numpy as columns of codes (`Rows`), formatted into text only when written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from meterline.demo.synthetic.config import (
    METERS,
    MS_PER_DAY,
    MS_PER_HOUR,
    S_COUNTS,
    S_CUSTOMERS,
    S_DETAILS,
    SEATS,
    GeneratorConfig,
    IntArray,
    from_epoch_day,
    stream,
)
from meterline.demo.synthetic.customers import CatalogShape, Population

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


@dataclass
class Rows:
    """Valid events as columns of codes (formatted into strings only when written)."""

    cust: IntArray
    meter: IntArray  # index into METERS
    ts: IntArray  # epoch milliseconds
    value: IntArray
    prop: IntArray  # index into the generator's property strings
    eid: IntArray  # the n of evt_<seed>_<n>

    def __len__(self) -> int:
        return len(self.ts)

    def copy(self) -> Rows:
        return Rows(*(getattr(self, f).copy() for f in _ROW_FIELDS))

    def take(self, idx: npt.ArrayLike) -> Rows:
        return Rows(*(getattr(self, f)[idx] for f in _ROW_FIELDS))

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        if not parts:
            return Rows.empty()
        return Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in _ROW_FIELDS))

    @staticmethod
    def empty() -> Rows:
        return Rows(*(np.zeros(0, dtype=np.int64) for _ in _ROW_FIELDS))


_ROW_FIELDS = ("cust", "meter", "ts", "value", "prop", "eid")


def plan_seats(
    cfg: GeneratorConfig, catalog: CatalogShape, pop: Population, prop_base: int
) -> Rows:
    """One gauge reading per (customer, seat type) at the start, and some mid-range changes."""
    rng = stream(cfg.seed, S_CUSTOMERS, 1)
    n = cfg.customers
    range_start_ms, range_end_ms = cfg.range_start_ms, cfg.range_end_ms
    plan_of = [r["plan"] for r in pop.records]

    # A customer starting mid-range reports its seats from its local midnight of that day.
    first_ms = np.full(n, range_start_ms, dtype=np.int64)
    for i in np.nonzero(pop.start_day * MS_PER_DAY > range_start_ms)[0]:
        local_midnight = datetime.combine(
            from_epoch_day(int(pop.start_day[i])),
            datetime.min.time(),
            ZoneInfo(pop.timezones[pop.tz_index[i]]),
        )
        first_ms[i] = max(range_start_ms, int(local_midnight.timestamp() * 1000))

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
    initial = Rows(
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
    changes = Rows(
        cust=changers.astype(np.int64),
        meter=np.full(len(changers), METERS.index(SEATS), dtype=np.int64),
        ts=at,
        value=new.astype(np.int64),
        prop=initial.prop[rows],
        eid=np.zeros(len(changers), dtype=np.int64),
    )
    seats = Rows.concat([initial, changes])
    return seats.take(np.argsort(seats.ts, kind="stable"))


@dataclass
class DayPlan:
    fin: int
    seats: Rows
    offset: int = 0  # global index of the day's first valid event

    @property
    def total(self) -> int:
        return self.fin + len(self.seats)


class EventModel:
    """The valid events of a generation, day by day (each day from its own streams, so
    days can be made one at a time in bounded memory). Property codes: the channels of a
    resolution first, then the seat types from `seat_prop_base`."""

    def __init__(self, cfg: GeneratorConfig, catalog: CatalogShape, pop: Population) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.pop = pop
        channels = catalog.channels
        self.seat_prop_base = len(channels)
        weights = np.array([_CHANNEL_WEIGHT.get(c, 0.05) for c in channels])
        self.channel_cdf = np.cumsum(weights / weights.sum())
        self.channel_cdf[-1] = 1.0
        self.scale = 1.0

    def property_values(self) -> list[dict[str, str]]:
        """The properties of each property code."""
        return [{"channel": c} for c in self.catalog.channels] + [
            {"seat_type": t} for t in self.catalog.seat_types
        ]

    def intensity(self, day: int) -> npt.NDArray[np.float64]:
        """Expected resolutions per (customer, UTC hour) of day `day`, before scaling."""
        day_start = self.cfg.range_start_ms + day * MS_PER_DAY
        hours_ms = day_start + np.arange(24, dtype=np.int64) * MS_PER_HOUR
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

    def counts(self, day: int) -> npt.NDArray[np.int64]:
        """Resolutions per (customer, UTC hour) of day `day`: Poisson draws, scaled."""
        lam = self.intensity(day) * self.scale
        return stream(self.cfg.seed, S_COUNTS, day).poisson(lam).astype(np.int64)

    def plan_days(self) -> list[DayPlan]:
        """Every day's event count and seat readings (and the scale of the volume)."""
        cfg = self.cfg
        if cfg.events_per_day is not None:
            expected = sum(float(self.intensity(d).sum()) for d in range(cfg.days))
            if expected > 0:
                self.scale = cfg.events_per_day * cfg.days / expected
        seats = plan_seats(cfg, self.catalog, self.pop, self.seat_prop_base)
        day_of_seat = (seats.ts - self.cfg.range_start_ms) // MS_PER_DAY
        plans = []
        offset = 0
        for d in range(cfg.days):
            plan = DayPlan(int(self.counts(d).sum()), seats.take(day_of_seat == d), offset)
            offset += plan.total
            plans.append(plan)
        return plans

    def day_events(self, day: int, plan: DayPlan) -> Rows:
        """The day's valid events, in timestamp order, with their global sequence numbers."""
        counts = self.counts(day)
        n_customers = counts.shape[0]
        cell = np.repeat(np.arange(n_customers * 24, dtype=np.int64), counts.ravel())
        rng = stream(self.cfg.seed, S_DETAILS, day)
        n = len(cell)
        day_start = self.cfg.range_start_ms + day * MS_PER_DAY
        ts = day_start + (cell % 24) * MS_PER_HOUR + rng.integers(0, MS_PER_HOUR, n)
        channel = np.searchsorted(self.channel_cdf, rng.random(n), side="right")
        fin = Rows(
            cust=cell // 24,
            meter=np.zeros(n, dtype=np.int64),
            ts=ts,
            value=np.ones(n, dtype=np.int64),
            prop=np.minimum(channel, len(self.channel_cdf) - 1).astype(np.int64),
            eid=np.zeros(n, dtype=np.int64),
        )
        rows = Rows.concat([plan.seats, fin])
        rows = rows.take(np.argsort(rows.ts, kind="stable"))
        rows.eid = plan.offset + 1 + np.arange(len(rows), dtype=np.int64)
        return rows

