-- sum, count, max and unique_count meters over [start, end) from the hourly rollup.
-- start and end are whole UTC hours, so every hour row is wholly inside or outside.
-- mapSort: Map equality is positional; keep grouping independent of stored key order.
SELECT
    customer_id,
    meter,
    mapSort(dimensions) AS dims,
    sum(events) AS events,
    sum(value_sum) AS value_sum,
    max(value_max) AS value_max,
    uniqExactMerge(unique_state) AS uniques
FROM usage_rollup
WHERE hour >= {start:DateTime64(3, 'UTC')}
  AND hour < {end:DateTime64(3, 'UTC')}
  AND meter IN {meters:Array(String)}
  AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
GROUP BY customer_id, meter, dims
