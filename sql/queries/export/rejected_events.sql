-- The data-lake export's rejected events of a month: the rows ingested in it (UTC) and
-- rejected, one per (ingest, source, line) (a retried insert of the same batch is the
-- same row).
SELECT
    ingest_id,
    source,
    source_line,
    ingested_at,
    event_id,
    customer_id,
    meter,
    toString(reason) AS reason,
    detail,
    raw
FROM usage_events_rejected
WHERE ingested_at >= {start:DateTime64(3, 'UTC')}
  AND ingested_at < {end:DateTime64(3, 'UTC')}
ORDER BY ingest_id, source, source_line
LIMIT 1 BY ingest_id, source, source_line
