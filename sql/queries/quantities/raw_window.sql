-- The same numbers as rollup_window.sql, straight from the raw events (no rollup): the
-- audit path and the rollup's test oracle. Same rules as rollup/build.sql: FINAL, the
-- meter's filter, dimensions only from declared dimension properties.
SELECT
    customer_id,
    meter,
    mapSort(mapFilter((k, v) -> has({dimensions:Map(String, Array(String))}[meter], k),
                      properties)) AS dims,
    count() AS events,
    sum(value) AS value_sum,
    max(value) AS value_max,
    uniqExactIf(properties[unique_property],
                unique_property != '' AND mapContains(properties, unique_property)) AS uniques
FROM
(
    SELECT customer_id, meter, value, properties,
           {unique_properties:Map(String, String)}[meter] AS unique_property
    FROM usage_events FINAL
    WHERE timestamp >= {start:DateTime64(3, 'UTC')}
      AND timestamp < {end:DateTime64(3, 'UTC')}
      AND meter IN {meters:Array(String)}
      AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
      AND arrayAll((k, v) -> mapContains(properties, k) AND properties[k] = v,
                   mapKeys({filters:Map(String, Map(String, String))}[meter]),
                   mapValues({filters:Map(String, Map(String, String))}[meter]))
)
GROUP BY customer_id, meter, dims
