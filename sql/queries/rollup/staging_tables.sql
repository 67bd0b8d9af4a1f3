-- The staging tables of one day's builds (`usage_rollup_staging_YYYYMMDD_<build>`, and
-- an older version's `usage_rollup_staging_YYYYMMDD`) in this database: a build drops
-- those no build of its process is using (meters.rollup.drop_leftover_staging).
SELECT name FROM system.tables
WHERE database = currentDatabase()
  AND startsWith(name, {prefix:String})
ORDER BY name
