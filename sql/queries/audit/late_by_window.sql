-- Drift since finalization: per billing window (id, customer, start, end, finalized at),
-- the events of the window ingested after its invoice was finalized, per meter.
SELECT
    w.1 AS window_id,
    e.meter AS meter,
    count() AS events,
    sum(e.value) AS value_sum,
    max(e.ingested_at) AS last_ingested_at
FROM
(
    SELECT arrayJoin({windows:Array(Tuple(UInt64, String, DateTime64(3, 'UTC'), DateTime64(3, 'UTC'), DateTime64(3, 'UTC')))}) AS w
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
WHERE e.timestamp >= w.3 AND e.timestamp < w.4 AND e.ingested_at > w.5
GROUP BY window_id, meter
ORDER BY window_id, meter
