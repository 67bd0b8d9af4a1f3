-- Days up to {up_to} whose events changed since they were last rolled up: events but no
-- rollup_state row, events ingested after the recorded watermark, or a different number
-- of raw rows than the build saw (rows ingested with an earlier clock, or removed), or,
-- when asked, a different catalog definition. Reads two columns of usage_events
-- (timestamp, ingested_at) for the days in range; rollup_state is one row per day.
SELECT day
FROM
(
    SELECT
        toDate(timestamp, 'UTC') AS day,
        max(ingested_at) AS latest_ingest,
        count() AS raw_rows,
        toDateTime64(0, 3, 'UTC') AS watermark,
        toUInt64(0) AS recorded_rows,
        toUInt8(0) AS built,
        '' AS definitions_hash
    FROM usage_events
    WHERE timestamp >= {since:DateTime64(3, 'UTC')}
      AND timestamp < {until:DateTime64(3, 'UTC')}
    GROUP BY day
    UNION ALL
    SELECT
        day,
        toDateTime64(0, 3, 'UTC'),
        toUInt64(0),
        watermark,
        raw_rows,
        toUInt8(1),
        definitions_hash
    FROM rollup_state FINAL
    WHERE day >= toDate({since:DateTime64(3, 'UTC')}, 'UTC')
      AND day < toDate({until:DateTime64(3, 'UTC')}, 'UTC')
)
GROUP BY day
HAVING (max(built) = 0 AND max(raw_rows) > 0)
    OR (max(built) = 1 AND max(latest_ingest) > max(watermark))
    OR (max(built) = 1 AND max(raw_rows) != max(recorded_rows))
    OR (max(built) = 1 AND {definitions_hash:String} != ''
        AND maxIf(definitions_hash, built = 1) != {definitions_hash:String})
ORDER BY day
