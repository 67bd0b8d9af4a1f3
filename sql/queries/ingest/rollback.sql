-- Remove everything an interrupted ingest run wrote. Lightweight deletes: each statement
-- is idempotent, so a rollback interrupted in turn is simply run again. usage_events is
-- limited to the timestamps the run recorded before it inserted anything (as milliseconds:
-- ClickHouse 26 fails to bind a DateTime64 parameter inside a DELETE's predicate).
DELETE FROM usage_events
WHERE timestamp >= fromUnixTimestamp64Milli({min_ms:Int64}, 'UTC')
  AND timestamp <= fromUnixTimestamp64Milli({max_ms:Int64}, 'UTC')
  AND ingest_id = {ingest_id:String};
DELETE FROM usage_event_ids WHERE ingest_id = {ingest_id:String};
DELETE FROM usage_events_rejected WHERE ingest_id = {ingest_id:String};
DELETE FROM ingest_log WHERE ingest_id = {ingest_id:String};
