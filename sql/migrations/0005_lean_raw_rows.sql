-- A leaner raw row (issue 15): columns whose values repeat are dictionary-encoded.
-- customer_id (tens of thousands of customers over hundreds of millions of events), the
-- ingest run's id (one value per batch) and the property keys and values (a few values a
-- meter, by the catalog) as LowCardinality: the insert of a 1M-row batch sorts and
-- writes them as dictionary indices, 0.83 -> 0.38 s (measured side by side on 1M rows of
-- a generated day, the same sort key). Values and sort order are unchanged; existing parts
-- are rewritten by the mutation, which this statement waits for.
ALTER TABLE usage_events
    MODIFY COLUMN customer_id LowCardinality(String),
    MODIFY COLUMN properties Map(LowCardinality(String), LowCardinality(String)),
    MODIFY COLUMN ingest_id LowCardinality(String)
SETTINGS mutations_sync = 2;

ALTER TABLE usage_event_ids
    MODIFY COLUMN ingest_id LowCardinality(String)
SETTINGS mutations_sync = 2;
