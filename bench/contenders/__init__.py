"""The contenders of the suite: what each one does and the module that does it.

Each module has `run(file, work, options) -> Outcome` (bench/contenders/common.py),
called in a process of its own by bench/child.py, so that its peak memory is its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Contender:
    name: str
    """Its key on the command line and in the JSON file."""
    label: str
    """Its name in the table."""
    work: str
    """What it does, in the table's words."""
    module: str
    options: dict[str, Any] = field(default_factory=dict)
    compared: bool = True
    """Whether its totals must agree with the others' (False: it does not deduplicate)."""


WORK_MEAN = "customer/meter/properties/hour"

CONTENDERS: tuple[Contender, ...] = (
    Contender("meterline", "meterline",
              "ingest (validate, dedup, reject, store) + rollup of the day",
              "bench.contenders.meterline_pipeline"),
    Contender("duckdb_file", "DuckDB, file database",
              "load with casts, dedup by event id against stored ids, persist, "
              f"group by {WORK_MEAN}",
              "bench.contenders.duckdb_sql", {"persist": True}),
    Contender("duckdb_memory", "DuckDB, in memory", "the same without persisting",
              "bench.contenders.duckdb_sql", {"persist": False}),
    Contender("pandas", "pandas", "read, drop duplicates by event id, parse, group by",
              "bench.contenders.pandas_frame"),
    Contender("postgres", "PostgreSQL", "COPY, insert on conflict do nothing, group by",
              "bench.contenders.postgres_sql"),
    Contender("chdb_floor", "chDB, in memory",
              "the same group by straight from the file, no dedup (the engine's floor)",
              "bench.contenders.chdb_sql", {"dedup": False}, compared=False),
    Contender("chdb_dedup", "chDB, in memory",
              "dedup by GROUP BY event_id (first copy), then the group by",
              "bench.contenders.chdb_sql", {"dedup": True}),
)

BY_NAME = {c.name: c for c in CONTENDERS}

CLOSE = Contender("close", "meterline close",
                  "close of a generated month: ingest it, the 31 nightly rollups, then the "
                  "close (quantities, rating, posting, finalizing) on a SQLite ledger",
                  "bench.contenders.meterline_close", compared=False)
"""Timed once per run with --with-close, not per size (bench/contenders/meterline_close.py)."""
ALL = {**BY_NAME, CLOSE.name: CLOSE}
"""Every contender by name, the close too (what bench/child.py runs)."""
