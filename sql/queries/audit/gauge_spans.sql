-- A gauge meter's levels for one customer and price over [start, end): each event before
-- `end` holds its value from its timestamp until the next event of its series (by
-- timestamp, then event_id), the last one until `end`; spans are clipped to the window,
-- and only those that reach into it are returned (the level carried in at `start`
-- included). The same rule as quantities/raw_gauges.sql, one span per event.
WITH
    toUnixTimestamp64Milli({start:DateTime64(3, 'UTC')}) AS start_ms,
    toUnixTimestamp64Milli({end:DateTime64(3, 'UTC')}) AS end_ms
SELECT
    dims,
    event_id,
    timestamp,
    value,
    ingested_at,
    greatest(at_ms, start_ms) AS from_ms,
    least(next_ms, end_ms) AS to_ms
FROM
(
    SELECT
        *,
        leadInFrame(at_ms, 1, end_ms) OVER (
            PARTITION BY dims
            ORDER BY timestamp, event_id
            ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_ms
    FROM
    (
        SELECT
            event_id, timestamp, value, ingested_at,
            toUnixTimestamp64Milli(timestamp) AS at_ms,
            {{> shared/meter_dimensions}} AS dims
        FROM usage_events FINAL
        WHERE customer_id = {customer:String}
          AND meter = {meter:String}
          AND timestamp < {end:DateTime64(3, 'UTC')}
          AND {{> shared/matches_meter_filter}}
    )
    WHERE {{> shared/dims_match_price_filter}}
)
WHERE next_ms > start_ms
ORDER BY dims, timestamp, event_id
