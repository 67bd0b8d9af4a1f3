-- The event days written (or removed) by the ingests whose journal entry changed at or
-- after {since}: runs committed or rolled back since the previous scan. min_ts/max_ts are
-- the accepted events' timestamps (meters/ingest/journal.py); a run that accepted nothing
-- keeps the epoch and is skipped. One row per run, earliest day first.
SELECT
    ingest_id,
    toDate(min_ts, 'UTC') AS first_day,
    toDate(max_ts, 'UTC') AS last_day
FROM ingest_runs FINAL
WHERE state IN ('committed', 'rolled_back')
  AND heartbeat_at >= {since:DateTime64(3, 'UTC')}
  AND max_ts > toDateTime64(0, 3, 'UTC')
ORDER BY first_day, ingest_id
