-- Events of one customer's meter in [start, end) that count towards one price: the
-- meter's filter, then the price's filter on the dimension group. `since` and `stale`
-- keep only the events a rating run did not see (the late events behind a drift): those
-- ingested after `since`, or on a day of the `stale` map (UTC day -> watermark) after
-- that day's watermark. The epoch and an empty map: every event.
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
      AND ingested_at > if(
          mapContains({stale:Map(Date, DateTime64(3, 'UTC'))}, toDate(timestamp, 'UTC')),
          {stale:Map(Date, DateTime64(3, 'UTC'))}[toDate(timestamp, 'UTC')],
          {since:DateTime64(3, 'UTC')})
      AND {{> shared/matches_meter_filter}}
)
WHERE {{> shared/dims_match_price_filter}}
ORDER BY {order_by_time:Bool} ? toUnixTimestamp64Milli(timestamp) : 0, sipHash64(event_id), event_id
LIMIT {limit:UInt32}
