-- What an ingest run has stored so far, to compare with what it counted as accepted:
-- its rows in usage_events (every one, read in the partitions of the timestamps it
-- recorded before inserting), and the rows of this batch's accepted ids in
-- usage_event_ids (a lookup along that table's sort key, so the cost grows with the
-- batch, not with the history).
SELECT
    (SELECT count() FROM usage_events
     WHERE timestamp >= {min_ts:DateTime64(3, 'UTC')} AND timestamp <= {max_ts:DateTime64(3, 'UTC')}
       AND ingest_id = {ingest_id:String}) AS run_events,
    (SELECT count() FROM usage_event_ids
     WHERE event_id IN (SELECT assumeNotNull(event_id) FROM {{classified}} WHERE status = 'accepted')
       AND ingest_id = {ingest_id:String}) AS batch_ids
