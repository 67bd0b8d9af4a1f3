-- One customer's usage per local day (in the customer's timezone) over [start, end), per
-- meter and dimension group: the statement's daily chart. Same rules as the rollup:
-- FINAL, catalog meters only, the meter's filter, declared dimensions only.
SELECT
    toDate(timestamp, {timezone:String}) AS day,
    meter,
    {{> shared/meter_dimensions}} AS dims,
    count() AS events,
    sum(value) AS value_sum
FROM usage_events FINAL
WHERE customer_id = {customer:String}
  AND timestamp >= {start:DateTime64(3, 'UTC')}
  AND timestamp < {end:DateTime64(3, 'UTC')}
  AND meter IN {meters:Array(String)}
  AND {{> shared/matches_meter_filter}}
GROUP BY day, meter, dims
ORDER BY day, meter, dims
