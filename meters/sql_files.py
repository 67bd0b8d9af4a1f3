"""Reading the project's SQL files (`sql/migrations/*.sql`, `sql/queries/**.sql`)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from meters.warehouse.base import LEADING_COMMENTS as LEADING_COMMENTS  # migrations read it here
from meters.warehouse.base import check_identifier

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_TABLE_SLOT = re.compile(r"\{\{(\w+)\}\}")
# `{{> name}}` stands for the text of sql/queries/<name>.sql: a fragment several queries
# share (its comment lines are dropped, so it can sit inside an expression).
_INCLUDE = re.compile(r"\{\{> *([\w/]+) *\}\}")


Swaps = tuple[tuple[str, str], ...]


@cache
def query_text(name: str, swaps: Swaps = ()) -> str:
    """The text of `sql/queries/<name>.sql`, with its `{{> fragment}}` includes filled in.

    `swaps` ((fragment, replacement), ...) includes another fragment in place of one, at
    any depth: the same query over other rows (the live usage reads the rollup's own
    aggregation of the raw events not rolled up yet, meterline/jobs/usage.py). A
    replacement may include the fragment it replaces: there it is the original."""
    path = SQL_DIR / "queries" / f"{name}.sql"
    table = dict(swaps)

    def include(match: re.Match[str]) -> str:
        wanted = match.group(1)
        if wanted in table:
            rest = tuple(pair for pair in swaps if pair[0] != wanted)
            fragment = query_text(table[wanted], rest)
        else:
            fragment = query_text(wanted, swaps)
        return "\n".join(ln for ln in fragment.splitlines() if not ln.lstrip().startswith("--"))

    return _INCLUDE.sub(include, path.read_text())


def query(name: str, *, swaps: Swaps = (), **tables: str) -> str:
    """A query with its `{{slot}}` table names filled in (and its `swaps`: query_text).

    Only identifiers go into slots (checked); values stay `{name:Type}` bound parameters.
    """
    text = query_text(name, swaps)

    def fill(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot not in tables:
            raise KeyError(f"query {name} needs a table name for {{{{{slot}}}}}")
        return check_identifier(tables[slot])

    return _TABLE_SLOT.sub(fill, text)


def split_statements(text: str) -> list[str]:
    """Split a file into statements at semicolons that end a line of SQL (a `;` ending a
    comment line is the comment's); drop comment-only parts."""
    statements: list[str] = []
    chunk: list[str] = []
    for line in text.splitlines():
        code = line.strip()
        if code.endswith(";") and not code.startswith("--"):
            chunk.append(line.rstrip()[:-1])
            statements.append("\n".join(chunk))
            chunk = []
        else:
            chunk.append(line)
    statements.append("\n".join(chunk))
    return [
        part.strip()
        for part in statements
        if any(ln.strip() and not ln.strip().startswith("--") for ln in part.splitlines())
    ]
