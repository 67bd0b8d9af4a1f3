-- What the last build of each of these (stale) UTC days read: its watermark (the build
-- read the day's events ingested up to it), the raw rows it counted, and the raw rows now
-- ingested up to that watermark. More rows now than the build counted means events with
-- an ingest time at or before the watermark arrived after the build (an ingest with an
-- earlier or equal clock): the watermark then no longer tells the events it read apart.
SELECT
    s.day AS day,
    s.watermark AS watermark,
    s.raw_rows AS raw_rows,
    countIf(e.ingested_at <= s.watermark) AS rows_now
FROM
(
    SELECT day, watermark, raw_rows
    FROM rollup_state FINAL
    WHERE day IN {days:Array(Date)}
) AS s
LEFT JOIN
(
    SELECT toDate(timestamp, 'UTC') AS day, ingested_at
    FROM usage_events
    WHERE timestamp >= {start:DateTime64(3, 'UTC')}
      AND timestamp < {end:DateTime64(3, 'UTC')}
) AS e ON e.day = s.day
GROUP BY s.day, s.watermark, s.raw_rows
