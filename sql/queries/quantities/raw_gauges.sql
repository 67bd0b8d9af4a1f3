-- The same numbers as rollup_gauges.sql, straight from the raw events: every event
-- before the window's end (however old) holds its value from its timestamp until the
-- next event of its series (ordered by timestamp, event_id), the last one forever; each
-- span clipped to [start, end) contributes value x milliseconds. windows, requests,
-- customer_ids, all_customers: as in rollup_window.sql.
SELECT
    w,
    customer_id,
    meter,
    dims,
    countIf(at_ms >= start_ms) AS events,
    argMax(value, (timestamp, event_id)) AS latest,
    sum(toDecimal256(value, 9)
        * greatest(0, least(next_ms, end_ms) - greatest(at_ms, start_ms))) AS integral
FROM
(
    SELECT
        *,
        leadInFrame(at_ms, 1, end_ms) OVER (
            PARTITION BY w, customer_id, meter, dims
            ORDER BY timestamp, event_id
            ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_ms
    FROM
    (
        SELECT
            e.event_id AS event_id, e.customer_id AS customer_id, e.meter AS meter,
            e.timestamp AS timestamp, e.value AS value, e.at_ms AS at_ms, e.dims AS dims,
            if({all_customers:Bool}, toUInt32(1), r.w) AS w,
            {windows:Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC')))}[w] AS window,
            toUnixTimestamp64Milli(window.1) AS start_ms,
            toUnixTimestamp64Milli(window.2) AS end_ms
        FROM
        (
            SELECT
                event_id, customer_id, meter, timestamp, value,
                toUnixTimestamp64Milli(timestamp) AS at_ms,
                {{> shared/meter_dimensions}} AS dims
            FROM usage_events FINAL
            WHERE timestamp < {last_end:DateTime64(3, 'UTC')}
          {{> quantities/_raw_selection}}
        ) AS e
        LEFT JOIN
        {{> quantities/_requests}} AS r ON e.customer_id = r.customer_id
        WHERE w > 0 AND e.timestamp < window.2
    )
)
GROUP BY w, customer_id, meter, dims
