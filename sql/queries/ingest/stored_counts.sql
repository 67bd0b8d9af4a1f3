-- How many of a batch's accepted rows are stored under this ingest run, in each table.
-- Both lookups follow the tables' sort keys, so the cost grows with the batch, not with
-- the history.
SELECT
    (SELECT count() FROM usage_events
     WHERE (meter, customer_id, timestamp, event_id) IN
           (SELECT assumeNotNull(meter), assumeNotNull(customer_id), assumeNotNull(timestamp),
                   assumeNotNull(event_id)
            FROM {{classified}} WHERE status = 'accepted')
       AND ingest_id = {ingest_id:String}) AS events,
    (SELECT count() FROM usage_event_ids
     WHERE event_id IN (SELECT assumeNotNull(event_id) FROM {{classified}} WHERE status = 'accepted')
       AND ingest_id = {ingest_id:String}) AS ids
