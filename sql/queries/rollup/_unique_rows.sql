-- Fragment, included as rollup/_unique_rows: the hourly rows of unique_count meters of
-- the events of rollup/_day_events (one UTC day for a build; the days not rolled up yet
-- of one customer for the live usage, quantities/_live_events).
-- The plain aggregates and the exact set of each row's unique_property values. Same
-- rules as rollup/_counter_rows.sql: FINAL, watermark cap, the meter's filter, rows split
-- by declared dimensions, keys sorted.
SELECT
    toDateTime(intDiv(toUnixTimestamp64Milli(timestamp), 3600000) * 3600, 'UTC') AS hour,
    customer_id,
    meter,
    {{> shared/meter_dimensions}} AS dims,
    count() AS events,
    sum(value) AS value_sum,
    max(value) AS value_max,
    -- events without the property count in `events` and add no value
    uniqExactStateIf(properties[unique_property],
                     unique_property != '' AND mapContains(properties, unique_property)) AS unique_state,
    min(timestamp) AS first_at,
    max(ingested_at) AS max_ingested_at
FROM
(
    SELECT
        timestamp, customer_id, meter, value, properties, ingested_at,
        {unique_properties:Map(String, String)}[meter] AS unique_property
    {{> rollup/_day_events}}
      AND meter IN {unique_meters:Array(String)}
      AND {{> shared/matches_meter_filter}}
)
GROUP BY hour, customer_id, meter, dims
