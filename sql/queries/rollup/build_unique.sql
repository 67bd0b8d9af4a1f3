-- unique_count meters of one UTC day, folded into hourly rows of the staging table: the
-- plain aggregates and the exact set of each row's unique_property values. latest_state
-- and tw_integral are left out (empty state, 0). Same rules as build_counters.sql: FINAL,
-- watermark cap, the meter's filter, rows split by declared dimensions, keys sorted.
INSERT INTO {{staging}}
    (hour, customer_id, meter, dimensions, events, value_sum, value_max, unique_state,
     first_at, max_ingested_at)
SELECT
    toDateTime(intDiv(toUnixTimestamp64Milli(timestamp), 3600000) * 3600, 'UTC') AS hour,
    customer_id,
    meter,
    {{> shared/meter_dimensions}} AS dims,
    count(),
    sum(value),
    max(value),
    -- events without the property count in `events` and add no value
    uniqExactStateIf(properties[unique_property],
                     unique_property != '' AND mapContains(properties, unique_property)),
    min(timestamp),
    max(ingested_at)
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
