-- The same numbers as rollup_window.sql, straight from the raw events (no rollup): the
-- audit path and the rollup's test oracle. Same rules as rollup/build.sql: FINAL, the
-- meter's filter, dimensions only from declared dimension properties. windows,
-- requests, customer_ids, all_customers: as in rollup_window.sql.
SELECT
    w,
    customer_id,
    meter,
    {{> shared/meter_dimensions}} AS dims,
    count() AS events,
    sum(value) AS value_sum,
    max(value) AS value_max,
    uniqExactIf(properties[unique_property],
                unique_property != '' AND mapContains(properties, unique_property)) AS uniques
FROM
(
    SELECT
        e.customer_id AS customer_id, e.meter AS meter, e.timestamp AS timestamp,
        e.value AS value, e.properties AS properties,
        {unique_properties:Map(String, String)}[meter] AS unique_property,
        if({all_customers:Bool}, toUInt32(1), r.w) AS w
    FROM
    (
        SELECT customer_id, meter, timestamp, value, properties
        FROM usage_events FINAL
        WHERE timestamp >= {first_start:DateTime64(3, 'UTC')}
          AND timestamp < {last_end:DateTime64(3, 'UTC')}
          {{> quantities/_raw_selection}}
    ) AS e
    LEFT JOIN
    {{> quantities/_requests}} AS r ON e.customer_id = r.customer_id
)
WHERE w > 0
  AND timestamp >= {windows:Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC')))}[w].1
  AND timestamp < {windows:Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC')))}[w].2
GROUP BY w, customer_id, meter, dims
