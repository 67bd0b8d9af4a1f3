"""Row versions (pure): what a run writes so that keeping the latest version of each key
gives exactly the ledger.

Rules (docs/export.md, "Versions"):
- A run writes a whole month: every row of every table, all with ``row_version`` = the
  run's number (the ledger's export_runs id, which only grows).
- A key that a loader holds alive from earlier runs and that the month no longer has (a
  reconcile finding that went away, a rejected row of an ingest rolled back) is written
  as a tombstone: its key, ``deleted = true``, the run's version. Without it a loader that
  keeps the latest version of each key would keep the row for ever.
- What a loader holds is the latest version of each key among the files it loaded, less
  the tombstones: `latest` computes it; docs/export.md gives the same in SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from meterline.sinks.lake.tables import Table

#: The columns a version check reads of earlier files: the key, the version, the flag.
FRAME = ("row_version", "deleted")


def versioned(t: Table, rows: pa.Table, period: str, run: int) -> pa.Table:
    """The month's rows of table `t` (its own columns, any order) in file form:
    ``period`` and the natural key first, the columns, ``row_version`` = `run`,
    ``deleted`` false. KeyError for a missing column, ValueError for a duplicate key (a
    bug: keys are unique)."""
    n = rows.num_rows
    columns = []
    for c in t.frame:
        if c.name == "period":
            columns.append(pa.array([period] * n, pa.string()))
        elif c.name == "row_version":
            columns.append(pa.array([run] * n, pa.int64()))
        elif c.name == "deleted":
            columns.append(pa.array([False] * n, pa.bool_()))
        else:
            columns.append(rows.column(c.name).cast(c.type))
    out = pa.Table.from_arrays(columns, schema=t.schema)
    duplicates = _duplicate_keys(out, t.key)
    if duplicates:
        raise ValueError(f"{t.name}: {duplicates} rows share a key {t.key}: keys must be unique")
    return out


def tombstones(t: Table, alive: pa.Table, current: pa.Table, period: str, run: int) -> pa.Table:
    """Tombstones for the keys of `alive` (keys a loader holds alive: `latest`'s keys)
    that `current` (this run's rows) does not have, in file form."""
    gone = alive.select(list(t.key)).join(
        current.select(list(t.key)), keys=list(t.key), join_type="left anti"
    )
    n = gone.num_rows
    columns = []
    for c in t.frame:
        if c.name in t.key:
            columns.append(gone.column(c.name).cast(c.type))
        elif c.name == "period":
            columns.append(pa.array([period] * n, pa.string()))
        elif c.name == "row_version":
            columns.append(pa.array([run] * n, pa.int64()))
        elif c.name == "deleted":
            columns.append(pa.array([True] * n, pa.bool_()))
        else:
            columns.append(pa.nulls(n, c.type))
    return pa.Table.from_arrays(columns, schema=t.schema).sort_by([(k, "ascending") for k in t.key])


def latest(t: Table, files: Sequence[pa.Table]) -> pa.Table:
    """What a loader keeping the latest version of each key holds after loading `files`
    (each with at least the key, ``row_version`` and ``deleted``): per key, the row of the
    highest version, unless that row is a tombstone. ValueError when one key has two rows
    of the same version (two runs never share a number)."""
    if not files:
        return pa.table({c.name: pa.array([], c.type) for c in t.frame if c.name in t.key})
    names = files[0].column_names
    both = pa.concat_tables([f.select(names) for f in files])
    if _duplicate_keys(both, (*t.key, "row_version")):
        raise ValueError(f"{t.name}: a key has two rows of one version")
    newest = both.group_by(list(t.key)).aggregate([("row_version", "max")])
    newest = newest.rename_columns([*t.key, "row_version"])
    rows = both.join(newest, keys=[*t.key, "row_version"], join_type="inner")
    return rows.filter(pc.invert(rows.column("deleted"))).select(names)


def content_sha256(t: Table, rows: pa.Table) -> str:
    """The sha256 of the rows' content: every column but ``row_version`` and ``deleted``,
    rows in key order, as an Arrow IPC stream. Two runs over an unchanged ledger give
    the same digest (the export then writes nothing: docs/export.md)."""
    names = [c.name for c in t.frame if c.name not in FRAME]
    ordered = rows.select(names).sort_by([(k, "ascending") for k in t.key]).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, ordered.schema) as writer:
        writer.write_table(ordered)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _duplicate_keys(rows: pa.Table, key: Sequence[str]) -> int:
    if rows.num_rows == 0:
        return 0
    counts = rows.group_by(list(key)).aggregate([([], "count_all")])
    return rows.num_rows - counts.num_rows
