-- The ingest journal: an ingest lands whole or not at all (DESIGN.md invariants 1 and 2).
-- A run is `started` before it writes anything and `committed` after its last batch is
-- stored, verified and logged. A run that stays `started` after its process died (a kill,
-- a lost machine) is rolled back by the next run: its rows are deleted from usage_events,
-- usage_event_ids, usage_events_rejected and ingest_log, so stored events and the log
-- always agree. The latest version of a run's row wins (read with FINAL).
CREATE TABLE IF NOT EXISTS ingest_runs ON CLUSTER meterline_cluster
(
    ingest_id    String,
    -- the ingest's logical time (what its rows carry as ingested_at)
    ingested_at  DateTime64(3, 'UTC'),
    -- the server's clock: a run whose heartbeat is older than the lease is presumed dead
    heartbeat_at DateTime64(3, 'UTC'),
    -- which process runs it (host:pid), for a person reading an interrupted run
    owner        String,
    sources      Array(String),
    -- the range of event timestamps the run may have written, so that a rollback only
    -- touches those partitions of usage_events
    min_ts       DateTime64(3, 'UTC'),
    max_ts       DateTime64(3, 'UTC'),
    -- started | committed | rolled_back
    state        LowCardinality(String),
    version      UInt64
)
ENGINE = ReplicatedReplacingMergeTree(version)
ORDER BY ingest_id;
