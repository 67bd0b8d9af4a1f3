-- Raw usage per billing window, meter and dimension group, straight from usage_events
-- (FINAL: an event counts once): the first link of the audit chain. A window is
-- (id, customer, start, end), [start, end); the same rules as the rollup build: catalog
-- meters only, the meter's filter, dimensions only from declared dimension properties.
SELECT
    w.1 AS window_id,
    e.meter AS meter,
    e.dims AS dims,
    count() AS events,
    sum(e.value) AS value_sum,
    max(e.ingested_at) AS max_ingested_at
FROM
(
    SELECT arrayJoin({windows:Array(Tuple(UInt64, String, DateTime64(3, 'UTC'), DateTime64(3, 'UTC')))}) AS w
) AS ws
INNER JOIN
(
    SELECT
        customer_id, meter, timestamp, value, ingested_at,
        {{> shared/meter_dimensions}} AS dims
    FROM usage_events FINAL
    WHERE customer_id IN {customer_ids:Array(String)}
      AND timestamp >= {start:DateTime64(3, 'UTC')}
      AND timestamp < {end:DateTime64(3, 'UTC')}
      AND meter IN {meters:Array(String)}
      AND {{> shared/matches_meter_filter}}
) AS e ON e.customer_id = ws.w.2
WHERE e.timestamp >= w.3 AND e.timestamp < w.4
GROUP BY window_id, meter, dims
ORDER BY window_id, meter, dims
