"""The manifest of one export run (pure; docs/export.md, "Manifest").

Written last, after every file it names is in place: a reader that finds no manifest for
a run ignores that run's files (a run that died part-way). It holds, per table, the
files with their size and sha256, the rows (and how many are tombstones), the digest of
the content (change detection) and the money totals per currency (and status or kind),
in minor units, over the live rows: the figures a loader checks its load against, and
that tie to the ledger.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from meterline.sinks.lake.tables import SCHEMA_VERSION, Table

FORMAT = "meterline-lake-export"
#: period=YYYY-MM/manifest-RUN.json (RUN: the run number, 9 digits and more).
MANIFEST_NAME = re.compile(r"^manifest-(\d{9,})\.json$")
PART_NAME = re.compile(r"^part-(\d{9,})\.parquet$")


def manifest_name(run: int) -> str:
    return f"manifest-{run:09d}.json"


def part_name(run: int) -> str:
    return f"part-{run:09d}.parquet"


@dataclass(frozen=True)
class WrittenFile:
    """A file as written: its path under the period's folder, size and sha256."""

    path: str
    bytes: int
    sha256: str


def totals(t: Table, rows: pa.Table) -> list[dict[str, Any]]:
    """Sums of `t`'s money columns over the rows that are not tombstones, per currency
    (and per `t.group`), sorted; minor units as integers."""
    if not t.money:
        return []
    live = rows.filter(pc.invert(rows.column("deleted")))
    by = ["currency", *([t.group] if t.group else [])]
    if live.num_rows == 0:
        return []
    summed = live.group_by(by).aggregate([(m, "sum") for m in t.money])
    out = []
    for row in summed.to_pylist():
        entry = {k: row[k] for k in by}
        entry.update({m: int(row[f"{m}_sum"] or 0) for m in t.money})
        out.append(entry)
    return sorted(out, key=lambda e: tuple(str(e[k]) for k in by))


def table_entry(
    t: Table, rows: pa.Table, files: Sequence[WrittenFile], content_sha256: str
) -> dict[str, Any]:
    """One table's part of the manifest."""
    deleted = int(pc.sum(rows.column("deleted").cast(pa.int64())).as_py() or 0)
    return {
        "key": list(t.key),
        "rows": rows.num_rows,
        "deleted_rows": deleted,
        "content_sha256": content_sha256,
        "files": [{"path": f.path, "bytes": f.bytes, "sha256": f.sha256} for f in files],
        "totals": totals(t, rows),
    }


def build(
    *,
    period: str,
    run: int,
    previous_run: int | None,
    exported_at: str,
    as_of: str | None,
    tables: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """The manifest document. `exported_at` is the wall clock of the write (when, not a
    billing time); `as_of` the close time the month's findings were reconciled as of."""
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "period": period,
        "run": run,
        "row_version": run,
        "previous_run": previous_run,
        "exported_at": exported_at,
        "reconciled_as_of": as_of,
        "tables": dict(tables),
    }


def dumps(manifest: Mapping[str, Any]) -> bytes:
    """The manifest's bytes: JSON, keys sorted, one trailing newline."""
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def loads(data: bytes) -> dict[str, Any]:
    """A manifest read back. ValueError when it is not one of ours, of another schema
    version (a reader must not guess at another layout), or without the run and the
    tables' content digests a later run compares (damaged, edited)."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a meterline export manifest")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"manifest schema version {doc.get('schema_version')!r}, this code writes"
            f" {SCHEMA_VERSION}"
        )
    run, tables = doc.get("run"), doc.get("tables")
    if isinstance(run, bool) or not isinstance(run, int) or run < 1:
        raise ValueError(f"its run is {run!r}, not a run number")
    if not isinstance(tables, dict) or not all(
        isinstance(entry, dict) and isinstance(entry.get("content_sha256"), str)
        for entry in tables.values()
    ):
        raise ValueError("its tables are not a manifest's (each with its content_sha256)")
    return doc


def content_of(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Each table's content digest: what a later run compares to skip an unchanged month."""
    return {name: entry["content_sha256"] for name, entry in manifest["tables"].items()}
