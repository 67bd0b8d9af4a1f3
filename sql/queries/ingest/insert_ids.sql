INSERT INTO usage_event_ids (event_id, content_hash, timestamp, ingested_at, ingest_id)
SELECT assumeNotNull(event_id), content_hash, assumeNotNull(timestamp),
       {ingested_at:DateTime64(3, 'UTC')}, {ingest_id:String}
FROM {{classified}}
WHERE status = 'accepted'
