-- The customers of {customer_ids} with a reading of a carry-forward meter ({meters}) that
-- some window's run may not have seen (ingested after {since}, the earliest watermark of
-- the windows) dated before {before} (the latest window start), with the earliest such
-- reading's timestamp: where late_carried_by_window.sql must start reading each series.
-- Copies of an event (before a merge folds them) change neither answer: no FINAL.
SELECT customer_id, min(timestamp) AS first_at
FROM usage_events
WHERE customer_id IN {customer_ids:Array(String)}
  AND meter IN {meters:Array(String)}
  AND ingested_at > {since:DateTime64(3, 'UTC')}
  AND timestamp < {before:DateTime64(3, 'UTC')}
GROUP BY customer_id
ORDER BY customer_id
