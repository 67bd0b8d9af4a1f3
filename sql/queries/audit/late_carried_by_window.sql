-- Late readings carried into a window: per window (id, customer, start, end, events
-- watermark, stale index: as in late_by_window.sql), the events of a carry-forward meter
-- (latest, time_weighted) dated BEFORE the window that the run behind it did not see and
-- whose value still reaches into the window (DESIGN.md invariant 7). A reading holds its
-- series from its timestamp until the next event of the series (same customer, meter
-- and dimensions, in the order (timestamp, event_id) that raw_gauges.sql uses; the last
-- one read, for ever). Arriving, it changes a time_weighted window when it holds at the
-- window's start (its own span and its predecessor's, cut short by it, both reach into
-- the window), and a latest window when it still holds at the window's end (the last
-- value before the end). Events inside the window are late_by_window.sql's. {from} is the
-- earliest timestamp of a late reading of {customer_ids} (late.py reads it first).
SELECT
    w.1 AS window_id,
    e.meter AS meter,
    count() AS events,
    sum(e.value) AS value_sum,
    max(e.ingested_at) AS last_ingested_at
FROM
(
    SELECT arrayJoin({windows:Array(Tuple(UInt64, String, DateTime64(3, 'UTC'), DateTime64(3, 'UTC'), DateTime64(3, 'UTC'), UInt32))}) AS w
) AS ws
INNER JOIN
(
    SELECT customer_id, meter, timestamp, value, ingested_at, next_at, held
    FROM
    (
        SELECT
            customer_id, meter, timestamp, value, ingested_at,
            -- the next event of the series; the last one holds for ever (held = 0)
            leadInFrame(timestamp, 1, timestamp) OVER series AS next_at,
            leadInFrame(toUInt8(1), 1, toUInt8(0)) OVER series AS held
        FROM
        (
            SELECT
                event_id, customer_id, meter, timestamp, value, ingested_at,
                {{> shared/meter_dimensions}} AS dims
            FROM usage_events FINAL
            WHERE customer_id IN {customer_ids:Array(String)}
              AND meter IN {meters:Array(String)}
              AND timestamp >= {from:DateTime64(3, 'UTC')}
              AND timestamp < {end:DateTime64(3, 'UTC')}
              AND {{> shared/matches_meter_filter}}
        )
        WINDOW series AS (
            PARTITION BY customer_id, meter, dims
            ORDER BY timestamp, event_id
            ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
    )
    WHERE ingested_at > {since:DateTime64(3, 'UTC')}
) AS e ON e.customer_id = ws.w.2
WHERE e.timestamp < w.3
  AND (held = 0
       OR (has({latest_meters:Array(String)}, e.meter) AND e.next_at >= w.4)
       OR (NOT has({latest_meters:Array(String)}, e.meter) AND e.next_at > w.3))
  AND e.ingested_at > if(
      w.6 > 0 AND mapContains({stale:Array(Map(Date, DateTime64(3, 'UTC')))}[w.6], toDate(e.timestamp, 'UTC')),
      {stale:Array(Map(Date, DateTime64(3, 'UTC')))}[w.6][toDate(e.timestamp, 'UTC')],
      w.5)
GROUP BY window_id, meter
ORDER BY window_id, meter
