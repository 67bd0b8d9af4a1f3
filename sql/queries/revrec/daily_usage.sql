-- Usage per customer, meter, dimension group and local day over [start, end), from the
-- hourly rollup: the days revenue recognition places usage revenue on (docs/revrec.md,
-- "Usage"). One timezone per query ({timezone}: the customers'); a local day is made of
-- whole UTC hours in every whole-hour timezone, so each hour row lies in one day. Only
-- sum and count meters are asked for: their events and value sums add up over hours.
-- mapSort: Map equality is positional; keep grouping independent of stored key order.
SELECT
    customer_id,
    meter,
    mapSort(dimensions) AS dims,
    toDate(hour, {timezone:String}) AS day,
    sum(events) AS events,
    sum(value_sum) AS value_sum
FROM usage_rollup
WHERE hour >= {start:DateTime64(3, 'UTC')}
  AND hour < {end:DateTime64(3, 'UTC')}
  AND meter IN {meters:Array(String)}
  AND customer_id IN {customer_ids:Array(String)}
GROUP BY customer_id, meter, dims, day
ORDER BY customer_id, meter, day
