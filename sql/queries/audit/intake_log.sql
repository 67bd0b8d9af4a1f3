-- The ingest accounting of the ingests received in [start, end), per ingest: what each
-- ingest logged (received = accepted + duplicates + rejected must hold for every one).
SELECT
    ingest_id,
    min(ingested_at) AS first_ingested_at,
    groupUniqArray(source) AS sources,
    sum(received) AS received,
    sum(accepted) AS accepted,
    sum(duplicates) AS duplicates,
    sum(rejected) AS rejected,
    sumMap(rejected_by_reason) AS rejected_by_reason
FROM ingest_log
WHERE ingested_at >= {start:DateTime64(3, 'UTC')}
  AND ingested_at < {end:DateTime64(3, 'UTC')}
GROUP BY ingest_id
ORDER BY first_ingested_at, ingest_id
