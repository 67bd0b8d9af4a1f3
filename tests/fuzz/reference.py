"""A plain Python model of what ingest must do with each row of a usage file, written from
the README's event format and the comment at the top of sql/queries/ingest/validate.sql,
not from that query: the ingest fuzz tests compare the engine's verdict on every row
(accepted, duplicate, or rejected with which reason) and every stored value with it.

A row is given as the value of each event field as its format carries it: from a JSON
line, Python's strict reading of the JSON (strings, numbers as written, objects with their
keys in order, repeated keys kept); from a CSV line or a Parquet text column, the text (or
bytes that may not be UTF-8); from a typed Parquet column, the text a person would type.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from meters.catalog import MeterCatalog

FIELDS = ("event_id", "customer_id", "meter", "timestamp", "value", "properties", "source")
LIMIT = Decimal(10) ** 12


class Num(str):
    """A JSON number, as written."""


class Pairs(list[tuple[str, Any]]):
    """A JSON object, as written: its members in order, a repeated key kept."""


class Raw(str):
    """A value given as the text of a JSON object or list (or true/false) that is not
    further read."""


def read_json(text: str) -> Any:
    """Python's strict reading of one JSON text (no NaN or Infinity); raises ValueError."""

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(
        text, parse_int=Num, parse_float=Num, parse_constant=constant, object_pairs_hook=Pairs
    )


def is_text(value: str) -> bool:
    """Whether a Python string is Unicode text (no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def all_text(value: Any) -> bool:
    if isinstance(value, str):
        return is_text(value)
    if isinstance(value, Pairs):
        return all(is_text(k) and all_text(v) for k, v in value)
    if isinstance(value, list):
        return all(all_text(v) for v in value)
    return True


def depth(value: Any) -> int:
    if isinstance(value, Pairs):
        return 1 + max((depth(v) for _, v in value), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@dataclass
class Row:
    """One row of a file: its physical line (or row number) and field values."""

    line: int
    fields: dict[str, Any] = field(default_factory=dict)
    # Whether the row cannot be read as an event at all (malformed_row).
    malformed: bool = False
    # The format found a property it refuses (a typed Parquet column), or a value it
    # cannot read exactly (a float column with too many digits).
    properties_error: bool = False
    value_error: bool = False
    # Reasons the engine may give instead of the model's, for a documented limit.
    also: frozenset[str] = frozenset()
    raw: bytes = b""  # the line as written (to show a difference)


@dataclass(frozen=True)
class Event:
    """What an accepted row stores (value to 9 places, properties sorted)."""

    event_id: str
    customer_id: str
    meter: str
    timestamp: datetime
    value: Decimal
    properties: tuple[tuple[str, str], ...]
    source: str | None  # None: not compared

    def content(self) -> tuple[Any, ...]:
        return (self.customer_id, self.meter, self.timestamp, self.value, self.properties)


@dataclass(frozen=True)
class Verdict:
    status: str  # accepted, duplicate, rejected
    reason: str = ""
    event: Event | None = None
    also: frozenset[str] = frozenset()


def _text(value: Any) -> tuple[str | None, bool]:
    """(the field's text or None when absent, whether it is UTF-8 text)."""
    if value is None:
        return None, True
    if isinstance(value, bytes):
        # bytes that are not UTF-8 kept as lone surrogates: never printable
        text = value.decode("utf-8", "surrogateescape")
        return text, is_text(text)
    if isinstance(value, Pairs | list):
        return Raw(json.dumps(value)), True
    if isinstance(value, bool):
        return ("true" if value else "false"), True
    text = str(value)
    return text, is_text(text)


def printable(text: str) -> bool:
    """An id: no control, format, private-use or separator character, no space but U+0020
    and none at either end (checked with the Unicode categories, below)."""
    if text != text.strip(" "):
        return False
    for char in text:
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp") or (category == "Zs" and char != " "):
            return False
    return True


_TS = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)


def instant(text: str) -> datetime | str:
    """The UTC instant of an RFC 3339 date-time (fraction cut to milliseconds), or why it
    is refused: 'shape', 'offset' or 'real'."""
    found = _TS.match(text)
    if not found:
        return "shape"
    year, month, day, hour, minute, second = (int(g) for g in found.groups()[:6])
    fraction, zone = found.group(7) or "", found.group(8)
    if zone in "Zz":
        offset = timedelta(0)
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return "offset"
        offset = timedelta(hours=hours, minutes=minutes) * (1 if zone[0] == "+" else -1)
    if not 1900 <= year <= 2299:
        return "real"
    try:
        local = datetime(
            year, month, day, hour, minute, second, int((fraction + "000")[:3]) * 1000, tzinfo=UTC
        )
    except ValueError:
        return "real"
    return local - offset


_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")


def number(text: str) -> Decimal | str:
    """The exact value of a number's text, or why it is refused: 'non_numeric_value' or
    'value_out_of_range' (|value| <= 10^12, at most 9 decimal places)."""
    if not _NUMBER.match(text):
        return "non_numeric_value"
    with localcontext() as ctx:
        ctx.prec = 20_000
        ctx.Emax = 10**9
        ctx.Emin = -(10**9)
        try:
            value = Decimal(text)
        except InvalidOperation:
            return "value_out_of_range"
        if value.is_zero():
            return Decimal(0)
        exponent = value.normalize().as_tuple().exponent
        assert isinstance(exponent, int)
        if abs(value) > LIMIT or exponent < -9:
            return "value_out_of_range"
        return value.quantize(Decimal("1e-9"))


def _properties(value: Any) -> tuple[tuple[tuple[str, str], ...] | None, bool]:
    """(the properties as sorted pairs, or None when they are refused; whether the text
    held objects nested deeper than the engine's number reading reaches)."""
    if value is None:
        return (), False
    if isinstance(value, Pairs):
        doc: Any = value
    else:
        text, ok = _text(value)
        if not ok or text is None:
            return None, False
        if text == "":
            return (), False
        try:
            doc = read_json(text)
        except (ValueError, RecursionError):
            return None, False
    if not isinstance(doc, Pairs) or not all_text(doc):
        return None, depth(doc) > 4
    if not all(isinstance(v, str) and not isinstance(v, Num) for _, v in doc):
        return None, depth(doc) > 4
    keys = [k for k, _ in doc]
    if len(set(keys)) != len(keys):
        return None, False
    return tuple(sorted((k, str(v)) for k, v in doc)), False


@dataclass
class Model:
    """The rules of one ingest: its catalog and accepted window, and the content of
    every event_id accepted so far (by earlier ingests, then this one)."""

    catalog: MeterCatalog
    window: tuple[datetime, datetime]
    accepted: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def judge(self, row: Row) -> Verdict:
        verdict = self._defect(row)
        if verdict.status == "rejected":
            return verdict
        event = verdict.event
        assert event is not None
        first = self.accepted.get(event.event_id)
        if first is None:
            self.accepted[event.event_id] = event.content()
            return verdict
        if first == event.content():
            return Verdict("duplicate", event=event)
        return Verdict("rejected", "conflicting_duplicate", also=row.also)

    def _defect(self, row: Row) -> Verdict:
        """The first defect of a row, in the order of the README's event rules (the
        order validate.sql documents), or the event it stores."""

        def rejected(reason: str) -> Verdict:
            return Verdict("rejected", reason, also=row.also)

        f = row.fields
        texts: dict[str, str | None] = {}
        utf8: dict[str, bool] = {}
        for name in FIELDS:
            texts[name], utf8[name] = _text(f.get(name))
        others = ("meter", "timestamp", "value", "properties", "source")
        if row.malformed or not all(utf8[name] for name in others):
            return rejected("malformed_row")
        eid, cid, meter, ts_text = (texts[n] for n in FIELDS[:4])
        if not _id_type(f.get("event_id")):
            return rejected("bad_event_id")
        if not eid:
            return rejected("missing_field")
        if not _id_type(f.get("customer_id")):
            return rejected("bad_customer_id")
        if not cid:
            return rejected("missing_field")
        if not meter or not ts_text:
            return rejected("missing_field")
        if not utf8["event_id"] or not printable(eid) or len(eid) > 128:
            return rejected("bad_event_id")
        if not utf8["customer_id"] or not printable(cid):
            return rejected("bad_customer_id")
        moment = instant(ts_text)
        if isinstance(moment, str):
            return rejected("bad_timestamp")
        if moment < self.window[0]:
            return rejected("timestamp_too_old")
        if moment > self.window[1]:
            return rejected("timestamp_in_future")
        definition = self.catalog.meters.get(meter)
        if definition is None:
            return rejected("unknown_meter")
        value = Decimal(1) if f.get("value") is None else number(texts["value"] or "")
        if isinstance(value, str):
            return rejected(value)
        if row.value_error:
            return rejected("value_out_of_range")
        if value < 0 and definition.aggregation.is_counter:
            return rejected("negative_value")
        if row.properties_error:
            return rejected("bad_properties")
        props, deep = _properties(f.get("properties"))
        if props is None:
            return Verdict(
                "rejected",
                "bad_properties",
                also=row.also | ({"malformed_row"} if deep else set()),
            )
        for key, text in props:
            if key not in definition.properties:
                return rejected("bad_properties")
            allowed = definition.allowed_values(key)
            if allowed and text not in allowed:
                return rejected("bad_properties")
        source = f.get("source")
        shown = isinstance(source, str) and not isinstance(source, Num | Raw)
        event = Event(eid, cid, meter, moment, value, props, texts["source"] if shown else None)
        return Verdict("accepted", event=event, also=row.also)


def _id_type(value: Any) -> bool:
    """In JSON an id is a string or an integer (absent or null is a missing id)."""
    if isinstance(value, Num):
        return re.fullmatch(r"-?[0-9]+", value) is not None
    return value is None or isinstance(value, str | bytes)


# --- reading a line as its format does (for the model) ---------------------------------------

_EXACT = re.compile(r'"[ \t\r]*:[ \t\r]*(-?[0-9]+[.eE]|-?[0-9]{16}|-0)')


def json_row(line: int, raw: bytes) -> Row:
    """A JSON line as the model reads it."""
    row = _json_row(line, raw)
    row.raw = raw
    return row


def _json_row(line: int, raw: bytes) -> Row:
    try:
        # RFC 8259 lets a reader ignore a byte-order mark: the engine's JSON reader does.
        text = raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        doc = read_json(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Row(line, malformed=True)
    if not isinstance(doc, Pairs) or not all_text(doc):
        return Row(line, malformed=True)
    keys = [k for k, _ in doc]
    if len(set(keys)) != len(keys) or not set(keys) <= set(FIELDS):
        return Row(line, malformed=True)
    # Documented limit (validate.sql): a line with a number read from its text and a
    # member nested more than 4 deep may be refused as malformed.
    also = (
        frozenset({"malformed_row"})
        if _EXACT.search(text) and any(depth(v) > 4 for _, v in doc)
        else frozenset()
    )
    return Row(line, dict(doc), also=also)


def csv_cells(line: str) -> list[tuple[str, bool]] | None:
    """The cells of one RFC 4180 line (text, quoted), or None when it is not one."""
    cells: list[tuple[str, bool]] = []
    i, n = 0, len(line)
    while True:
        if i < n and line[i] == '"':
            j, out = i + 1, []
            while True:
                if j >= n:
                    return None
                if line[j] == '"':
                    if j + 1 < n and line[j + 1] == '"':
                        out.append('"')
                        j += 2
                        continue
                    j += 1
                    break
                out.append(line[j])
                j += 1
            cells.append(("".join(out), True))
        else:
            j = i
            while j < n and line[j] not in ',"':
                j += 1
            if j < n and line[j] == '"':
                return None
            cells.append((line[i:j], False))
        i = j
        if i == n:
            return cells
        if line[i] != ",":
            return None
        i += 1


def csv_row(line: int, raw: bytes, header: list[str]) -> Row:
    """A CSV line as the model reads it, under the file's header (event field names)."""
    row = _csv_row(line, raw, header)
    row.raw = raw
    return row


def _csv_row(line: int, raw: bytes, header: list[str]) -> Row:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Row(line, malformed=True)
    cells = csv_cells(text)
    if cells is None or len(cells) != len(header):
        return Row(line, malformed=True)
    return Row(
        line,
        {
            name: (cell if quoted or cell else None)
            for name, (cell, quoted) in zip(header, cells, strict=True)
        },
    )
