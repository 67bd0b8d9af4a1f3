INSERT INTO ingest_log
    (ingest_id, ingested_at, source, received, accepted, duplicates, rejected, rejected_by_reason)
VALUES
    ({ingest_id:String}, {ingested_at:DateTime64(3, 'UTC')}, {source:String}, {received:UInt64},
     {accepted:UInt64}, {duplicates:UInt64}, {rejected:UInt64}, {by_reason:Map(String, UInt64)})
