-- The nightly rollup's scans for dirty days (meters/rollup.py, docs/rollups.md). A scan
-- covers the late-event lookback and, beyond it, every day the ingests committed (or
-- rolled back) since the previous scan wrote events on, however old: a backfill with
-- `ingest --as-of` is rebuilt by the next nightly rollup. One row per completed scan;
-- the latest (by scanned_at) is the cursor the next scan starts from.
CREATE TABLE IF NOT EXISTS rollup_scans ON CLUSTER meterline_cluster
(
    -- the warehouse's clock when the scan began, before it read the ingest journal: the
    -- next scan reads the runs whose last journal entry is at or after this (minus a margin)
    scanned_at   DateTime64(3, 'UTC'),
    -- the rollup day that ran the scan, and the days [since, up_to] it scanned
    day          Date,
    since        Date,
    up_to        Date,
    -- days after up_to that ingests since the cursor touched, not scanned yet (a rollup of
    -- an older day): the next scan covers [carried_from, carried_to] as well; both
    -- 1970-01-01 when none
    carried_from Date,
    carried_to   Date,
    -- the days the scan found dirty (all rebuilt before this row was written)
    dirty_days   UInt32
)
ENGINE = ReplicatedMergeTree
ORDER BY scanned_at;
