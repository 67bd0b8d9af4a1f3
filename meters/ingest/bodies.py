"""Events sent in one request body (the HTTP service's ``POST /v1/events``), read into the
rows a JSON-lines file would give, so that they are validated, deduplicated and counted
by the same code as files (meters.ingest.ingestor):

- NDJSON is read exactly as a ``.jsonl`` file is (meters.ingest.text_formats' line
  splitter): physical lines numbered from 1, a UTF-8 byte-order mark skipped, a line of
  only spaces not a row, bytes staged without decoding (a line that is not UTF-8 is
  rejected by the engine, never the body).
- A JSON array is read as the JSON-lines file of its elements: each element's text as
  written, numbered from 1 by its position, with the line breaks between its tokens
  written as spaces (JSON reads both alike; a string cannot hold a raw line break). What
  an element holds is judged by the engine, as a line's is: ``[1, {"event_id": ...}]``
  has a rejected row and a row. Only a body that is not one JSON array at all (not JSON,
  not UTF-8, an object, text after the array) is refused as a whole (``BodyError``).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from meters.ingest.text_formats import BOM, split_lines

_WHITESPACE = " \t\r\n"


class BodyError(ValueError):
    """A request body that cannot be read as a batch of events at all; the message says
    where and what to send instead."""


def ndjson_rows(data: bytes) -> tuple[pa.Array, pa.Array]:
    """(line numbers from 1, line text) of the rows of an NDJSON body: its non-blank
    physical lines, split as a JSON-lines file's are."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    _, lengths, lines, content = split_lines(data, True)
    numbers = np.arange(1, len(lengths) + 1, dtype=np.uint64)
    if content.all():
        return pa.array(numbers), lines
    return pa.array(numbers[content]), lines.filter(pa.array(content))


def _ignore(_text: str) -> None:
    """Numbers are not read here (the engine reads each from its text, exactly)."""


# Reads one JSON value's extent without converting its numbers (a number of 5,000 digits
# is the engine's to refuse, as in a file, not Python's int limit's).
_DECODER = json.JSONDecoder(parse_int=_ignore, parse_float=_ignore, parse_constant=_ignore)


def json_array_rows(data: bytes) -> tuple[pa.Array, pa.Array]:
    """(positions from 1, element text) of the elements of a JSON array body.

    Raises BodyError for a body that is not UTF-8 text holding one JSON array."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(
            f"the body is not UTF-8 text (byte {exc.start + 1}); JSON is UTF-8 (RFC 8259)"
        ) from None
    text = text.removeprefix("\ufeff")
    size = len(text)

    def skip(i: int) -> int:
        while i < size and text[i] in _WHITESPACE:
            i += 1
        return i

    def where(i: int) -> str:
        line = text.count("\n", 0, i) + 1
        column = i - (text.rfind("\n", 0, i) + 1) + 1
        return f"line {line} column {column}"

    i = skip(0)
    if i >= size or text[i] != "[":
        shown = "an empty body" if i >= size else f"{text[i]!r} at {where(i)}"
        raise BodyError(
            f"the body is not a JSON array of events ({shown}): send [{{...}}, ...], or"
            " one event per line with Content-Type application/x-ndjson"
        )
    elements: list[str] = []
    i = skip(i + 1)
    if i < size and text[i] == "]":
        i += 1
    else:
        while True:
            try:
                _, end = _DECODER.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise BodyError(
                    f"the body is not valid JSON: {exc.msg} at {where(exc.pos)}"
                    f" (element {len(elements) + 1} of the array)"
                ) from None
            except RecursionError:
                raise BodyError(
                    f"element {len(elements) + 1} of the array is nested too deeply"
                ) from None
            elements.append(text[i:end].replace("\n", " "))
            i = skip(end)
            if i < size and text[i] == ",":
                i = skip(i + 1)
                continue
            if i < size and text[i] == "]":
                i += 1
                break
            raise BodyError(
                f"the body is not valid JSON: expected ',' or ']' after element"
                f" {len(elements)} at {where(min(i, size))}"
            )
    i = skip(i)
    if i < size:
        raise BodyError(f"the body holds more after its JSON array ({where(i)}): send one array")
    numbers = np.arange(1, len(elements) + 1, dtype=np.uint64)
    return pa.array(numbers), pa.array(elements, pa.string())
