-- The same numbers as rollup_gauges.sql, straight from the raw events: every event
-- before end (however old) holds its value from its timestamp until the next event of
-- its series (ordered by timestamp, event_id), the last one forever; each span clipped
-- to [start, end) contributes value x milliseconds.
WITH
    toUnixTimestamp64Milli({start:DateTime64(3, 'UTC')}) AS start_ms,
    toUnixTimestamp64Milli({end:DateTime64(3, 'UTC')}) AS end_ms
SELECT
    customer_id,
    meter,
    dims,
    countIf(at_ms >= start_ms) AS events,
    argMax(value, (timestamp, event_id)) AS latest,
    sum(toDecimal256(value, 9)
        * greatest(0, least(next_ms, end_ms) - greatest(at_ms, start_ms))) AS integral
FROM
(
    SELECT
        *,
        leadInFrame(at_ms, 1, end_ms) OVER (
            PARTITION BY customer_id, meter, dims
            ORDER BY timestamp, event_id
            ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_ms
    FROM
    (
        SELECT
            event_id, customer_id, meter, timestamp, value,
            toUnixTimestamp64Milli(timestamp) AS at_ms,
            mapSort(mapFilter((k, v) -> has({dimensions:Map(String, Array(String))}[meter], k),
                              properties)) AS dims
        FROM usage_events FINAL
        WHERE timestamp < {end:DateTime64(3, 'UTC')}
          AND meter IN {meters:Array(String)}
          AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
          AND arrayAll((k, v) -> mapContains(properties, k) AND properties[k] = v,
                       mapKeys({filters:Map(String, Map(String, String))}[meter]),
                       mapValues({filters:Map(String, Map(String, String))}[meter]))
    )
)
GROUP BY customer_id, meter, dims
