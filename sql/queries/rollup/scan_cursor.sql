-- The latest completed dirty-day scan (sql/migrations/0004_rollup_scans.sql), and the
-- warehouse's clock now: the cursor of the scan about to start. scans = 0 before the first.
SELECT
    now64(3, 'UTC') AS now,
    count() AS scans,
    max(scanned_at) AS previous,
    argMax(carried_from, scanned_at) AS carried_from,
    argMax(carried_to, scanned_at) AS carried_to
FROM rollup_scans
