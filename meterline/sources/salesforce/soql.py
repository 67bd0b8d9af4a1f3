"""The SOQL queries of a sync, built from the mapping (pure: tested against the exact text).

Every value a query holds is a literal written here: a datetime in UTC
(``2026-11-04T00:00:00Z``, SOQL's dateTime literal, unquoted) or a quoted string with
``\\`` and ``'`` escaped (SOQL's string literal rules). Field paths and object names come
from the mapping, which admits SOQL identifiers only; its ``where`` conditions are SOQL
as the mapping's author wrote them, each put in parentheses.

A query is sent as the ``q`` parameter of a GET (the REST API's query resource), whose
URL Salesforce limits to about 16,000 characters: ``IN`` lists go in chunks of
IN_CHUNK ids (an 18-character Id is 21 characters quoted, with its comma).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

from meterline.sources.salesforce.mapping import ObjectMapping

IN_CHUNK = 300


def quote(value: str) -> str:
    """A SOQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def datetime_literal(instant: datetime) -> str:
    """A SOQL dateTime literal in UTC, to the second (an aware ``instant``; its fraction of
    a second is dropped, which only widens a ``>=`` condition)."""
    if instant.tzinfo is None:
        raise ValueError("a SOQL dateTime needs an aware instant")
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def select_fields(mapping: ObjectMapping) -> list[str]:
    """The fields a query of ``mapping``'s object selects: Id, the modification stamp,
    then every path the mapping reads, each once (SOQL names are case-insensitive)."""
    out: list[str] = []
    seen: set[str] = set()
    for path in ("Id", mapping.modified, *mapping.paths()):
        if path.lower() not in seen:
            seen.add(path.lower())
            out.append(path)
    return out


def query(mapping: ObjectMapping, conditions: Sequence[str] = ()) -> str:
    """``SELECT fields FROM object [WHERE (where) AND condition ...]``."""
    parts = [f"({mapping.where.strip()})"] if mapping.where else []
    parts.extend(conditions)
    where = f" WHERE {' AND '.join(parts)}" if parts else ""
    return f"SELECT {', '.join(select_fields(mapping))} FROM {mapping.object}{where}"


def modified_since(mapping: ObjectMapping, since: datetime | None) -> str:
    """The query of the records modified at or after ``since`` (all when None)."""
    conditions = [] if since is None else [f"{mapping.modified} >= {datetime_literal(since)}"]
    return query(mapping, conditions)


def chunks(values: Iterable[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    """``values`` sorted, in lists of at most ``size``."""
    items = sorted(set(values))
    for i in range(0, len(items), size):
        yield items[i : i + size]


def having(mapping: ObjectMapping, field: str, values: Iterable[str]) -> list[str]:
    """The queries of the records whose ``field`` is one of ``values``, a chunk each."""
    return [
        query(mapping, [f"{field} IN ({', '.join(quote(v) for v in part)})"])
        for part in chunks(values)
    ]
