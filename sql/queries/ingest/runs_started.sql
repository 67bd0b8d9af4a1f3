-- Runs that began and neither committed nor were rolled back, with whether their last
-- heartbeat is older than the lease (the run is then presumed dead).
SELECT ingest_id, ingested_at, owner, sources, min_ts, max_ts,
       heartbeat_at < now64(3, 'UTC') - toIntervalSecond({lease_s:UInt32}) AS expired
FROM ingest_runs FINAL
WHERE state = 'started'
ORDER BY ingest_id
