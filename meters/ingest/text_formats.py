"""Reading text files (JSON lines and CSV) into staging batches: physical lines, split
without decoding (vectorized over 16 MiB blocks), numbered from 1 as the file counts
them; a UTF-8 byte-order mark is skipped and a line of only spaces is not a row
(meters.ingest.readers holds the rules every format shares)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from meters.ingest.readers import Batch, UnreadableFile, column_positions, staging_table

# Bytes read from a text file at a time; a line may be longer (it is carried over).
BLOCK_BYTES = 16 << 20
# A single line longer than this is not an event: the file is refused.
MAX_LINE_BYTES = 256 << 20
# A UTF-8 byte-order mark: skipped at the start of a text file (or request body).
BOM = b"\xef\xbb\xbf"


def split_lines(data: bytes, final: bool) -> tuple[int, np.ndarray, pa.Array, np.ndarray]:
    """Split `data` at newlines (a CR before the newline is dropped too).

    Returns the bytes consumed, the line lengths, the lines as (unvalidated) text, and
    which lines hold more than spaces and tabs. Without `final`, a last line with no
    newline is left for the next block.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    size = len(buf)
    if final and size and (len(ends) == 0 or ends[-1] != size - 1):
        ends = np.append(ends, size)
    if len(ends) == 0:
        return 0, np.zeros(0, np.int64), pa.array([], pa.string()), np.zeros(0, bool)
    consumed = min(int(ends[-1]) + 1, size)
    starts = np.concatenate(([0], ends[:-1] + 1))
    stops = ends.copy()
    last = np.clip(stops - 1, 0, None)
    has_cr = (stops > starts) & (buf[last] == 13)
    stops = stops - has_cr
    lengths = stops - starts
    keep = np.ones(consumed, dtype=bool)
    keep[ends[ends < size]] = False
    keep[stops[has_cr]] = False
    packed = buf[:consumed][keep]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    lines = pa.Array.from_buffers(
        pa.string(),
        len(lengths),
        [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(packed)],
    )
    printed = np.concatenate(([0], np.cumsum((packed != 32) & (packed != 9) & (packed != 13))))
    content = (printed[offsets[1:]] - printed[offsets[:-1]]) > 0
    return consumed, lengths, lines, content


def _line_blocks(path: Path) -> Iterator[tuple[pa.Array, pa.Array]]:
    """(physical line numbers from 1, line text) of the file's non-blank lines, by block."""
    line_no = 0
    carry = b""
    first = True
    with path.open("rb") as handle:
        while True:
            block = handle.read(BLOCK_BYTES)
            data = carry + block if carry else block
            if first:
                first = False
                if data.startswith(BOM):
                    data = data[len(BOM) :]
            final = not block
            if not data:
                return
            consumed, lengths, lines, content = split_lines(data, final)
            carry = data[consumed:]
            if len(carry) > MAX_LINE_BYTES:
                raise UnreadableFile(
                    f"{path}: line {line_no + 1} is longer than {MAX_LINE_BYTES >> 20} MiB; "
                    "is this a text file with one event per line?"
                )
            n = len(lengths)
            if n:
                numbers = np.arange(line_no + 1, line_no + 1 + n, dtype=np.uint64)
                line_no += n
                if content.all():
                    yield pa.array(numbers), lines
                elif content.any():
                    mask = pa.array(content)
                    yield pa.array(numbers[content]), lines.filter(mask)
            if final:
                return


def _line_batches(
    blocks: Iterator[tuple[pa.Array, pa.Array]], batch_rows: int
) -> Iterator[tuple[pa.Array, pa.Array]]:
    """Regroup blocks of lines into batches of `batch_rows` lines (the last one smaller)."""
    numbers: list[pa.Array] = []
    lines: list[pa.Array] = []
    held = 0

    def take() -> tuple[pa.Array, pa.Array]:
        return pa.concat_arrays(numbers), pa.concat_arrays(lines)

    for block_numbers, block_lines in blocks:
        numbers.append(block_numbers)
        lines.append(block_lines)
        held += len(block_lines)
        while held >= batch_rows:
            all_numbers, all_lines = take()
            yield all_numbers[:batch_rows], all_lines[:batch_rows]
            numbers, lines = [all_numbers[batch_rows:]], [all_lines[batch_rows:]]
            held -= batch_rows
    if held:
        yield take()


def read_jsonl(
    path: Path, source: str, batch_rows: int, next_seq: Callable[[int], int]
) -> Iterator[Batch]:
    # Every non-blank line is a row, whatever it holds.
    for numbers, lines in _line_batches(_line_blocks(path), batch_rows):
        yield Batch(
            source, staging_table(source, next_seq(len(lines)), numbers, is_json=True, raw=lines)
        )


def read_csv(
    path: Path, source: str, batch_rows: int, next_seq: Callable[[int], int]
) -> Iterator[Batch]:
    """CSV (RFC 4180 quoting, comma-separated, one row per line: a quoted field cannot
    span lines). The fields of each line are split in the engine, so a broken line is
    still a row, rejected with its text and line number."""
    batches = _line_batches(_line_blocks(path), batch_rows)
    first = next(batches, None)
    if first is None:
        return  # an empty file holds no rows
    numbers, lines = first
    header_line = int(numbers[0].as_py())
    try:
        header_text = lines.cast(pa.binary())[0].as_py().decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(
            f"{path}: the header (line {header_line}) is not UTF-8 text; save the file as UTF-8"
        ) from None
    try:
        names = next(csv.reader([header_text]))
    except csv.Error as exc:  # a CR inside it, or a name past the csv module's limit
        why = "a carriage return inside it" if "new-line" in str(exc) else str(exc)
        raise UnreadableFile(
            f"{path}: the header (line {header_line}) is not one line of column names"
            f" ({why}); write the names on one line, separated by commas"
        ) from None
    positions = column_positions(path, names, f"the header (line {header_line})")
    header = ",".join(sorted(positions, key=positions.__getitem__))

    def batch(numbers: pa.Array, lines: pa.Array) -> Batch:
        return Batch(
            source,
            staging_table(
                source, next_seq(len(lines)), numbers, is_json=False, raw=lines, csv_header=header
            ),
        )

    if len(lines) > 1:
        yield batch(numbers[1:], lines[1:])
    for numbers, lines in batches:
        yield batch(numbers, lines)
