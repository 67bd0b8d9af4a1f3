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


@cache
def query_text(name: str) -> str:
    """The text of `sql/queries/<name>.sql`, with its `{{> fragment}}` includes filled in."""
    path = SQL_DIR / "queries" / f"{name}.sql"

    def include(match: re.Match[str]) -> str:
        fragment = query_text(match.group(1))
        return "\n".join(ln for ln in fragment.splitlines() if not ln.lstrip().startswith("--"))

    return _INCLUDE.sub(include, path.read_text())


def query(name: str, **tables: str) -> str:
    """A query with its `{{slot}}` table names filled in.

    Only identifiers go into slots (checked); values stay `{name:Type}` bound parameters.
    """
    text = query_text(name)

    def fill(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot not in tables:
            raise KeyError(f"query {name} needs a table name for {{{{{slot}}}}}")
        return check_identifier(tables[slot])

    return _TABLE_SLOT.sub(fill, text)


def split_statements(text: str) -> list[str]:
    """Split a file into statements at semicolons that end a line; drop comment-only parts."""
    statements = []
    for chunk in re.split(r";\s*(?:\n|$)", text):
        lines = [ln for ln in chunk.splitlines() if ln.strip() and not ln.strip().startswith("--")]
        if lines:
            statements.append(chunk.strip())
    return statements
