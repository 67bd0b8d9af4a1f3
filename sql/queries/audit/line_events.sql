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
        {{> shared/meter_dimensions}} AS dims
    FROM usage_events FINAL
    WHERE customer_id = {customer:String}
      AND meter = {meter:String}
      AND timestamp >= {start:DateTime64(3, 'UTC')}
      AND timestamp < {end:DateTime64(3, 'UTC')}
      AND ingested_at > {since:DateTime64(3, 'UTC')}
      AND {{> shared/matches_meter_filter}}
)
WHERE {{> shared/dims_match_price_filter}}
ORDER BY {order_by_time:Bool} ? toUnixTimestamp64Milli(timestamp) : 0, sipHash64(event_id), event_id
LIMIT {limit:UInt32}
