"""Reading a credit grants file (YAML, JSONL or CSV, by its extension) into rows, with
every problem found: the customers file's readers and rules of reporting
(billing/customers/read.py), with the grant's fields (billing/credits/rows.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from billing.credits.rows import GrantRow
from billing.credits.store import GrantsFileInvalid
from billing.customers.errors import Problem
from billing.customers.read import (
    READERS,
    FileFormat,
    csv_records,
    detect_format,
    problems_of,
    read_text,
)

FIELDS: tuple[str, ...] = tuple(f for f in GrantRow.model_fields if f != "applies_to_ids")
REQUIRED: tuple[str, ...] = tuple(n for n, f in GrantRow.model_fields.items() if f.is_required())


def parse_grant_records(
    records: Iterable[tuple[int, Any]],
) -> tuple[list[tuple[int, GrantRow]], list[Problem]]:
    """Validate records (line number, mapping, or the Problem of an unreadable record):
    the valid rows and the problems of the others (none of either: no grants, which
    load_grants refuses as NoGrants)."""
    rows: list[tuple[int, GrantRow]] = []
    problems: list[Problem] = []
    for number, record in records:
        if isinstance(record, Problem):
            problems.append(record)
        elif not isinstance(record, Mapping):
            problems.append(Problem(number, "row", "must be an object with the grant fields"))
        else:
            try:
                rows.append((number, GrantRow.model_validate(dict(record))))
            except ValidationError as exc:
                problems.extend(problems_of(number, exc, FIELDS))
    return rows, problems


def read_grants_file(
    path: str | Path, fmt: FileFormat | None = None
) -> tuple[list[tuple[int, GrantRow]], list[Problem]]:
    """The rows and problems of a grants file, without the ledger. Raises
    GrantsFileInvalid only when the file cannot be read at all."""
    path = Path(path)
    fmt = fmt or detect_format(path, GrantsFileInvalid)
    text = read_text(path, GrantsFileInvalid)
    if fmt == "csv":
        records = csv_records(text, FIELDS, REQUIRED, json_columns=())
    else:
        records = READERS[fmt](text)
    return parse_grant_records(records)
