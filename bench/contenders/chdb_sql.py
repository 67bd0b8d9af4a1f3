"""chDB (the ClickHouse engine meterline embeds), in memory, straight from the file: the
group by customer, meter, properties and UTC hour of the parsed rows. Without `dedup`
every row counts (duplicates too): the floor of what the engine needs for the group by
alone. With `dedup`, the rows are first grouped by event_id keeping the first copy in
file order (`_row_number`), then grouped as above."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import chdb

from bench.contenders.common import Outcome, file_rows, totals_from

GROUPED = """
SELECT customer_id, meter, properties,
       toStartOfHour(parseDateTime64BestEffort(timestamp, 3, 'UTC')) AS hour,
       count() AS events, sum(toDecimal128(value, 9)) AS value_sum,
       max(toDecimal128(value, 9)) AS value_max
FROM {source}
GROUP BY customer_id, meter, properties, hour
"""
FIRST_COPIES = """(
    SELECT event_id, first.1 AS customer_id, first.2 AS meter, first.3 AS timestamp,
           first.4 AS value, first.5 AS properties
    FROM (
        SELECT event_id,
               argMin((customer_id, meter, timestamp, value, properties), _row_number) AS first
        FROM file({path:String}, Parquet)
        GROUP BY event_id
    )
)"""
# Per meter: events and value sum of the grouped rows, and the rows; and the events kept.
TOTALS = """
SELECT meter, sum(events), toString(sum(value_sum)), count()
FROM ({grouped})
GROUP BY meter
SETTINGS schema_inference_make_columns_nullable = 0
"""


def run(file: Path, work: Path, options: dict[str, Any]) -> Outcome:
    out = Outcome()
    dedup = bool(options.get("dedup"))
    source = FIRST_COPIES if dedup else "file({path:String}, Parquet)"
    sql = TOTALS.format(grouped=GROUPED.format(source=source))
    with out.phase("dedup+group by" if dedup else "group by"):
        result = chdb.query(sql, "JSONCompact", params={"path": str(file)})
    rows = json.loads(result.bytes())["data"]
    out.rows = file_rows(file)
    out.totals = totals_from({meter: (events, value) for meter, events, value, _ in rows})
    out.groups = sum(int(n) for *_, n in rows)
    out.accepted = out.totals.resolutions + out.totals.seat_events if dedup else out.rows
    if not dedup:
        out.notes.append("no dedup: every row counts, duplicates too")
    return out
