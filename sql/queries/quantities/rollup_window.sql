-- sum, count, max and unique_count meters from the hourly rollup, for many windows in one
-- query (a close needs one window per anchor day, timezone and price version).
--   windows       the [start, end) windows, numbered from 1 (whole UTC hours, so every
--                 hour row is wholly inside or outside a window);
--   requests      (customer, window number) pairs wanted; customer_ids their customers;
--   all_customers every customer, for window 1 (requests is then empty).
-- mapSort: Map equality is positional; keep grouping independent of stored key order.
SELECT
    w,
    customer_id,
    meter,
    mapSort(dimensions) AS dims,
    sum(events) AS events,
    sum(value_sum) AS value_sum,
    max(value_max) AS value_max,
    uniqExactMerge(unique_state) AS uniques
FROM
(
    SELECT
        u.customer_id AS customer_id, u.meter AS meter, u.dimensions AS dimensions,
        u.hour AS hour, u.events AS events, u.value_sum AS value_sum,
        u.value_max AS value_max, u.unique_state AS unique_state,
        if({all_customers:Bool}, toUInt32(1), r.w) AS w
    FROM
    (
        {{> quantities/_rollup_window_rows}}
    ) AS u
    LEFT JOIN
    {{> quantities/_requests}} AS r ON u.customer_id = r.customer_id
)
WHERE w > 0
  AND hour >= {windows:Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC')))}[w].1
  AND hour < {windows:Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC')))}[w].2
GROUP BY w, customer_id, meter, dims
