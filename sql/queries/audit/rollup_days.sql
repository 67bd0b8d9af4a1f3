-- The rollup rows behind one line: one customer's meter over [start, end), per UTC day
-- and dimension group (a month of hourly rows is too many to read one by one).
SELECT
    toDate(hour, 'UTC') AS day,
    mapSort(dimensions) AS dims,
    count() AS rollup_rows,
    sum(events) AS events,
    sum(value_sum) AS value_sum,
    max(max_ingested_at) AS max_ingested_at
FROM usage_rollup
WHERE customer_id = {customer:String}
  AND meter = {meter:String}
  AND hour >= {start:DateTime64(3, 'UTC')}
  AND hour < {end:DateTime64(3, 'UTC')}
GROUP BY day, dims
ORDER BY day, dims
