"""Writing a generation: event files (Parquet or JSON lines, every field as text so that
malformed values can be written), `truth.parquet`, and the text formatting they share,
vectorized into Arrow string buffers without per-event Python."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meterline.demo.synthetic.config import (
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    METERS,
    MS_PER_DAY,
    GeneratorConfig,
    IntArray,
    ProgressFn,
    from_epoch_day,
)
from meterline.demo.synthetic.events import Rows

if TYPE_CHECKING:
    from meterline.demo.synthetic.faults import Malformed

_CHUNK_ROWS = 1_000_000


class EventWriter:
    """Writes the event files and the truth file of one generation, and reports the rows
    written across all of them to `progress`."""

    def __init__(
        self,
        cfg: GeneratorConfig,
        customer_ids: list[str],
        property_texts: list[str],
        progress: ProgressFn | None,
    ) -> None:
        self.cfg = cfg
        self.progress = progress
        self.ext = "parquet" if cfg.format == "parquet" else "jsonl"
        self.a_customer_ids = pa.array(customer_ids, pa.string())
        self.a_meters = pa.array(METERS, pa.string())
        self.a_props = pa.array(property_texts, pa.string())
        self.eid_prefix = f"evt_{cfg.seed}_"
        self.rows_done = 0
        self.rows_total = 0

    def columns(self, rows: Rows) -> dict[str, pa.Array]:
        """The text columns of valid events."""
        return {
            "event_id": pc.binary_join_element_wise(
                self.eid_prefix, pc.cast(pa.array(rows.eid), pa.string()), ""
            ),
            "customer_id": self.a_customer_ids.take(pa.array(rows.cust)),
            "meter": self.a_meters.take(pa.array(rows.meter)),
            "timestamp": format_ts_array(rows.ts),
            "value": int_strings(rows.value),
            "properties": self.a_props.take(pa.array(rows.prop)),
        }

    def lines(self, rows: Rows) -> pa.Array:
        """Valid events as JSON lines (properties as a JSON object, the rest as text)."""
        c = self.columns(rows)
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

    def write(
        self, path: Path, rows: Rows, malformed: Malformed | None, order: IntArray
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
                    cols = self.columns(part)
                    if len(bad) and malformed is not None:
                        cols = {
                            name: merge(cols[name], malformed.columns[name].take(bad), is_valid)
                            for name in EVENT_COLUMNS
                        }
                    sink.write_table(pa.table(cols, schema=EVENT_SCHEMA))
                else:
                    lines = self.lines(part)
                    if len(bad) and malformed is not None:
                        lines = merge(lines, malformed.lines.take(bad), is_valid)
                    sink.write(string_data(lines))
                self.rows_done += len(idx)
                if self.progress:
                    self.progress(self.rows_done, self.rows_total, label)
        finally:
            sink.close()

    def write_truth(self, events: IntArray, values: IntArray) -> None:
        """Per (customer, meter): count and value sum of the valid daily and late events."""
        n_c = len(self.a_customer_ids)
        cust = np.repeat(np.arange(n_c), len(METERS))
        meter = np.tile(np.arange(len(METERS)), n_c)
        ev, vs = events[:, meter, cust], values[:, meter, cust]
        keep = (ev[0] > 0) | (ev[1] > 0)
        table = pa.table(
            {
                "customer_id": self.a_customer_ids.take(pa.array(cust[keep])),
                "meter": self.a_meters.take(pa.array(meter[keep])),
                "events": pa.array(ev[0][keep], pa.int64()),
                "value_sum": int_strings(vs[0][keep]),
                "late_events": pa.array(ev[1][keep], pa.int64()),
                "late_value_sum": int_strings(vs[1][keep]),
            }
        )
        pq.write_table(table, self.cfg.out / "truth.parquet")


def prepare_out(cfg: GeneratorConfig) -> None:
    """Make `cfg.out` ready: the generator's own files removed when `cfg.overwrite`,
    else FileExistsError when any is there (a folder is never mixed)."""
    out = cfg.out
    ours = [out / "manifest.json", out / "customers.jsonl", out / "truth.parquet"]
    ours += sorted((out / "events").glob("*.parquet")) + sorted(
        (out / "events").glob("*.jsonl")
    )
    ours += sorted((out / "late").glob("events-late.*"))
    existing = [p for p in ours if p.exists()]
    if existing and not cfg.overwrite:
        raise FileExistsError(
            f"{out} already holds generated data ({existing[0].name}, ...): "
            "choose another folder or pass overwrite"
        )
    for p in existing:
        p.unlink()
    (out / "events").mkdir(parents=True, exist_ok=True)


def compact_json(value: Any) -> str:
    """JSON without spaces, as the files hold it."""
    return json.dumps(value, separators=(",", ":"))


def format_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-10-01T13:04:05.123Z (any year)."""
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def fixed_width_strings(matrix: npt.NDArray[np.uint8]) -> pa.Array:
    """An Arrow string array whose i-th value is row i of an (n, width) byte matrix."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def format_ts_array(ts: IntArray) -> pa.Array:
    """Epoch milliseconds (1970..9999) -> 'YYYY-MM-DDTHH:MM:SS.mmmZ', vectorized."""
    n = len(ts)
    if n == 0:
        return pa.array([], pa.string())
    days, ms = np.divmod(ts, MS_PER_DAY)
    first = int(days.min())
    dates = np.frombuffer(
        "".join(from_epoch_day(d).isoformat() for d in range(first, int(days.max()) + 1)).encode(),
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
    return fixed_width_strings(out.T)


_SMALL_INTS = pa.array([str(i) for i in range(1024)], pa.string())


def int_strings(values: IntArray) -> pa.Array:
    if len(values) and values.min() >= 0 and values.max() < len(_SMALL_INTS):
        return _SMALL_INTS.take(pa.array(values))
    return pc.cast(pa.array(values, pa.int64()), pa.string())


def merge(valid: pa.Array, bad: pa.Array, is_valid: npt.NDArray[np.bool_]) -> pa.Array:
    """Interleave: position i takes the next valid value where is_valid[i], else the next bad."""
    positions = np.empty(len(is_valid), dtype=np.int64)
    n_valid = int(is_valid.sum())
    positions[is_valid] = np.arange(n_valid)
    positions[~is_valid] = n_valid + np.arange(len(is_valid) - n_valid)
    return pa.concat_arrays([valid, bad]).take(pa.array(positions))


def string_data(lines: pa.Array) -> memoryview:
    """The bytes of a string array's values, back to back."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if len(lines) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset :]
    data = lines.buffers()[2]
    return memoryview(data)[int(offsets[0]) : int(offsets[len(lines)])]
