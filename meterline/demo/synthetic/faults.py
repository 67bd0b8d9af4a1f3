"""The mess a real delivery has: exact re-sends (some in the next day's file),
re-sends of an id with other content (conflicting), events held back into a late file
(with some re-sent copies), and malformed rows with exactly one defect each, one of every
rejection reason in turn. Each is drawn from its own random stream, so the messiness
options never change which valid events exist."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from meterline.demo.synthetic.config import (
    EVENT_COLUMNS,
    FIN,
    MALFORMED_REASONS,
    METERS,
    MS_PER_DAY,
    OUT_OF_WINDOW_DAYS,
    S_MALFORMED,
    S_MESS,
    SEATS,
    GeneratorConfig,
    IntArray,
    stream,
)
from meterline.demo.synthetic.customers import CatalogShape
from meterline.demo.synthetic.events import DayPlan, Rows
from meterline.demo.synthetic.files import compact_json, format_ms

# Re-sent copies: share placed in the next day's file (the rest later in the same file).
_NEXT_DAY_COPY_SHARE = 0.5
# Late rows that are re-sent copies of events already in the daily files, per moved event.
_LATE_DUPLICATE_SHARE = 0.1


@dataclass
class Selection:
    """Which valid events (by day-local position) get which treatment."""

    late: IntArray
    dup: IntArray
    dup_next: npt.NDArray[np.bool_]
    conflict: IntArray
    conflict_next: npt.NDArray[np.bool_]
    late_dup: IntArray



def select(cfg: GeneratorConfig, plans: list[DayPlan]) -> tuple[list[Selection], int]:
    """Pick the late, duplicated and conflicting events among the valid ones (from the
    mess stream alone); return them per day, and the number of valid events. Raises
    ValueError when the fractions need more distinct events than exist."""
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
    rng = stream(cfg.seed, S_MESS)
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
        Selection(late[d], dup[d][0], dup[d][1], conflict[d][0], conflict[d][1], late_dup[d])
        for d in range(len(plans))
    ]
    return selections, total

# ---- per-day events -----------------------------------------------------------------------



def conflicting(rows: Rows, rng: np.random.Generator, n_channels: int) -> Rows:
    """Same ids, different content: another channel for resolutions, another seat count."""
    out = rows.copy()
    is_fin = out.meter == METERS.index(FIN)
    shift = rng.integers(1, max(n_channels, 2), len(out))
    out.prop = np.where(is_fin, (out.prop + shift) % n_channels, out.prop)
    out.value = np.where(is_fin, out.value, out.value + 1)
    return out



def plan_malformed(
    cfg: GeneratorConfig, catalog: CatalogShape, ids: list[str], total_valid: int
) -> list[list[dict[str, Any]]]:
    """Malformed rows per day: as many of each reason (spread evenly), one defect each."""
    per_day: list[list[dict[str, Any]]] = [[] for _ in range(cfg.days)]
    if cfg.malformed <= 0:
        return per_day
    n = max(len(MALFORMED_REASONS), round(cfg.malformed * total_valid))
    rng = stream(cfg.seed, S_MALFORMED)
    reasons = np.arange(n) % len(MALFORMED_REASONS)
    day = rng.integers(0, cfg.days, n)
    cust = rng.integers(0, len(ids), n)
    ms_in_day = rng.integers(0, MS_PER_DAY, n)
    channel = rng.integers(0, len(catalog.channels), n)
    variant_of = np.zeros(len(MALFORMED_REASONS), dtype=np.int64)
    for k in range(n):
        reason = MALFORMED_REASONS[reasons[k]]
        variant = int(variant_of[reasons[k]])
        variant_of[reasons[k]] += 1
        ts_ms = cfg.range_start_ms + int(day[k]) * MS_PER_DAY + int(ms_in_day[k])
        row = _malformed_row(
            cfg, catalog, reason, variant, k + 1, ids[cust[k]], ts_ms, int(channel[k])
        )
        per_day[int(day[k])].append(row)
    return per_day

def _malformed_row(
    cfg: GeneratorConfig,
    catalog: CatalogShape,
    reason: str,
    variant: int,
    k: int,
    customer_id: str,
    ts_ms: int,
    channel: int,
) -> dict[str, Any]:
    """A valid resolution event with exactly one defect named by `reason`.

    Values are strings, None for a missing field; `properties` holds the raw JSON value
    (written as a JSON string in Parquet, as JSON in JSONL).
    """
    seed = cfg.seed
    row: dict[str, Any] = {
        "event_id": f"evt_{seed}_bad_{k}",
        "customer_id": customer_id,
        "meter": FIN,
        "timestamp": format_ms(ts_ms),
        "value": "1",
        "properties": {"channel": catalog.channels[channel]},
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
        plain = format_ms(ts_ms)[:19]
        row["timestamp"] = ["yesterday", plain, plain[:5] + "02-30" + plain[10:] + ".000Z"][
            variant % 3
        ]
    elif reason == "timestamp_too_old":
        row["timestamp"] = format_ms(
            cfg.range_start_ms
            - OUT_OF_WINDOW_DAYS * MS_PER_DAY
            + (ts_ms - cfg.range_start_ms) % MS_PER_DAY
        )
    elif reason == "timestamp_in_future":
        row["timestamp"] = format_ms(
            cfg.range_end_ms
            + OUT_OF_WINDOW_DAYS * MS_PER_DAY
            + (ts_ms - cfg.range_start_ms) % MS_PER_DAY
        )
    elif reason == "unknown_meter":
        row["meter"] = "fin_resolutoin"
    elif reason == "negative_value":
        row["value"] = "-1"
    elif reason == "non_numeric_value":
        if variant % 2:
            row["meter"] = SEATS
            row["properties"] = {"seat_type": catalog.seat_types[0]}
        row["value"] = "abc"
    elif reason == "bad_properties":
        row["properties"] = [
            [catalog.channels[channel]],
            {"colour": "red"},
            {"channel": "fax"},
        ][variant % 3]
    elif reason == "bad_event_id":
        base = f"evt_{seed}_bad_{k}"
        row["event_id"] = (
            base + "_" + "x" * (199 - len(base)) if variant % 2 == 0 else (base + "\x07")
        )
    return row


@dataclass
class Malformed:
    """Malformed rows of one day file: parquet column values and JSONL lines."""

    reasons: list[str]
    columns: dict[str, pa.Array]
    lines: pa.Array

    def __len__(self) -> int:
        return len(self.reasons)


def malformed_arrays(rows: list[dict[str, Any]]) -> Malformed:
    """The rows of one day file as Parquet column values and JSONL lines."""
    columns: dict[str, pa.Array] = {}
    for name in EVENT_COLUMNS:
        values = [r[name] for r in rows]
        if name == "properties":
            values = [compact_json(v) for v in values]
        columns[name] = pa.array(values, pa.string())
    lines = []
    for r in rows:
        obj = {k: r[k] for k in EVENT_COLUMNS if r[k] is not None}
        lines.append(json.dumps(obj, separators=(",", ":")) + "\n")
    return Malformed([r["_reason"] for r in rows], columns, pa.array(lines, pa.string()))

# ---- formatting and writing ---------------------------------------------------------------
