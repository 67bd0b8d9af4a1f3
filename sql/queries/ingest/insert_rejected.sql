INSERT INTO usage_events_rejected
    (ingest_id, ingested_at, source, source_line, event_id, customer_id, meter, reason, detail, raw)
SELECT {ingest_id:String}, {ingested_at:DateTime64(3, 'UTC')}, source, source_line,
       event_id, customer_id, meter, reason, detail, raw
FROM {{classified}}
WHERE status = 'rejected'
