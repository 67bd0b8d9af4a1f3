-- Per source: how many rows were accepted, duplicates, or rejected for each reason, and
-- the range of the accepted rows' timestamps (recorded in the ingest journal before the
-- rows are inserted, so that a rollback knows which partitions to look in).
SELECT source, status, reason, count() AS n,
       min(assumeNotNull(timestamp)) AS min_ts, max(assumeNotNull(timestamp)) AS max_ts
FROM {{classified}}
GROUP BY source, status, reason
ORDER BY source, status, reason
