"""PostgreSQL, as a team with a Postgres database would do it: COPY the file's rows (read
with pyarrow, sent as CSV) into an unlogged staging table numbered in file order, then
INSERT ... ON CONFLICT (event_id) DO NOTHING into an events table keyed by event_id, in
file order (so the first copy wins), with the casts (timestamptz, numeric(38, 9)), then
group by customer, meter, properties and UTC hour into a rollup table. Everything lives
in a scratch schema that is dropped afterwards. Peak memory is this client's only (the
server's is not measured)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg import sql

from bench.contenders.common import Outcome, totals_from

COLUMNS = ("event_id", "customer_id", "meter", "timestamp", "value", "properties")
SETUP = """
CREATE UNLOGGED TABLE staging (
    rn bigint GENERATED ALWAYS AS IDENTITY,
    event_id text, customer_id text, meter text, "timestamp" text, value text, properties text
);
CREATE TABLE usage_events (
    event_id text PRIMARY KEY, customer_id text NOT NULL, meter text NOT NULL,
    ts timestamptz NOT NULL, value numeric(38, 9) NOT NULL, properties text NOT NULL
);
"""
COPY = 'COPY staging (event_id, customer_id, meter, "timestamp", value, properties) FROM STDIN (FORMAT csv)'
INSERT = """
INSERT INTO usage_events
SELECT event_id, customer_id, meter, "timestamp"::timestamptz, value::numeric(38, 9), properties
FROM staging ORDER BY rn
ON CONFLICT (event_id) DO NOTHING
"""
ROLLUP = """
CREATE TABLE usage_rollup AS
SELECT customer_id, meter, properties, date_trunc('hour', ts AT TIME ZONE 'UTC') AS hour,
       count(*) AS events, sum(value) AS value_sum, max(value) AS value_max
FROM usage_events
GROUP BY customer_id, meter, properties, hour
"""
TOTALS = "SELECT meter, sum(events), sum(value_sum)::text, count(*) FROM usage_rollup GROUP BY meter"
BATCH_ROWS = 200_000


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as libpq takes it (postgresql://...)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def run(file: Path, work: Path, options: dict[str, Any]) -> Outcome:
    out = Outcome()
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(options["url"]), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute(SETUP)
            with out.phase("copy"), conn.cursor() as cur, cur.copy(COPY) as copy:
                for batch in pq.ParquetFile(file).iter_batches(BATCH_ROWS, columns=list(COLUMNS)):
                    buffer = io.BytesIO()
                    pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
                    copy.write(buffer.getbuffer())
                    out.rows += batch.num_rows
            with out.phase("insert on conflict"):
                out.accepted = conn.execute(INSERT).rowcount
            with out.phase("group by"):
                conn.execute(ROLLUP)
            rows = conn.execute(TOTALS).fetchall()
            out.totals = totals_from({meter: (events, value) for meter, events, value, _ in rows})
            out.groups = sum(int(n) for *_, n in rows)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return out
