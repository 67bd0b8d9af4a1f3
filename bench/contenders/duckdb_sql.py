"""DuckDB, as a Python team would use it for the same job: load the file with casts
(timestamp parsed, value as DECIMAL(38,9)), keep the first copy of each event id (in
file order) that is not already stored, store it, then group by customer, meter,
properties and UTC hour into a rollup table. With `persist` the database is a file
(checkpointed at the end, so the file holds everything); without, it is in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from bench.contenders.common import Outcome, file_rows, totals_from

CREATE = """
CREATE TABLE usage_events (
    event_id VARCHAR, customer_id VARCHAR, meter VARCHAR, ts TIMESTAMP,
    value DECIMAL(38, 9), properties VARCHAR
)
"""
# First copy in file order wins; ids already stored are skipped.
LOAD = """
INSERT INTO usage_events
SELECT event_id, customer_id, meter, CAST("timestamp" AS TIMESTAMP),
       CAST(value AS DECIMAL(38, 9)), properties
FROM read_parquet($file, file_row_number = true) AS f
WHERE NOT EXISTS (SELECT 1 FROM usage_events AS e WHERE e.event_id = f.event_id)
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY file_row_number) = 1
"""
ROLLUP = """
CREATE TABLE usage_rollup AS
SELECT customer_id, meter, properties, date_trunc('hour', ts) AS hour,
       count(*) AS events, sum(value) AS value_sum, max(value) AS value_max
FROM usage_events
GROUP BY customer_id, meter, properties, hour
"""
TOTALS = "SELECT meter, sum(events), CAST(sum(value_sum) AS VARCHAR), count(*) FROM usage_rollup GROUP BY meter"


def run(file: Path, work: Path, options: dict[str, Any]) -> Outcome:
    out = Outcome()
    persist = bool(options.get("persist"))
    database = work / "bench.duckdb"
    for leftover in (database, database.with_suffix(".duckdb.wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect(str(database) if persist else ":memory:")
    try:
        con.execute(CREATE)
        with out.phase("load+dedup"):
            con.execute(LOAD, {"file": str(file)})
            (inserted,) = con.fetchone() or (0,)
        with out.phase("group by"):
            con.execute(ROLLUP)
        if persist:
            with out.phase("checkpoint"):
                con.execute("CHECKPOINT")
        out.rows, out.accepted = file_rows(file), int(inserted)
        rows = con.execute(TOTALS).fetchall()
        out.totals = totals_from({meter: (events, value) for meter, events, value, _ in rows})
        out.groups = sum(int(n) for *_, n in rows)
    finally:
        con.close()
    return out
