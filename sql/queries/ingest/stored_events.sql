-- How many rows one ingest run has stored in usage_events (read in the partitions of the
-- timestamps it recorded before inserting), to compare, before the run commits, with
-- what it counted as accepted.
SELECT count() FROM usage_events
WHERE timestamp >= {min_ts:DateTime64(3, 'UTC')} AND timestamp <= {max_ts:DateTime64(3, 'UTC')}
  AND ingest_id = {ingest_id:String}
