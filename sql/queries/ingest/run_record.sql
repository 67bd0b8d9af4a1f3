-- One state change of an ingest run (sql/migrations/0003_ingest_runs.sql). The heartbeat
-- is the server's clock, so that runs on several hosts are judged by one clock.
INSERT INTO ingest_runs
    (ingest_id, ingested_at, heartbeat_at, owner, sources, min_ts, max_ts, state, version)
SELECT
    {ingest_id:String},
    {ingested_at:DateTime64(3, 'UTC')},
    now64(3, 'UTC'),
    {owner:String},
    {sources:Array(String)},
    {min_ts:DateTime64(3, 'UTC')},
    {max_ts:DateTime64(3, 'UTC')},
    {state:String},
    (SELECT max(version) FROM ingest_runs WHERE ingest_id = {ingest_id:String}) + 1
