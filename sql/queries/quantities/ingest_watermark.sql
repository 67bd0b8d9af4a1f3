-- The logical time of the latest committed ingest (the ingest journal, one row per run
-- and state): every event ingested up to it is stored. An ingest still running is not
-- counted. A small table: no scan of usage_events.
SELECT max(ingested_at), count()
FROM ingest_runs
WHERE state = 'committed'
