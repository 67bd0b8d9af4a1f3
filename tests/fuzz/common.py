"""What every fuzz test shares: deterministic hypothesis settings, a bound on the time of
one case, and the hostile inputs (bytes, numbers, texts) and the mutations of a valid file
that the tests throw at ingest and at the catalog and customers loaders.

Hypothesis runs derandomized (the same examples on every run and machine) with no example
database, so CI is deterministic; a failure prints the shrunk input, which a test keeps as
an explicit @example (or a plain test) once its fault is fixed.
"""

from __future__ import annotations

import csv
import io
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

_CHECKS = [
    HealthCheck.function_scoped_fixture,  # one warehouse or ledger serves every example
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]


def fuzz_settings(max_examples: int, deadline_s: float, *, shrink: bool = True) -> settings:
    """A fixed number of examples, the same ones on every run (derandomize, no
    database), and a deadline per example generous enough for a noisy 2-core machine.
    Without `shrink` a failure is reported as found (shrinking an example that costs a
    warehouse ingest can take many minutes; the test notes the whole input instead)."""
    phases = (
        (Phase.explicit, Phase.generate, Phase.shrink)
        if shrink
        else (
            Phase.explicit,
            Phase.generate,
        )
    )
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=timedelta(seconds=deadline_s),
        suppress_health_check=_CHECKS,
        phases=phases,
        print_blob=False,
    )


class Hang(AssertionError):
    """A case ran past its time bound."""


@contextmanager
def bounded(seconds: int, what: str) -> Iterator[None]:
    """Fail with Hang when the block runs longer than `seconds` (pure Python code: the
    alarm interrupts it between two bytecodes)."""

    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise Hang(f"{what} did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- hostile pieces ------------------------------------------------------------------------

BOM = b"\xef\xbb\xbf"

#: Bytes that break decoders and splitters: a byte-order mark (UTF-8 and UTF-16), bytes
#: that are never UTF-8, a truncated sequence, an encoded surrogate, an overlong slash,
#: a code point past U+10FFFF, NUL, line ends of every kind (CR, U+2028, NEL), quotes,
#: separators and brackets.
NASTY_BYTES = [
    BOM,
    b"\xff\xfe",
    b"\xfe\xff",
    b"\xff",
    b"\xc3",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xf4\x90\x80\x80",
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b"\t",
    b" ",
    b"\xe2\x80\xa8",
    b"\xc2\x85",
    b"\xe2\x80\x8b",
    b'"',
    b"'",
    b",",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"#",
    b"&",
    b"*",
    b"!",
    b"|",
    b"-",
]

#: Numbers at and past every limit, in every spelling: NaN and infinity (JSON, YAML and
#: Python words), exponents up and down, negative zero, digits past a double and past the
#: engine's decimals, and things that only look like numbers.
NASTY_NUMBERS = [
    "NaN",
    "nan",
    "-NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "-inf",
    ".inf",
    "-.inf",
    ".nan",
    "1e400",
    "-1e400",
    "1e-400",
    "1e999999999",
    "1e-999999999",
    "1E+12",
    "1e12",
    "1.000000000001e12",
    "999999999999.999999999",
    "1000000000000.000000001",
    "0.0000000001",
    "1e-9",
    "1e-10",
    "-0",
    "-0.0",
    "-0e0",
    "+0",
    "0e-5",
    "00",
    "01",
    "1.",
    ".5",
    "+1",
    "1_000",
    "0x1F",
    "1,5",
    "12345678901234567890123456789",
    "123456789012.123456789",
    "9007199254740993",
    "1" + "0" * 50 + "e-50",
    "1" * 5000,
    "",
    " ",
    "true",
    "null",
]

#: Timestamps at every edge: the accepted window of an ingest as of 2026-11-25 (45 days
#: back, 5 minutes ahead) to the millisecond, the years the engine stores (1900-2299),
#: leap days and seconds, offsets at and past their range, more fraction digits than
#: milliseconds, lower-case and space separators, and texts that are not times.
NASTY_TIMESTAMPS = [
    "2026-10-11T00:00:00Z",
    "2026-10-10T23:59:59.999Z",
    "2026-11-25T00:05:00Z",
    "2026-11-25T00:05:00.001Z",
    "2026-11-25T00:05:00.0009Z",
    "2026-11-20T10:00:00.123456789012Z",
    "2026-11-20t10:00:00z",
    "2026-11-20 10:00:00Z",
    "2026-11-20T10:00:00+23:59",
    "2026-11-20T10:00:00-23:59",
    "2026-11-20T10:00:00+24:00",
    "2026-11-20T10:00:00+05:60",
    "2026-11-20T10:00:00+0530",
    "2026-11-20T10:00:00",
    "2026-11-20T10:00Z",
    "2026-11-20T23:59:60Z",
    "2026-11-20T24:00:00Z",
    "2026-02-29T10:00:00Z",
    "2024-02-29T10:00:00Z",
    "1900-01-01T00:00:00Z",
    "1900-01-01T00:00:00+01:00",
    "1899-12-31T23:59:59Z",
    "2299-12-31T23:59:59.999Z",
    "2299-12-31T23:59:59-01:00",
    "2300-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2262-04-11T23:47:16.854775807Z",
    "+2026-11-20T10:00:00Z",
    "2026-11-20T10:00:00Z ",
    "yesterday",
    "1763632800",
    "",
]

#: Texts that are hostile as ids, names or property values.
NASTY_TEXTS = [
    "",
    " ",
    " lead",
    "trail ",
    "a\x00b",
    "a\tb",
    "a\nb",
    "a\rb",
    "\u200b",
    "\ufeffbom",
    "\u202e",
    "\u2028",
    "\u0085",
    "\ue000",
    "\ud800",
    "\udfff",
    "x" * 128,
    "x" * 129,
    "é" * 128,
    "𝔘" * 129,
    "a|b",
    'a"b',
    "a,b",
    "a'b",
    "a\\b",
    "{}",
    "[]",
    "null",
    "*alias",
    "&anchor",
    "!!python/object:os.system",
    "%s%n",
    "Robert'); DROP TABLE usage_events;--",
    '{"nested": "json"}',
]

ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)


def nested_json(depth: int, leaf: str = '"x"') -> str:
    """An object nested `depth` levels deep, with lists and commas inside."""
    text = leaf
    for level in range(depth):
        text = f'{{"k{level}": [{text}, "y"]}}' if level % 2 else f'{{"k{level}": {text}}}'
    return text


def nested_yaml(depth: int) -> str:
    """A flow sequence nested `depth` levels deep (the YAML reader's recursion)."""
    return "[" * depth + "x" + "]" * depth


# --- mutations of a valid file -------------------------------------------------------------

_OPERATIONS = (
    "truncate",
    "insert",
    "delete",
    "replace",
    "token",
    "duplicate_line",
    "swap_lines",
    "bom",
    "flip",
    "huge_line",
    "nest",
)


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, tokens: list[bytes], huge: int = 20_000) -> bytes:
    """`seed` changed by one to five mutations: cut short, bytes inserted, deleted or
    replaced (hostile bytes among random ones), a token put in place of a word or
    number, a line repeated or two lines swapped, a byte-order mark added, a bit flipped,
    a line of `huge` bytes added, or deep nesting put in."""
    data = bytearray(seed)
    pieces = st.one_of(
        st.sampled_from(NASTY_BYTES), st.binary(min_size=1, max_size=8), st.sampled_from(tokens)
    )
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(_OPERATIONS))
        at = draw(st.integers(0, len(data)))
        if op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(pieces)
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "replace":
            data[at : at + 1] = draw(pieces)
        elif op == "token":
            # a word or number (the run of non-delimiters at `at`) becomes a token
            end = at
            while end < len(data) and data[end : end + 1] not in (b" ", b"\n", b",", b":", b'"'):
                end += 1
            data[at:end] = draw(st.sampled_from(tokens))
        elif op in ("duplicate_line", "swap_lines"):
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "duplicate_line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
        elif op == "bom":
            data[0:0] = BOM
        elif op == "flip" and data:
            index = min(at, len(data) - 1)
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif op == "huge_line":
            data[at:at] = b"\n" + draw(st.sampled_from([b"x", b"9", b"[", b"{", b'"'])) * huge
        elif op == "nest":
            data[at:at] = draw(st.sampled_from([b"[" * 5000, b"{" * 5000, b"- " * 3000]))
    return bytes(data)


def hostile_file(seed: bytes, tokens: list[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, or `seed` mutated (mostly: most of what reaches a loader is almost
    right)."""
    return st.one_of(st.binary(max_size=600), mutated(seed, tokens), mutated(seed, tokens))


def tokens_of(*groups: list[str]) -> list[bytes]:
    return [t.encode("utf-8", "surrogatepass") for group in groups for t in group]


# --- customers files --------------------------------------------------------------------------
# Rows of a customers file written as JSON lines, YAML or CSV (a list or an object in a
# CSV cell as JSON text, as docs/ledger.md says).


def as_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(
        "utf-8", "surrogatepass"
    )


def as_yaml(rows: list[dict[str, Any]]) -> bytes:
    return yaml.safe_dump(rows, sort_keys=False, allow_unicode=True).encode(
        "utf-8", "surrogatepass"
    )


def as_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO(newline="")
    names = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(out, fieldnames=names or ["customer_id"], lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: json.dumps(v) if isinstance(v, list | dict) else ("" if v is None else v)
                for k, v in row.items()
            }
        )
    return out.getvalue().encode("utf-8", "surrogatepass")
