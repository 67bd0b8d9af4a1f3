-- Events of one customer's meter in [start, end) that count towards one price: the
-- meter's filter, then the price's filter on the dimension group. `since` keeps only
-- events ingested after it (the late events behind a drift; the epoch for all of them).
-- Ordered by a hash of the event id: a spread-out, repeatable sample, not the first
-- minutes of the window. `total` and `total_value` count every matching event.
SELECT
    event_id,
    timestamp,
    value,
    dims,
    ingested_at,
    source,
    count() OVER () AS total,
    sum(value) OVER () AS total_value
FROM
(
    SELECT
        event_id, timestamp, value, ingested_at, source,
        mapSort(mapFilter((k, v) -> has({dimensions:Array(String)}, k), properties)) AS dims
    FROM usage_events FINAL
    WHERE customer_id = {customer:String}
      AND meter = {meter:String}
      AND timestamp >= {start:DateTime64(3, 'UTC')}
      AND timestamp < {end:DateTime64(3, 'UTC')}
      AND ingested_at > {since:DateTime64(3, 'UTC')}
      AND arrayAll((k, v) -> mapContains(properties, k) AND properties[k] = v,
                   mapKeys({meter_filter:Map(String, String)}),
                   mapValues({meter_filter:Map(String, String)}))
)
WHERE arrayAll((k, v) -> mapContains(dims, k) AND dims[k] = v,
               mapKeys({price_filter:Map(String, String)}),
               mapValues({price_filter:Map(String, String)}))
ORDER BY {order_by_time:Bool} ? toUnixTimestamp64Milli(timestamp) : 0, sipHash64(event_id), event_id
LIMIT {limit:UInt32}
