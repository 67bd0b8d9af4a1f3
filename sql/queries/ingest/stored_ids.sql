-- How many ids one ingest run has stored in usage_event_ids, to compare with what it
-- counted as accepted so far. A scan of one column (0.1 s for 10M ids): a lookup of the
-- batch's ids along the sort key cost 15 times more, since a batch's ids are spread
-- over every granule.
SELECT count() FROM usage_event_ids WHERE ingest_id = {ingest_id:String}
