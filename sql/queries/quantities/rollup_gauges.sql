-- latest and time_weighted meters over [start, end) from the hourly rollup.
-- Per series (customer, meter, dimensions) the rows are the window's hours plus one row
-- for the level carried in: the last value before start, however old. Each row's last
-- value is held from the end of its hour (start, for the carried row) until the first
-- event of the next row, or the window's end. So the integral over [start, end) is the
-- sum of the hours' own integrals (first event to hour end) plus those held spans.
-- latest: the last value before end, by (timestamp, event_id), carried over if needed.
-- mapSort: Map equality is positional; keep grouping independent of stored key order.
WITH
    toUnixTimestamp64Milli({start:DateTime64(3, 'UTC')}) AS start_ms,
    toUnixTimestamp64Milli({end:DateTime64(3, 'UTC')}) AS end_ms
SELECT
    customer_id,
    meter,
    dims,
    sum(events) AS events,
    argMax(last_value, hour_end_ms) AS latest,
    sum(hour_integral)
        + sum(toDecimal256(last_value, 9)
              * greatest(0, least(next_first_ms, end_ms) - greatest(hour_end_ms, start_ms)))
        AS integral
FROM
(
    SELECT
        *,
        leadInFrame(first_ms, 1, end_ms) OVER (
            PARTITION BY customer_id, meter, dims
            ORDER BY hour_end_ms
            ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_first_ms
    FROM
    (
        SELECT
            customer_id,
            meter,
            mapSort(dimensions) AS dims,
            toInt64(toUnixTimestamp(hour)) * 1000 + 3600000 AS hour_end_ms,
            sum(events) AS events,
            argMaxMerge(latest_state) AS last_value,
            toUnixTimestamp64Milli(min(first_at)) AS first_ms,
            sum(tw_integral) AS hour_integral
        FROM usage_rollup
        WHERE hour >= {start:DateTime64(3, 'UTC')}
          AND hour < {end:DateTime64(3, 'UTC')}
          AND meter IN {meters:Array(String)}
          AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
        GROUP BY customer_id, meter, dims, hour
        UNION ALL
        SELECT
            customer_id,
            meter,
            mapSort(dimensions) AS dims,
            start_ms AS hour_end_ms,
            toUInt64(0) AS events,
            argMaxMerge(latest_state) AS last_value,
            start_ms AS first_ms,
            toDecimal256(0, 9) AS hour_integral
        FROM usage_rollup
        WHERE hour < {start:DateTime64(3, 'UTC')}
          AND meter IN {meters:Array(String)}
          AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
        GROUP BY customer_id, meter, dims
    )
)
GROUP BY customer_id, meter, dims
