"""A seeded world: a catalog, a few dozen subscriptions and a month of usage, with the
input faults drawn from the same seed.

Everything here is a pure function of (seed, shape): the same seed gives the same
world on any machine, so a failing seed replays exactly. Amounts are `Decimal` (from
strings, never floats); times are aware UTC datetimes.

A world is billed over one month M = [first, last] (local dates). Subscriptions start
on the month's first day (some later) and either end on the next month's first day or
run on; an open-ended subscription never has an anchor of 2 to 5, so that its next
period ends after the simulated closes (every due period is one the model bills).
Plan ids carry the seed (`s17_metered`): worlds played side by side share the catalog.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

#: Months a world may bill: DST changes in Europe and North America (October, March),
#: February's short month (anchors 29-31 clamp to the 28th), and September (Santiago's
#: clocks skip local midnight on 2026-09-06, so a period starts at 01:00 that day).
MONTHS = (date(2026, 9, 1), date(2026, 10, 1), date(2027, 2, 1), date(2027, 3, 1))

#: Zones with DST (both hemispheres), +14 and -11 (whole-hour offsets only: rollups are
#: hourly, so the customers loader refuses a zone like Australia/Lord_Howe).
TIMEZONES = (
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "America/Santiago",
    "Australia/Sydney",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Asia/Tokyo",
)

#: USD and EUR (2 decimals), JPY (0), KWD (3: Stripe refuses its amounts, so its
#: invoices are parked, never delivered: docs/stripe.md).
CURRENCIES = ("USD", "USD", "EUR", "JPY", "KWD")

#: A unit of list price in each currency (a price of 1 "unit" costs this much).
SCALE = {"USD": Decimal("1"), "EUR": Decimal("0.9"), "JPY": Decimal("150"), "KWD": Decimal("0.3")}

CHANNELS = ("chat", "email")

#: The input faults a world may draw (README "Reliability" lists them).
INPUT_FAULTS = (
    "exact_resend",  # an event sent again, byte for byte, in a later delivery
    "conflicting_resend",  # the same event id with another value, later: rejected
    "reordered",  # an event delivered in a later day's file (late, before the close)
    "identical_content",  # two events that differ only in their ids: both count
    "late_after_close",  # delivered after its period was finalized: an adjustment
    "malformed",  # rows that cannot be events: rejected with a reason
    "limits",  # values with 9 decimals, large values, period boundaries to the ms
)


@dataclass(frozen=True)
class Customer:
    customer_id: str
    plan: str
    currency: str
    timezone: str
    anchor: int
    start: date
    end: date | None
    #: (price id, percent off) or (price id, None) with amount_off in `amount_off`
    discount: tuple[str, Decimal | None, Decimal | None] | None = None

    def row(self) -> dict[str, object]:
        """A row of a customers file (docs/ledger.md)."""
        discounts = []
        if self.discount is not None:
            price, percent, amount = self.discount
            entry: dict[str, object] = {"price": price, "valid_from": "2026-01-01"}
            if percent is not None:
                entry["percent_off"] = str(percent)
            else:
                entry["amount_off"] = str(amount)
            discounts.append(entry)
        return {
            "customer_id": self.customer_id,
            "name": f"Simulated {self.customer_id}",
            "currency": self.currency,
            "timezone": self.timezone,
            "subscription_id": f"sub_{self.customer_id}",
            "plan": self.plan,
            "billing_anchor_day": self.anchor,
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end else None,
            "discounts": discounts,
        }


@dataclass(frozen=True)
class Event:
    event_id: str
    customer_id: str
    meter: str
    at: datetime
    value: Decimal | None = None
    channel: str | None = None

    def doc(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "meter": self.meter,
            "timestamp": self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if self.value is not None:
            doc["value"] = str(self.value)
        if self.channel is not None:
            doc["properties"] = {"channel": self.channel}
        return doc


@dataclass(frozen=True)
class Delivery:
    """One file as it arrives: its rows (JSON text, some malformed) and when."""

    name: str
    at: datetime
    rows: tuple[str, ...]
    #: what an ingest of it must count (received = accepted + duplicates + rejected)
    accepted: int
    duplicates: int
    rejected: int
    after_close: bool = False


@dataclass(frozen=True)
class Shape:
    """How big a world is and which faults it may draw: what shrinking reduces."""

    customers: int | None = None  # None: drawn from the seed, in `size`
    size: tuple[int, int] = (2, 6)  # customers per world (meterline simulate --customers)
    input_faults: tuple[str, ...] = INPUT_FAULTS
    pipeline_faults: tuple[str, ...] | None = None  # None: all (faults.PIPELINE_FAULTS)

    def label(self) -> str:
        parts = []
        if self.customers is not None:
            parts.append(f"--customers {self.customers}")
        if self.input_faults != INPUT_FAULTS:
            parts.append(f"--input-faults {','.join(self.input_faults) or 'none'}")
        if self.pipeline_faults is not None:
            parts.append(f"--pipeline-faults {','.join(self.pipeline_faults) or 'none'}")
        return " ".join(parts)


#: Seeds are played in batches of this many worlds side by side through one pipeline run
#: (one warehouse, one ledger, one Stripe): the pipeline's cost is per step, not per
#: customer, so a batch of 50 small worlds costs about what one world does. Seed s is in
#: batch s // BATCH, whose number draws the month and the pipeline faults.
BATCH = 50


def batch_of(seed: int) -> int:
    return seed // BATCH


@dataclass(frozen=True)
class World:
    seed: int
    shape: Shape
    month: date  # the first day of the billed month (the batch's)
    price_change: date  # local date a new version of `resolution` prices from
    customers: tuple[Customer, ...]
    #: the events as stored: the first copy of each id that arrives (the model's input)
    events: tuple[Event, ...]
    deliveries: tuple[Delivery, ...]
    faults: tuple[str, ...] = field(default=())

    @property
    def next_month(self) -> date:
        return next_month(self.month)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def local_midnight(day: date, tz: str) -> datetime:
    """The first instant of a local day, in UTC (where midnight is skipped, fold=0 lands
    on the first instant that exists: docs/ledger.md)."""
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def nightly_delivery(at: datetime) -> datetime:
    """An event's nightly delivery: 00:30 UTC the day after it happened."""
    return datetime(at.year, at.month, at.day, tzinfo=UTC) + timedelta(days=1, minutes=30)


def stream(seed: int, *names: object) -> random.Random:
    """The random stream of one part of a world. Each part (the size, each customer and
    its usage, each input fault, each event's faults) draws from its own stream, so a
    shrunk world (fewer customers, fewer faults) keeps every part it still has exactly
    as it was."""
    return random.Random(":".join(map(str, (seed, *names))))


def make_world(seed: int, shape: Shape | None = None) -> World:
    """The world of `seed` (shrunk to `shape`)."""
    shape = shape or Shape()
    month = MONTHS[batch_of(seed) % len(MONTHS)]
    price_change = month + timedelta(days=stream(seed, "prices").randint(10, 20))
    count = stream(seed, "size").randint(*shape.size)
    if shape.customers is not None:
        count = shape.customers  # the first customers are the same whatever the count
    customers = tuple(
        _customer(stream(seed, "customer", n), f"c{seed}_{n:02d}", month, f"s{seed}_")
        for n in range(count)
    )
    faults = tuple(
        f for f in INPUT_FAULTS if f in shape.input_faults and stream(seed, f).random() < 0.7
    )
    events = [
        e
        for n, c in enumerate(customers)
        for e in _usage(stream(seed, "usage", n), c, month, "limits" in faults)
    ]
    # The last nightly run (for the day after the month) ingests what was delivered by
    # its 01:00: a copy sent later would wait, unrolled-up, and hold its period back
    # from the close (rightly: close reports it); the worlds send nothing that late.
    last_nightly = datetime.combine(next_month(month) + timedelta(days=2), time(0, 30), UTC)
    stored, deliveries = _deliveries(seed, events, faults, last_nightly)
    return World(seed, shape, month, price_change, customers, tuple(stored), deliveries, faults)


def _customer(rng: random.Random, customer_id: str, month: date, plans: str) -> Customer:
    end = next_month(month) if rng.random() < 0.4 else None
    anchor = rng.choice([1, 1, 29, 30, 31, *range(1, 32)])
    if end is None and 2 <= anchor <= 5:
        anchor = 1  # its next period would end before the late close: not in the model
    start = month if rng.random() < 0.8 else month + timedelta(days=rng.randint(3, 12))
    plan = rng.choice(("metered", "metered", "committed", "volume"))
    discount: tuple[str, Decimal | None, Decimal | None] | None = None
    if rng.random() < 0.3:
        price = {"metered": "resolution", "committed": "platform", "volume": "resolution"}[plan]
        if rng.random() < 0.7:
            discount = (price, Decimal(rng.choice(("10", "25", "50", "12.5"))), None)
        else:
            discount = (price, None, Decimal(rng.choice(("5", "20"))))
    currency = rng.choice(CURRENCIES)
    if discount is not None and discount[2] is not None:
        # amount_off is in the subscription's currency, at most its decimals
        discount = (discount[0], None, discount[2] * {"JPY": 100}.get(currency, 1))
    return Customer(
        customer_id, plans + plan, currency, rng.choice(TIMEZONES), anchor, start, end, discount
    )


def _usage(rng: random.Random, c: Customer, month: date, limits: bool) -> list[Event]:
    """A month of one subscription's usage: resolutions, seat readings, tokens."""
    start = local_midnight(c.start, c.timezone)
    end = local_midnight(c.end or next_month(month), c.timezone)
    span_ms = int((end - start).total_seconds() * 1000)
    events: list[Event] = []

    def add(
        meter: str,
        offset_ms: int | None = None,
        value: Decimal | None = None,
        channel: str | None = None,
    ) -> None:
        """An event of the meter at `offset_ms` into the span (random when None)."""
        ms = rng.randrange(span_ms) if offset_ms is None else offset_ms
        at = start + timedelta(milliseconds=ms)
        events.append(
            Event(f"{c.customer_id}_e{len(events)}", c.customer_id, meter, at, value, channel)
        )

    for _ in range(rng.randint(0, 90)):
        add("resolution", channel=rng.choice(CHANNELS))
    # seats: a reading at the start, then a few changes (0 removes them all)
    add("seats", 0, Decimal(rng.randint(1, 6)))
    for _ in range(rng.randint(0, 3)):
        add("seats", value=Decimal(rng.randint(0, 9)))
    for _ in range(rng.randint(0, 8)):
        add("tokens", value=Decimal(rng.randint(0, 5_000_000)))
    if limits:
        # 9 decimals, a large value; the first and last ms of the span
        add("tokens", value=Decimal(rng.randint(1, 10**18)) / Decimal(10**9))
        add("tokens", value=Decimal("99999999999"))
        add("resolution", 0, channel="chat")
        add("resolution", span_ms - 1, channel="email")
        add("seats", span_ms - 1, Decimal(0))
    return events


_TS = "2026-10-02T00:00:00Z"
#: Rows that are not events ("{n}" becomes a unique number): each must be rejected
#: with a reason (broken JSON, no customer, unknown meter, a negative counter value, a
#: bad timestamp, a property value the meter does not allow, NaN).
MALFORMED = (
    "{not json",
    *(
        json.dumps({"event_id": "m_{n}", **fields})
        for fields in (
            {"meter": "resolution", "timestamp": _TS},
            {"customer_id": "x", "meter": "nope", "timestamp": _TS},
            {"customer_id": "x", "meter": "tokens", "value": "-1", "timestamp": _TS},
            {"customer_id": "x", "meter": "resolution", "timestamp": "yesterday"},
            {
                "customer_id": "x",
                "meter": "resolution",
                "timestamp": _TS,
                "properties": {"channel": "fax"},
            },
            {"customer_id": "x", "meter": "tokens", "value": "NaN", "timestamp": _TS},
        )
    ),
)


def _deliveries(
    seed: int, events: list[Event], faults: tuple[str, ...], last: datetime
) -> tuple[list[Event], tuple[Delivery, ...]]:
    """Cut the events into nightly files and apply the input faults. Returns the events
    that will be stored (one per id: the first copy to arrive) and the deliveries.
    Each event's faults come from its own stream, drawn whether or not the fault is
    allowed, so allowing fewer faults changes nothing else."""
    events = sorted(events, key=lambda e: (e.at, e.event_id))
    # (delivery time, after_close, row text, kind) per row
    rows: list[tuple[datetime, bool, str, str]] = []
    stored: list[Event] = []
    for e in events:
        rng = stream(seed, "event", e.event_id)
        draws = {f: rng.random() for f in INPUT_FAULTS}
        shift, again, conflict_after = rng.randint(1, 3), rng.randint(0, 2), rng.randint(1, 2)
        when, after_close = nightly_delivery(e.at), False
        if "reordered" in faults and draws["reordered"] < 0.05:
            when = min(when + timedelta(days=shift), last)  # late, before the close
        if "late_after_close" in faults and draws["late_after_close"] < 0.03:
            after_close = True
        if "identical_content" in faults and draws["identical_content"] < 0.02:
            twin = replace(e, event_id=e.event_id + "_twin")
            stored.append(twin)
            rows.append((when, after_close, json.dumps(twin.doc()), "accepted"))
        stored.append(e)
        rows.append((when, after_close, json.dumps(e.doc()), "accepted"))
        if "exact_resend" in faults and draws["exact_resend"] < 0.03:
            resent = min(when + timedelta(days=again), last)
            rows.append((resent, after_close, json.dumps(e.doc()), "duplicate"))
        if (
            "conflicting_resend" in faults
            and not after_close
            and draws["conflicting_resend"] < 0.02
        ):
            changed = dict(e.doc())
            changed["value"] = str((e.value or Decimal(1)) + 1)  # no value means 1
            resent = min(when + timedelta(days=conflict_after), last)
            rows.append((resent, after_close, json.dumps(changed), "rejected"))
    if "malformed" in faults:
        rng = stream(seed, "malformed")
        for n in range(rng.randint(1, 6)):
            when = (
                rows[rng.randrange(len(rows))][0]
                if rows
                else nightly_delivery(datetime(2026, 10, 1, tzinfo=UTC))
            )
            text = rng.choice(MALFORMED).replace("{n}", f"{seed}_{n}")
            rows.append((when, False, text, "rejected"))
    return stored, _files(stream(seed, "files"), rows)


def _files(rng: random.Random, rows: list[tuple[datetime, bool, str, str]]) -> tuple[Delivery, ...]:
    """One file per delivery time (rows shuffled within it); the after-close rows in
    one file of their own, whose time the player sets."""
    groups: dict[tuple[datetime, bool], list[tuple[str, str]]] = {}
    for when, after_close, text, kind in rows:
        key = (datetime.max.replace(tzinfo=UTC), True) if after_close else (when, False)
        groups.setdefault(key, []).append((text, kind))
    files = []
    for (when, after_close), group in sorted(groups.items()):
        rng.shuffle(group)
        # A conflicting copy must arrive after its original: in the same file it is
        # the file's own business which comes first, so keep the file order stable.
        group.sort(key=lambda r: r[1] == "rejected")
        name = "late.jsonl" if after_close else f"{when:%Y%m%dT%H%M}.jsonl"
        files.append(
            Delivery(
                name,
                when,
                tuple(t for t, _ in group),
                accepted=sum(k == "accepted" for _, k in group),
                duplicates=sum(k == "duplicate" for _, k in group),
                rejected=sum(k == "rejected" for _, k in group),
                after_close=after_close,
            )
        )
    return tuple(files)
