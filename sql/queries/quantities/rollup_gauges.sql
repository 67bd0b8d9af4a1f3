-- latest and time_weighted meters from the hourly rollup, for many windows in one query
-- (windows, requests, customer_ids, all_customers: as in rollup_window.sql).
-- Per series (window, customer, meter, dimensions) the rows are the window's hours plus
-- one row for the level carried in: the last value before the window's start, however
-- old. Each row's last value is held from the end of its hour (start, for the carried
-- row) until the first event of the next row, or the window's end. So the integral over
-- [start, end) is the sum of the hours' own integrals (first event to hour end) plus
-- those held spans.
-- latest: the last value before end, by (timestamp, event_id), carried over if needed.
-- mapSort: Map equality is positional; keep grouping independent of stored key order.
WITH
    requested AS (
        SELECT
            u.customer_id AS customer_id, u.meter AS meter, mapSort(u.dimensions) AS dims,
            u.hour AS hour, u.events AS events, u.latest_state AS latest_state,
            u.first_at AS first_at, u.tw_integral AS tw_integral,
            if({all_customers:Bool}, toUInt32(1), r.w) AS w,
            {windows:Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC')))}[w] AS window,
            toUnixTimestamp64Milli(window.1) AS start_ms,
            toUnixTimestamp64Milli(window.2) AS end_ms
        FROM
        (
            {{> quantities/_rollup_gauge_rows}}
        ) AS u
        LEFT JOIN
        {{> quantities/_requests}} AS r ON u.customer_id = r.customer_id
    )
SELECT
    w,
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
            PARTITION BY w, customer_id, meter, dims
            ORDER BY hour_end_ms
            ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_first_ms
    FROM
    (
        SELECT
            w, customer_id, meter, dims, start_ms, end_ms,
            toInt64(toUnixTimestamp(hour)) * 1000 + 3600000 AS hour_end_ms,
            sum(events) AS events,
            argMaxMerge(latest_state) AS last_value,
            toUnixTimestamp64Milli(min(first_at)) AS first_ms,
            sum(tw_integral) AS hour_integral
        FROM requested
        WHERE w > 0 AND hour >= window.1 AND hour < window.2
        GROUP BY w, customer_id, meter, dims, start_ms, end_ms, hour
        UNION ALL
        SELECT
            w, customer_id, meter, dims, start_ms, end_ms,
            start_ms AS hour_end_ms,
            toUInt64(0) AS events,
            argMaxMerge(latest_state) AS last_value,
            start_ms AS first_ms,
            toDecimal256(0, 9) AS hour_integral
        FROM requested
        WHERE w > 0 AND hour < window.1
        GROUP BY w, customer_id, meter, dims, start_ms, end_ms
    )
)
GROUP BY w, customer_id, meter, dims
