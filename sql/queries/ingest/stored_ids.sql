-- How many of one batch's accepted ids are stored under its ingest run in
-- usage_event_ids (a lookup along that table's sort key, so the cost grows with the
-- batch, not with the history), to compare with what the batch counted as accepted.
SELECT count() FROM usage_event_ids
WHERE event_id IN (SELECT assumeNotNull(event_id) FROM {{classified}} WHERE status = 'accepted')
  AND ingest_id = {ingest_id:String}
