-- What the day's raw table holds before a build: the latest ingest (the watermark the
-- build caps its read at) and the row count before FINAL (compared by dirty_days).
SELECT max(ingested_at) AS watermark, count() AS raw_rows
FROM usage_events
WHERE timestamp >= {day_start:DateTime64(3, 'UTC')}
  AND timestamp < {day_end:DateTime64(3, 'UTC')}
