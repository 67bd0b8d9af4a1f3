-- Scratch tables of ingest batches (`_ingest_<run>_<batch>_staging|classified`) in this
-- database, to remove those of runs that are no longer alive.
SELECT name FROM system.tables
WHERE database = currentDatabase() AND startsWith(name, '_ingest_')
ORDER BY name
