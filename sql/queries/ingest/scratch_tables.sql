-- Scratch tables of ingest batches (`_ingest_<run>_<batch>_staging|validated|classified`) in this
-- database, and the engine's temporary tables of a CREATE ... AS SELECT that a kill cut
-- short (`_tmp_replace_...`), to remove those no live run uses.
SELECT name FROM system.tables
WHERE database = currentDatabase()
  AND (startsWith(name, '_ingest_') OR startsWith(name, '_tmp_replace_'))
ORDER BY name
