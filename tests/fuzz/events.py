"""Usage files to fuzz ingest with: JSON lines, CSV and Parquet, mostly events that are
almost right (ids from a small pool, so that re-sends and conflicts happen; timestamps,
values and properties at and past every limit), written in every legal and illegal way,
with damaged lines among them.

Each generator takes a `Pick` (choices from hypothesis's draws, so that a failing file
shrinks, or from a seeded random generator, for the bounded fuzzer) and returns the file;
the expected verdict of each row comes from tests.fuzz.reference, which reads the file
itself, except for Parquet, whose typed values the generator gives the model directly.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from meters.catalog import Aggregation, MeterCatalog, MeterDefinition
from tests.fuzz.common import (
    BOM,
    NASTY_BYTES,
    NASTY_NUMBERS,
    NASTY_TEXTS,
    NASTY_TIMESTAMPS,
    nested_json,
)
from tests.fuzz.reference import FIELDS, Num, Pairs, Row

T = TypeVar("T")

AS_OF = datetime(2026, 11, 25, tzinfo=UTC)
WINDOW = (AS_OF - timedelta(days=45), AS_OF + timedelta(minutes=5))

#: Three meters: a counter with allowed property values, a counter with a free-text
#: property (so that any text can be stored), and a gauge (negative values allowed).
CATALOG = MeterCatalog(
    meters={
        "fin_resolution": MeterDefinition(
            name="fin_resolution",
            aggregation=Aggregation.COUNT,
            properties={"channel": ["chat", "email", "phone", "sms"]},
            dimensions=["channel"],
        ),
        "tokens": MeterDefinition(
            name="tokens",
            aggregation=Aggregation.SUM,
            properties={"model": None, "region": ["eu", "us"]},
        ),
        "seats": MeterDefinition(
            name="seats",
            aggregation=Aggregation.TIME_WEIGHTED,
            properties={"seat_type": ["essential", "advanced", "expert"]},
        ),
    }
)


class Pick:
    """Choices, from hypothesis (`st.data()`) or from a seeded random generator."""

    def __init__(
        self,
        draw: Callable[[st.SearchStrategy[Any]], Any] | None = None,
        rng: random.Random | None = None,
        ids: str = "",
    ) -> None:
        self._draw = draw
        self._rng = rng
        # Put before the event ids of the pool: a file of its own ids (an ingest into a
        # warehouse that earlier files filled would otherwise see mostly conflicts).
        self.ids = ids

    def choice(self, options: Sequence[T]) -> T:
        if self._draw is not None:
            return self._draw(st.sampled_from(options))
        assert self._rng is not None
        return self._rng.choice(options)

    def integer(self, low: int, high: int) -> int:
        if self._draw is not None:
            return self._draw(st.integers(low, high))
        assert self._rng is not None
        return self._rng.randint(low, high)

    def chance(self, p: float) -> bool:
        if self._draw is not None:
            return self._draw(st.integers(0, 99)) < p * 100
        assert self._rng is not None
        return self._rng.random() < p

    def text(self, max_size: int) -> str:
        """Any text, lone surrogates and unassigned code points aside (the engine's and
        Python's Unicode tables differ on which code points are assigned)."""
        if self._draw is not None:
            alphabet = st.characters(exclude_categories=("Cs", "Cn"))
            return self._draw(st.text(alphabet, max_size=max_size))
        assert self._rng is not None
        chars = 'abcXYZ019 _-.:/é€𝔘\t\u200b\u00a0\ufeff\u202e\x00\x7f"\\,{}[]'
        return "".join(self._rng.choice(chars) for _ in range(self._rng.randint(0, max_size)))


# --- one event's fields ----------------------------------------------------------------------

GOOD_TIMES = [
    "2026-11-20T10:00:00Z",
    "2026-11-20T10:00:00.000Z",
    "2026-11-20T11:00:00+01:00",
    "2026-11-20T05:00:00-05:00",
    "2026-11-20T10:00:00.1234567Z",
    "2026-11-24T23:59:59.999+00:00",
    "2026-10-11T00:00:00.000Z",
    "2026-11-25T00:05:00.000Z",
]


def event_id(pick: Pick) -> Any:
    return pick.choice(
        [
            lambda: pick.ids + pick.choice(["e1", "e2", "e3", "e4", "e5", "e6"]),
            lambda: pick.ids + pick.choice(["e1", "e2", "e3"]),
            lambda: Num(pick.choice(["7", "-0", "-7", "12345678901234567890", "1.5", "1e3"])),
            lambda: pick.choice(NASTY_TEXTS),
            lambda: pick.text(140),
            lambda: pick.choice([True, None, Pairs([("a", "b")]), []]),
        ]
    )()


def customer_id(pick: Pick) -> Any:
    return pick.choice(
        [
            lambda: pick.choice(["c1", "c2", "cus_00001"]),
            lambda: pick.choice(["c1", "c2"]),
            lambda: Num(pick.choice(["42", "007", "1.0"])),
            lambda: pick.choice(NASTY_TEXTS),
            lambda: pick.text(20),
        ]
    )()


def meter(pick: Pick) -> Any:
    return pick.choice(
        [
            "fin_resolution",
            "fin_resolution",
            "tokens",
            "tokens",
            "seats",
            "FIN_RESOLUTION",
            " tokens",
            "",
            Num("5"),
            None,
        ]
    )


def timestamp(pick: Pick) -> Any:
    if pick.chance(0.3):
        return pick.choice(NASTY_TIMESTAMPS)
    if pick.chance(0.3):
        # any millisecond of the window, and a little past both ends, in some offset
        start = WINDOW[0] - timedelta(milliseconds=2)
        span = int((WINDOW[1] - start) / timedelta(milliseconds=1)) + 4
        moment = start + timedelta(milliseconds=pick.integer(0, span))
        hours = pick.choice([0, 0, 1, -5, 14, -12, 23])
        local = moment + timedelta(hours=hours)
        zone = "Z" if hours == 0 else f"{'+' if hours > 0 else '-'}{abs(hours):02d}:00"
        digits = pick.choice(["", ".%f", ".%f000"])
        return local.strftime(f"%Y-%m-%dT%H:%M:%S{digits}") + zone
    return pick.choice(GOOD_TIMES)


def value(pick: Pick) -> Any:
    return pick.choice(
        [
            lambda: None,
            lambda: None,
            lambda: Num(pick.choice(["1", "2.5", "1.0", "1e0", "10E-1", "0", "-0", "3"])),
            lambda: Num(pick.choice(NASTY_NUMBERS)),
            lambda: pick.choice(NASTY_NUMBERS),
            lambda: pick.choice(["1", "1.000000000", " 1", "-2.5", "1e-9", "+4"]),
            lambda: pick.choice([True, Pairs([("v", Num("1"))]), [Num("1")]]),
        ]
    )()


def properties(pick: Pick, meter_name: Any) -> Any:
    return pick.choice(
        [
            lambda: None,
            lambda: Pairs(),
            lambda: Pairs([("channel", pick.choice(["chat", "email", "fax"]))]),
            lambda: Pairs([("model", pick.text(30))]),
            lambda: Pairs([("model", pick.choice(NASTY_TEXTS)), ("region", "eu")]),
            lambda: Pairs([("seat_type", "expert")]),
            lambda: Pairs([("channel", "chat"), ("channel", "sms")]),
            lambda: Pairs([("channel", Num("5"))]),
            lambda: Pairs([("model", Pairs([("deep", "x")]))]),
            lambda: json.dumps({"channel": "chat"}),
            lambda: pick.choice(['{"model": "x"}', "{}", "", "[]", "null", '{"a":', "x"]),
            lambda: Raw_nested(pick.integer(1, 8)),
            lambda: [Pairs([("channel", "chat")])],
        ]
    )()


class Raw_nested(str):
    """Properties nested `depth` deep, written as JSON text in the line."""

    def __new__(cls, levels: int) -> Raw_nested:
        return super().__new__(cls, nested_json(levels))


def source(pick: Pick) -> Any:
    return pick.choice([None, None, "crm", "é-source", Num("5"), Pairs([("a", "b")]), ""])


GOOD: dict[str, Callable[[Pick], Any]] = {
    "event_id": lambda p: (
        p.ids
        + (p.choice(["e1", "e2", "e3", "e4", "e5"]) if p.chance(0.4) else f"u{p.integer(0, 10**6)}")
    ),
    "customer_id": lambda p: p.choice(["c1", "c2", "cus_00001"]),
    "timestamp": lambda p: p.choice(GOOD_TIMES),
    "value": lambda p: p.choice([None, Num("1"), Num("2.5"), "3", Num("1e2"), Num("0.000000001")]),
    "source": lambda p: p.choice([None, "crm"]),
}
GOOD_PROPERTIES = {
    "fin_resolution": [None, Pairs([("channel", "chat")]), Pairs([("channel", "sms")])],
    "tokens": [None, Pairs([("model", "gpt")]), Pairs([("model", "x"), ("region", "eu")])],
    "seats": [None, Pairs([("seat_type", "expert")])],
}


def event(pick: Pick) -> dict[str, Any]:
    """An event: valid, with none to three of its fields given hostile values or left
    out."""
    name = pick.choice(sorted(GOOD_PROPERTIES))
    fields: dict[str, Any] = {
        "event_id": GOOD["event_id"](pick),
        "customer_id": GOOD["customer_id"](pick),
        "meter": name,
        "timestamp": GOOD["timestamp"](pick),
        "value": GOOD["value"](pick),
        "properties": pick.choice(GOOD_PROPERTIES[name]),
        "source": GOOD["source"](pick),
    }
    hostile = {
        "event_id": event_id,
        "customer_id": customer_id,
        "meter": meter,
        "timestamp": timestamp,
        "value": value,
        "properties": lambda p: properties(p, name),
        "source": source,
    }
    for _ in range(pick.choice([0, 0, 1, 1, 2, 3])):
        field = pick.choice(FIELDS)
        if pick.chance(0.1):
            fields.pop(field, None)
        else:
            fields[field] = hostile[field](pick)
    for field in ("value", "properties", "source"):
        if fields.get(field) is None and pick.chance(0.5):
            fields.pop(field, None)  # absent rather than null
    return fields


# --- JSON lines --------------------------------------------------------------------------------


def _json_text(pick: Pick, item: Any) -> str:
    """`item` as JSON text, written one of several legal ways (or as its Num text, which
    may be no JSON at all: NaN, 01)."""
    ascii_only = pick.chance(0.5)
    if isinstance(item, Num | Raw_nested):
        return str(item)
    if isinstance(item, Pairs):
        space = pick.choice(["", " ", "\t"])
        return (
            "{"
            + f",{space}".join(
                f"{json.dumps(k, ensure_ascii=ascii_only)}:{space}{_json_text(pick, v)}"
                for k, v in item
            )
            + "}"
        )
    if isinstance(item, list):
        return "[" + ",".join(_json_text(pick, v) for v in item) + "]"
    return json.dumps(item, ensure_ascii=ascii_only)


def json_line(pick: Pick, fields: dict[str, Any]) -> bytes:
    members = list(fields.items())
    if pick.chance(0.3):
        order = list(range(len(members)))
        for i in range(len(order) - 1, 0, -1):
            j = pick.integer(0, i)
            order[i], order[j] = order[j], order[i]
        members = [members[i] for i in order]
    if pick.chance(0.05) and members:
        members.append(members[0])  # a key twice
    if pick.chance(0.05):
        members.append(("unknown", "x"))
    pad = pick.choice(["", " ", "  ", "\t"])
    text = pad + _json_text(pick, Pairs(members)) + pick.choice(["", " ", "\r"])
    return text.encode("utf-8", "surrogatepass")


def damaged_line(pick: Pick, line: bytes) -> bytes:
    """A line cut short, with hostile bytes in it, or replaced by something else."""
    how = pick.choice(["cut", "insert", "replace", "other"])
    at = pick.integer(0, len(line))
    if how == "cut":
        return line[:at]
    if how == "insert":
        return line[:at] + pick.choice(NASTY_BYTES) + line[at:]
    if how == "replace":
        return line[:at] + pick.choice(NASTY_BYTES) + line[at + 1 :]
    return pick.choice(
        [
            b"{}",
            b"[]",
            b"null",
            b'"a string"',
            b"{" * 3000,
            b'{"event_id": "e1"} trailing',
            b'{"event_id": "e1",}',
            b"{'event_id': 'e1'}",
            b'{"event_id": "e' + b"\xff" + b'"}',
            BOM + line,
            line + b"\x00",
            b"x" * 70_000,
        ]
    )


def jsonl_file(pick: Pick, rows: int) -> bytes:
    """A JSON lines file of about `rows` lines: events, exact re-sends of earlier lines,
    the same event written another way, damaged lines and blank lines."""
    lines: list[bytes] = []
    events: list[dict[str, Any]] = []
    for _ in range(rows):
        kind = pick.choice(["event", "event", "event", "resend", "rewrite", "damaged", "blank"])
        if kind == "resend" and lines:
            lines.append(pick.choice(lines))
        elif kind == "rewrite" and events:
            lines.append(json_line(pick, dict(pick.choice(events))))
        elif kind == "damaged" and lines:
            lines.append(damaged_line(pick, pick.choice(lines)))
        elif kind == "blank":
            lines.append(pick.choice([b"", b"  ", b"\t", b"\r"]))
        else:
            fields = event(pick)
            events.append(fields)
            lines.append(json_line(pick, fields))
    end = pick.choice([b"\n", b"\r\n"])
    data = end.join(lines) + pick.choice([end, b""])
    return (BOM if pick.chance(0.15) else b"") + data


# --- CSV -----------------------------------------------------------------------------------------


def _cell(pick: Pick, item: Any) -> str:
    if item is None:
        return pick.choice(["", '""']) if pick.chance(0.2) else ""
    if isinstance(item, Pairs | list | Raw_nested):
        text = item if isinstance(item, Raw_nested) else _json_text(pick, item)
    elif isinstance(item, bool):
        text = "true" if item else "false"
    else:
        text = str(item)
    if (pick.chance(0.5) or any(c in text for c in ',"')) and pick.chance(0.9):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_file(pick: Pick, rows: int) -> bytes:
    """A CSV file: a header of the event fields in any order (names in any case, spaced),
    then rows of events with cells quoted or not, damaged lines and blank lines."""
    names = [
        n
        for n in FIELDS
        if n in ("event_id", "customer_id", "meter", "timestamp") or pick.chance(0.7)
    ]
    for i in range(len(names) - 1, 0, -1):
        j = pick.integer(0, i)
        names[i], names[j] = names[j], names[i]
    shown = [pick.choice([n, n.upper(), f" {n} ", n.title()]) for n in names]
    if pick.chance(0.08):
        shown.append(pick.choice(["event_id", "vaule", "x\ry", ""]))  # a header refused
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(shown)
    header = out.getvalue().encode("utf-8", "surrogatepass")
    lines: list[bytes] = []
    for _ in range(rows):
        kind = pick.choice(["event", "event", "event", "resend", "damaged", "blank"])
        if kind == "resend" and lines:
            lines.append(pick.choice(lines))
        elif kind == "damaged" and lines:
            lines.append(damaged_line(pick, pick.choice(lines)))
        elif kind == "blank":
            lines.append(pick.choice([b"", b" ", b"\t"]))
        else:
            fields = event(pick)
            cells = [_cell(pick, fields.get(n)) for n in names]
            if pick.chance(0.05):
                cells.append("extra")
            lines.append(",".join(cells).encode("utf-8", "surrogatepass"))
    end = pick.choice([b"\n", b"\r\n"])
    data = end.join([header, *lines]) + pick.choice([end, b""])
    return (BOM if pick.chance(0.15) else b"") + data


# --- Parquet -----------------------------------------------------------------------------------


def _ts_column(pick: Pick, n: int) -> tuple[pa.Array, list[Any]]:
    unit = pick.choice(["s", "ms", "us", "ns"])
    per_s = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    tz = pick.choice(["UTC", "+05:30", "America/New_York"])
    base = int(datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()) * per_s
    raws: list[int | None] = []
    for _ in range(n):
        raws.append(
            pick.choice(
                [
                    base,
                    base + pick.integer(-50 * 86400 * per_s, 6 * 86400 * per_s),
                    int(WINDOW[0].timestamp()) * per_s,
                    int(WINDOW[0].timestamp()) * per_s - 1,
                    int(WINDOW[1].timestamp()) * per_s + 1,
                    None,
                    # far past both ends (seconds are written as milliseconds)
                    2**53 if unit == "s" else 2**63 - 1 if unit == "ns" else 2**62,
                    -(2**53) if unit == "s" else -(2**62),
                    0,
                ]
            )
        )
    texts: list[Any] = []
    for raw in raws:
        if raw is None:
            texts.append(None)
            continue
        seconds, rest = divmod(raw, per_s)
        try:
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
        except OverflowError:
            texts.append("out of range")
            continue
        places = {"s": 0, "ms": 3, "us": 6, "ns": 9}[unit]
        fraction = f".{rest:0{places}d}" if places else ""
        texts.append(moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z")
    return pa.array(raws, pa.timestamp(unit, tz)), texts


def _value_column(pick: Pick, n: int) -> tuple[pa.Array, list[Any], list[bool]]:
    kind = pick.choice(["int64", "int8", "uint64", "decimal", "float64", "float32", "text"])
    errors = [False] * n
    if kind in ("int64", "int8", "uint64"):
        info = np.iinfo(kind)
        options = [0, 1, -1, 7, int(info.max), int(info.min), None]
        fit = [i for i in options if i is None or info.min <= i <= info.max]
        ints = [pick.choice(fit) for _ in range(n)]
        return pa.array(ints, kind), [None if i is None else Num(str(i)) for i in ints], errors
    if kind == "decimal":
        scale = pick.choice([0, 2, 9, 12, 20])
        precision = pick.choice([38, 30]) if scale <= 20 else 38
        values = [
            pick.choice(
                [
                    Decimal("1.5"),
                    Decimal("-0"),
                    Decimal("0.000000001"),
                    Decimal("999999999999"),
                    Decimal("1000000000000.5"),
                    None,
                    Decimal("0.123456789012"),
                ]
            )
            for _ in range(n)
        ]
        quantum = Decimal(1).scaleb(-scale)
        with localcontext() as ctx:
            ctx.prec = 100
            fitted = [None if v is None else v.quantize(quantum) for v in values]
        fitted = [v if v is None or len(v.as_tuple().digits) <= precision else None for v in fitted]
        texts = [None if v is None else Num(format(v, "f")) for v in fitted]
        return pa.array(fitted, pa.decimal128(precision, scale)), texts, errors
    if kind in ("float64", "float32"):
        floats = [
            pick.choice(
                [
                    0.5,
                    1.0,
                    -0.0,
                    0.1,
                    1e16,
                    123456789012.12346,
                    1 / 3,
                    float("nan"),
                    float("inf"),
                    -float("inf"),
                    1e-10,
                    None,
                ]
            )
            for _ in range(n)
        ]
        texts = []
        for i, f in enumerate(floats):
            if f is None:
                texts.append(None)
                continue
            if kind == "float32":
                shown = repr(np.float32(f).item()) if not np.isfinite(f) else str(np.float32(f))
            else:
                shown = repr(f)
            shown = {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(shown, shown)
            texts.append(Num(shown))
            if np.isfinite(f):
                mantissa = shown.lower().split("e")[0]
                digits = mantissa.replace("-", "").replace(".", "").strip("0")
                errors[i] = len(digits) > (6 if kind == "float32" else 15)
        return pa.array(floats, kind), texts, errors
    strings = [pick.choice(["1", "2.5", "abc", "", None, "1e400", "-0"]) for _ in range(n)]
    return pa.array(strings, pa.string()), strings, errors


def _properties_column(pick: Pick, n: int) -> tuple[pa.Array, list[Any], list[bool]]:
    kind = pick.choice(["text", "struct", "struct_typed", "map", "map_int"])
    errors = [False] * n
    texts: list[Any] = []
    if kind == "text":
        texts = [
            pick.choice(['{"channel": "chat"}', "{}", None, "[]", '{"model": 5}', "x"])
            for _ in range(n)
        ]
        return pa.array(texts, pa.string()), texts, errors
    if kind in ("struct", "struct_typed"):
        typed = kind == "struct_typed"
        rows = []
        for _ in range(n):
            rows.append(
                pick.choice(
                    [
                        {"channel": "chat", "model": None},
                        {"channel": None, "model": "m" if not typed else 5},
                        None,
                        {"channel": "fax", "model": None},
                    ]
                )
            )
        kind_model = pa.int64() if typed else pa.string()
        array = pa.array(rows, pa.struct([("channel", pa.string()), ("model", kind_model)]))
        for i, row in enumerate(rows):
            if row is None:
                texts.append(None)
            elif typed and row["model"] is not None:
                texts.append(None)
                errors[i] = True
            else:
                texts.append(Pairs([(k, v) for k, v in row.items() if v is not None]))
        return array, texts, errors
    value_kind = pa.int64() if kind == "map_int" else pa.string()
    maps: list[Any] = []
    for _ in range(n):
        maps.append(
            pick.choice(
                [
                    [("channel", "chat")],
                    [("model", "x"), ("region", "us")],
                    [("channel", "chat"), ("channel", "sms")],
                    [("channel", None)],
                    None,
                    [],
                ]
            )
        )
    if kind == "map_int":
        maps = [None if m is None else [(k, None if v is None else 1) for k, v in m] for m in maps]
    array = pa.array(maps, pa.map_(pa.string(), value_kind))
    for i, m in enumerate(maps):
        if m is None:
            texts.append(None)
            continue
        keys = [k for k, _ in m]
        bad = (
            (kind == "map_int" and m) or any(v is None for _, v in m) or len(set(keys)) != len(keys)
        )
        errors[i] = bool(bad)
        texts.append(None if bad else Pairs(m))
    return array, texts, errors


def _text_column(
    pick: Pick, n: int, make: Callable[[Pick], Any], good: Callable[[Pick], Any]
) -> tuple[pa.Array, list[Any]]:
    values = []
    for _ in range(n):
        item = make(pick) if pick.chance(0.25) else good(pick)
        if isinstance(item, Num):
            item = str(item)
        if not isinstance(item, str) or isinstance(item, Raw_nested):
            item = pick.choice([None, "x"])
        values.append(item)
    kind = pick.choice(["string", "binary", "large_string", "dictionary"])
    encoded = [None if v is None else v.encode("utf-8", "surrogatepass") for v in values]
    if kind == "binary":
        if pick.chance(0.3) and n:
            encoded[0] = b"e\xff"
        return pa.array(encoded, pa.binary()), encoded
    # surrogates cannot be stored in a string column: written as bytes that are not UTF-8
    safe = [None if v is None else v.encode("utf-8", "replace").decode() for v in values]
    if kind == "large_string":
        return pa.array(safe, pa.large_string()), safe
    if kind == "dictionary":
        return pa.array(safe, pa.string()).dictionary_encode(), safe
    return pa.array(safe, pa.string()), safe


def parquet_file(pick: Pick, n: int, path: Path) -> list[Row] | None:
    """A Parquet file of `n` rows with the event fields as text or typed columns; the
    model's rows (the values as their columns give them), or None for a file ingest must
    refuse (a struct of properties naming a field twice)."""
    refused = False
    columns: dict[str, pa.Array] = {}
    fields: dict[str, list[Any]] = {}
    props_errors = value_errors = [False] * n
    for name in FIELDS:
        if name not in ("event_id", "customer_id", "meter", "timestamp") and pick.chance(0.3):
            continue
        if name == "event_id" and pick.chance(0.2):
            ints = [
                pick.choice([1, 2, 3, -4, 2**63 - 1, None, pick.integer(0, 10**9)])
                for _ in range(n)
            ]
            columns[name] = pa.array(ints, pa.int64())
            fields[name] = [None if i is None else Num(str(i)) for i in ints]
        elif name == "timestamp" and pick.chance(0.5):
            columns[name], fields[name] = _ts_column(pick, n)
        elif name == "value":
            columns[name], fields[name], value_errors = _value_column(pick, n)
        elif name == "properties" and pick.chance(0.05):
            twice = pa.StructArray.from_arrays(
                [pa.array(["x"] * n, pa.string()), pa.array(["eu"] * n, pa.string())],
                fields=[pa.field("model", pa.string()), pa.field("model", pa.string())],
            )
            columns[name], fields[name], refused = twice, [None] * n, True
        elif name == "properties":
            columns[name], fields[name], props_errors = _properties_column(pick, n)
        else:
            make = {
                "event_id": event_id,
                "customer_id": customer_id,
                "meter": meter,
                "timestamp": timestamp,
                "source": source,
            }[name]
            good = GOOD.get(name, lambda p: p.choice(sorted(GOOD_PROPERTIES)))
            columns[name], fields[name] = _text_column(pick, n, make, good)
    shown = {
        pick.choice([name, name.upper(), f" {name}"]): array for name, array in columns.items()
    }
    table = pa.table(shown)
    pq.write_table(
        table,
        path,
        row_group_size=pick.choice([1, 3, n or 1]),
        compression=pick.choice(["snappy", "none", "zstd"]),
        write_page_checksum=True,
    )
    if refused:
        return None
    rows = []
    for i in range(n):
        values = {name: fields[name][i] for name in fields}
        ts = values.get("timestamp")
        if isinstance(ts, bytes):
            values["timestamp"] = ts
        rows.append(
            Row(i + 1, values, properties_error=props_errors[i], value_error=value_errors[i])
        )
    return rows
