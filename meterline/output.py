"""Output a person reads: money, quantities, tables and progress, the same in every command.

- Money: ``format_money(Decimal("3668"), "JPY")`` -> ``JPY 3,668``; USD ``1,234.50``,
  KWD ``12.345``: digits grouped, the currency's ISO 4217 minor unit, never cut
  (``billing.money``). ``format_minor(366780, "USD")`` from ledger minor units.
- Quantities: ``format_quantity(Decimal("12226.000000000"))`` -> ``12,226``; without
  trailing zeros; ``places`` rounds for display and marks it (``≈ 10.333``). Text the
  rating stored (a line's description) through ``plain_numbers``: its long decimals
  without trailing zeros.
- Tables: ``print_table(console, columns, rows)`` fits the console (80 columns when the
  output is not a terminal and COLUMNS is unset): text columns wrap between words (a word
  of up to 32 cells, an id or a timestamp, is never broken) or are ellipsized, money and
  number columns are never cut; a table that cannot fit that way is printed as one block
  per row instead.
- JSON: ``json_text(report)`` is the one way a command prints JSON: pydantic models
  through ``model_dump(mode="json")``, dataclasses field by field, Decimal as its exact
  text, datetimes in ISO 8601; a float anywhere is an error (DESIGN.md invariant 4).
- Progress: ``with progress("close", total) as tick: job(on_progress=tick)`` shows a bar
  on stderr when stderr is a terminal and the work has run a few seconds; otherwise at
  most one plain line every 30 s once it has run 10 s.

rich is imported by the functions that draw, not by this module: formatting text needs
no terminal library (the HTML statement uses the same helpers).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as clock_time
from decimal import Context, Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from billing.money import format_amount, format_minor, format_money

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = [
    "Column",
    "Tracker",
    "console",
    "format_amount",
    "format_count",
    "format_minor",
    "format_money",
    "format_quantity",
    "json_text",
    "plain_numbers",
    "print_table",
    "progress",
]

_WIDE = Context(prec=100)


class FloatInReport(TypeError):
    """A float reached a report: money and quantities are Decimal (DESIGN.md invariant 4)."""


def jsonable(value: Any) -> Any:
    """A report value as JSON data: Decimal as exact text, dates and times in ISO 8601,
    enums by value, pydantic models and dataclasses field by field (recursively).

    Raises FloatInReport for a float anywhere (booleans and integers pass)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        raise FloatInReport(f"a float ({value!r}) reached a report; use Decimal")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | clock_time):
        return value.isoformat()
    if isinstance(value, Enum):
        return jsonable(value.value)
    if hasattr(value, "model_dump"):  # a pydantic model: its fields, not its JSON
        return jsonable(value.model_dump(mode="python"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


def json_text(value: Any, *, indent: int | None = None) -> str:
    """One JSON document for a command's --json output (see `jsonable`)."""
    return json.dumps(jsonable(value), indent=indent, ensure_ascii=False)


# The narrowest a folding text column gets before the table is shown as blocks instead.
MIN_TEXT_WIDTH = 8
# A text column is never narrower than its longest word up to this many cells: ids,
# timestamps, price ids and dimension values wrap between words, never inside one
# ("2026-10-15T00:00:00Z", "seat_type=advanced"); only a longer word (a URL) folds.
UNBROKEN_WORD = 32


def format_quantity(value: Decimal | int | str, places: int | None = None) -> str:
    """A quantity with its meaningful decimals, digits grouped: 12226.000000000 ->
    "12,226", 1.500000000 -> "1.5", -0 -> "0". With ``places``, at most that many
    decimals, rounded half-even, and "≈ " in front when that changed the value
    (10.333333333 with places=3 -> "≈ 10.333"). Floats are refused (TypeError)."""
    if isinstance(value, float):
        raise TypeError(f"a quantity must be a Decimal, int or decimal text, not {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"a quantity must be finite, got {value!r}")
    shown = Decimal(0) if number.is_zero() else number.normalize(_WIDE)
    prefix = ""
    tail = shown.as_tuple().exponent
    if places is not None and isinstance(tail, int) and -tail > places:
        rounded = shown.quantize(Decimal(1).scaleb(-places), context=_WIDE)
        shown = Decimal(0) if rounded.is_zero() else rounded.normalize(_WIDE)
        prefix = "≈ "
    tail = shown.as_tuple().exponent
    if isinstance(tail, int) and tail > 0:
        shown = shown.quantize(Decimal(1), context=_WIDE)
    return prefix + format(shown, ",f")


# A decimal number written with 4 or more decimal places (a stored quantity or precise
# amount: never a money amount in minor units, which has at most 3).
_LONG_DECIMAL = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)\.(\d{4,})(?![\w.])")


def plain_numbers(text: str) -> str:
    """Text written by the rating or the ledger (a line's stored description) with the
    trailing zeros of its long decimals taken off: "quantity 343.000000000 × 0.99 =
    339.57000000000 → USD 339.57" -> "quantity 343 × 0.99 = 339.57 → USD 339.57".
    Only numbers with 4 or more decimal places change, so money written with its
    currency's minor unit ("USD 250.00") stays as it is."""

    def shorter(match: re.Match[str]) -> str:
        fraction = match[2].rstrip("0")
        return f"{match[1]}.{fraction}" if fraction else match[1]

    return _LONG_DECIMAL.sub(shorter, text)


def format_count(n: int) -> str:
    """A count of things, digits grouped: 1234567 -> "1,234,567"."""
    return f"{n:,}"


# --- consoles and tables ----------------------------------------------------------------


def console(*, stderr: bool = False, wrap: bool = False) -> Console:
    """A console for a command's output: the terminal's width, or 80 columns (COLUMNS if
    set) when the output goes to a file or pipe; no syntax colouring of numbers. Long
    plain lines are left to the terminal to wrap (a copied line stays one line), or with
    ``wrap`` broken between words at the console's width (the demo's report)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=not wrap)


Kind = Literal["text", "money", "number"]


@dataclass(frozen=True)
class Column:
    """A table column. ``money`` and ``number`` columns are right-aligned and never cut
    or wrapped; ``text`` columns fold (wrap inside the cell), or with ``ellipsis`` keep
    one line and end in "…" when the table must shrink."""

    header: str
    kind: Kind = "text"
    ellipsis: bool = False

    @property
    def fixed(self) -> bool:
        return self.kind != "text"


def _as_column(spec: Column | str) -> Column:
    return spec if isinstance(spec, Column) else Column(spec)


def _text_widths(natural: list[int], minimum: list[int], room: int) -> list[int] | None:
    """Widths for the text columns within ``room``: the widest shrink first, none below
    its minimum; None when even the minimums do not fit."""
    if sum(minimum) > room:
        return None
    if sum(natural) <= room:
        return list(natural)
    low, high = 0, max(natural)
    while low < high:  # the largest cap L with sum(max(min_i, min(nat_i, L))) <= room
        cap = (low + high + 1) // 2
        if sum(max(m, min(n, cap)) for n, m in zip(natural, minimum, strict=True)) <= room:
            low = cap
        else:
            high = cap - 1
    widths = [max(m, min(n, low)) for n, m in zip(natural, minimum, strict=True)]
    spare = room - sum(widths)
    for i, n in enumerate(natural):  # hand out what is left, one column at a time
        if spare <= 0:
            break
        extra = min(spare, n - widths[i])
        if extra > 0:
            widths[i] += extra
            spare -= extra
    return widths


def _unbroken(spec: Column, cells: list[list[str]], column: int) -> int:
    """The width a folding column keeps so no word of it breaks: its widest
    whitespace-separated word, up to ``UNBROKEN_WORD`` cells (0 for an ellipsized
    column, which shrinks to ``MIN_TEXT_WIDTH`` and ends in "…")."""
    from rich.cells import cell_len

    if spec.ellipsis:
        return 0
    widest = max((cell_len(w) for row in cells for w in row[column].split()), default=0)
    return min(widest, UNBROKEN_WORD)


def print_table(
    out: Console,
    columns: Sequence[Column | str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
) -> None:
    """Print rows under their column headers, fitted to the console's width.

    Cells are text (or anything with a str()); format money and quantities first with
    ``format_money``/``format_quantity``. Money and number columns keep their full
    width; text columns share the rest (wrapping between words, or ellipsized), none
    narrower than its longest word (up to ``UNBROKEN_WORD`` cells), so an id or a
    timestamp is never broken inside. When the money columns and the narrowest text
    columns together are wider than the console, each row is printed as a block of
    ``header  value`` lines instead, so nothing is ever cut."""
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    specs = [_as_column(c) for c in columns]
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    natural = [
        max([cell_len(spec.header), *(cell_len(line) for r in cells for line in r[i].split("\n"))])
        for i, spec in enumerate(specs)
    ]
    gap = 2  # between columns: one space of padding, one of the (blank) box divider
    width = out.width
    fixed = sum(natural[i] for i, s in enumerate(specs) if s.fixed)
    text_idx = [i for i, s in enumerate(specs) if not s.fixed]
    room = width - fixed - gap * (len(specs) - 1)
    text_natural = [natural[i] for i in text_idx]
    text_min = [
        min(natural[i], max(MIN_TEXT_WIDTH, _unbroken(specs[i], cells, i))) for i in text_idx
    ]
    fitted = _text_widths(text_natural, text_min, room)

    if fitted is None:
        _print_blocks(out, specs, cells, title)
        return
    widths = dict(zip(text_idx, fitted, strict=True))
    if title:
        out.print(Text(title, style="bold"))
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        collapse_padding=False,
    )
    for i, spec in enumerate(specs):
        if spec.fixed:
            table.add_column(spec.header, justify="right", no_wrap=True, width=natural[i])
        else:
            table.add_column(
                spec.header,
                width=widths[i],
                no_wrap=spec.ellipsis,
                overflow="ellipsis" if spec.ellipsis else "fold",
            )
    for row in cells:
        table.add_row(*(Text(v) for v in row))
    out.print(table, soft_wrap=False)


def _print_blocks(
    out: Console, specs: list[Column], cells: list[list[str]], title: str | None
) -> None:
    from rich.table import Table
    from rich.text import Text

    if title:
        out.print(Text(title, style="bold"))
    label = max((len(s.header) for s in specs), default=0)
    for n, row in enumerate(cells):
        if n:
            out.print("")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True, width=label)
        grid.add_column(overflow="fold")
        for spec, value in zip(specs, row, strict=True):
            grid.add_row(Text(spec.header, style="dim"), Text(value))
        out.print(grid, soft_wrap=False)


# --- progress ---------------------------------------------------------------------------

DELAY_S = 2.0
# Off a terminal (a log), progress lines only for long work, and not too many of them.
PLAIN_AFTER_S = 10.0
PLAIN_EVERY_S = 30.0


class Tracker:
    """The progress of one piece of work, as the callback a job function accepts.

    ``tracker(done, total)`` sets the position (``total`` may stay None while unknown);
    ``tracker.advance()`` moves it by one step; ``detail`` names the current item."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.detail = ""
        self.started = time.monotonic()
        self._listeners: list[Callable[[], None]] = []

    def __call__(self, done: int, total: int | None = None, detail: str = "") -> None:
        self.done = done
        if total is not None:
            self.total = total
        if detail:
            self.detail = detail
        for listener in self._listeners:
            listener()

    def advance(self, steps: int = 1, detail: str = "") -> None:
        self(self.done + steps, None, detail)

    def line(self) -> str:
        of = f" of {self.total:,}" if self.total is not None else ""
        at = f" ({self.detail})" if self.detail else ""
        return f"{self.label}: {self.done:,}{of}{at}, {time.monotonic() - self.started:.0f}s"


@contextmanager
def progress(
    label: str,
    total: int | None = None,
    *,
    quiet: bool = False,
    delay_s: float = DELAY_S,
    interactive: bool | None = None,
) -> Iterator[Tracker]:
    """Progress of a long piece of work, on stderr, for a person watching.

    Yields a ``Tracker`` to pass as the job's progress callback. On a terminal a bar
    appears once the work has run ``delay_s`` (short work shows nothing) and is removed
    at the end; when stderr is not a terminal, one plain line every 30 s once the work
    has run 10 s (logs of long runs show that the work moves). ``quiet`` shows nothing."""
    tracker = Tracker(label, total)
    if quiet:
        yield tracker
        return
    if interactive is None:
        interactive = sys.stderr.isatty()
    if interactive:
        with _bar(tracker, delay_s):
            yield tracker
    else:
        last = [time.monotonic() + max(delay_s, PLAIN_AFTER_S) - PLAIN_EVERY_S]

        def plain() -> None:
            now = time.monotonic()
            if now - last[0] >= PLAIN_EVERY_S:
                last[0] = now
                print(f"meterline: {tracker.line()}", file=sys.stderr, flush=True)

        tracker._listeners.append(plain)
        yield tracker


@contextmanager
def _bar(tracker: Tracker, delay_s: float) -> Iterator[None]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as RichProgress

    bar: Progress = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
        redirect_stdout=False,
    )
    task = bar.add_task(tracker.label, total=tracker.total, detail="")
    lock = threading.Lock()
    state = {"started": False, "stopped": False}

    def sync() -> None:
        bar.update(task, completed=tracker.done, total=tracker.total, detail=tracker.detail)

    def start() -> None:
        with lock:
            if not state["stopped"]:
                sync()
                bar.start()
                state["started"] = True

    tracker._listeners.append(sync)
    timer = threading.Timer(delay_s, start)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["stopped"] = True
            if state["started"]:
                bar.stop()
