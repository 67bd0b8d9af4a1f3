-- The hourly rollup's side of window_totals.sql: per billing window, meter and
-- dimension group, the rollup rows and what they say they hold. Windows are whole UTC
-- hours, so each hourly row is wholly inside or outside a window.
SELECT
    w.1 AS window_id,
    r.meter AS meter,
    r.dims AS dims,
    count() AS rollup_rows,
    sum(r.events) AS events,
    sum(r.value_sum) AS value_sum,
    max(r.max_ingested_at) AS max_ingested_at
FROM
(
    SELECT arrayJoin({windows:Array(Tuple(UInt64, String, DateTime64(3, 'UTC'), DateTime64(3, 'UTC')))}) AS w
) AS ws
INNER JOIN
(
    SELECT customer_id, meter, hour, mapSort(dimensions) AS dims, events, value_sum,
           max_ingested_at
    FROM usage_rollup
    WHERE customer_id IN {customer_ids:Array(String)}
      AND hour >= {start:DateTime64(3, 'UTC')}
      AND hour < {end:DateTime64(3, 'UTC')}
      AND meter IN {meters:Array(String)}
) AS r ON r.customer_id = ws.w.2
WHERE r.hour >= w.3 AND r.hour < w.4
GROUP BY window_id, meter, dims
ORDER BY window_id, meter, dims
