-- Raw usage events: the facts every amount is derived from.
-- One partition per UTC day: rollups rebuild one day at a time and read exactly that
-- partition. ReplacingMergeTree on a sort key that ends in event_id folds an exact
-- re-insert (a crash between two inserts of one batch) when merged or read with FINAL;
-- the insert-deduplication window makes a retried batch a no-op at insert time.
CREATE TABLE IF NOT EXISTS usage_events ON CLUSTER meterline_cluster
(
    event_id     String,
    customer_id  String,
    meter        LowCardinality(String),
    timestamp    DateTime64(3, 'UTC'),
    value        Decimal(38, 9),
    properties   Map(LowCardinality(String), String),
    source       LowCardinality(String),
    source_line  UInt64,
    content_hash UInt64,
    ingested_at  DateTime64(3, 'UTC'),
    ingest_id    String
)
ENGINE = ReplicatedReplacingMergeTree
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (meter, customer_id, timestamp, event_id)
SETTINGS replicated_deduplication_window = 1000;

-- The idempotency index: one row per accepted event_id with the hash of its content.
-- Sorted by event_id so that an ingest batch looks up only the ids it carries.
CREATE TABLE IF NOT EXISTS usage_event_ids ON CLUSTER meterline_cluster
(
    event_id     String,
    content_hash UInt64,
    timestamp    DateTime64(3, 'UTC'),
    ingested_at  DateTime64(3, 'UTC'),
    ingest_id    String
)
ENGINE = ReplicatedReplacingMergeTree
ORDER BY event_id
SETTINGS replicated_deduplication_window = 1000;

-- Every row that was not accepted and not an exact duplicate, with what a person needs
-- to act on it: the raw payload, where it came from, and why it was refused.
CREATE TABLE IF NOT EXISTS usage_events_rejected ON CLUSTER meterline_cluster
(
    ingest_id    String,
    ingested_at  DateTime64(3, 'UTC'),
    source       String,
    source_line  UInt64,
    event_id     Nullable(String),
    customer_id  Nullable(String),
    meter        Nullable(String),
    reason       LowCardinality(String),
    detail       String,
    raw          String
)
ENGINE = ReplicatedMergeTree
PARTITION BY toYYYYMM(ingested_at)
ORDER BY (ingested_at, source, source_line)
SETTINGS replicated_deduplication_window = 1000;

-- One row per (ingest, source): the accounting that must always balance,
-- received = accepted + duplicates + rejected.
CREATE TABLE IF NOT EXISTS ingest_log ON CLUSTER meterline_cluster
(
    ingest_id          String,
    ingested_at        DateTime64(3, 'UTC'),
    source             String,
    received           UInt64,
    accepted           UInt64,
    duplicates         UInt64,
    rejected           UInt64,
    rejected_by_reason Map(String, UInt64)
)
ENGINE = ReplicatedMergeTree
ORDER BY (ingested_at, ingest_id, source);
