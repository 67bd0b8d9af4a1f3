INSERT INTO usage_events
    (event_id, customer_id, meter, timestamp, value, properties, source, source_line,
     content_hash, ingested_at, ingest_id)
SELECT assumeNotNull(event_id), assumeNotNull(customer_id), assumeNotNull(meter),
       assumeNotNull(timestamp), assumeNotNull(value), properties, event_source, source_line,
       content_hash, {ingested_at:DateTime64(3, 'UTC')}, {ingest_id:String}
FROM {{classified}}
WHERE status = 'accepted'
