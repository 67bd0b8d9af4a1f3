-- Late events: per window (id, customer, start, end, events watermark, stale index), the
-- events of the window that the rating run behind it did not see, per meter. The run saw
-- every event ingested up to its events watermark, except on its stale days (the map
-- {stale}[index], UTC day -> watermark; index 0: none), where it saw those ingested up
-- to the day's own watermark (DESIGN.md invariant 7).
SELECT
    w.1 AS window_id,
    e.meter AS meter,
    count() AS events,
    sum(e.value) AS value_sum,
    max(e.ingested_at) AS last_ingested_at
FROM
(
    SELECT arrayJoin({windows:Array(Tuple(UInt64, String, DateTime64(3, 'UTC'), DateTime64(3, 'UTC'), DateTime64(3, 'UTC'), UInt32))}) AS w
) AS ws
INNER JOIN
(
    SELECT customer_id, meter, timestamp, value, ingested_at
    FROM usage_events FINAL
    WHERE customer_id IN {customer_ids:Array(String)}
      AND timestamp >= {start:DateTime64(3, 'UTC')}
      AND timestamp < {end:DateTime64(3, 'UTC')}
      AND ingested_at > {since:DateTime64(3, 'UTC')}
) AS e ON e.customer_id = ws.w.2
WHERE e.timestamp >= w.3 AND e.timestamp < w.4
  AND e.ingested_at > if(
      w.6 > 0 AND mapContains({stale:Array(Map(Date, DateTime64(3, 'UTC')))}[w.6], toDate(e.timestamp, 'UTC')),
      {stale:Array(Map(Date, DateTime64(3, 'UTC')))}[w.6][toDate(e.timestamp, 'UTC')],
      w.5)
GROUP BY window_id, meter
ORDER BY window_id, meter
