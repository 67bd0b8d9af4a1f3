-- What each rating run saw, per hour: per window (id, customer, start, end, events
-- watermark, stale index), the window's events of sum and count meters that the run
-- behind it saw, per meter, dimension group and UTC hour. The run saw every event
-- ingested up to its events watermark, except on its stale days (the map {stale}[index],
-- UTC day -> watermark; index 0: none), where it saw those ingested up to the day's own
-- watermark (DESIGN.md invariant 7; the rule of audit/late_by_window). Revenue
-- recognition places an adjustment for late usage on the days of the events its run saw
-- and the run before it did not (docs/revrec.md, "Adjustments"). Same rules as the
-- rollup: FINAL, catalog meters only, the meter's filter, declared dimensions only.
SELECT
    w.1 AS window_id,
    e.meter AS meter,
    e.dims AS dims,
    toDateTime64(toStartOfHour(e.timestamp), 3, 'UTC') AS hour,
    count() AS events,
    sum(e.value) AS value_sum
FROM
(
    SELECT arrayJoin({windows:Array(Tuple(UInt64, String, DateTime64(3, 'UTC'), DateTime64(3, 'UTC'), DateTime64(3, 'UTC'), UInt32))}) AS w
) AS ws
INNER JOIN
(
    SELECT customer_id, meter, timestamp, value, ingested_at,
           {{> shared/meter_dimensions}} AS dims
    FROM usage_events FINAL
    WHERE customer_id IN {customer_ids:Array(String)}
      AND timestamp >= {start:DateTime64(3, 'UTC')}
      AND timestamp < {end:DateTime64(3, 'UTC')}
      AND meter IN {meters:Array(String)}
      AND {{> shared/matches_meter_filter}}
) AS e ON e.customer_id = ws.w.2
WHERE e.timestamp >= w.3 AND e.timestamp < w.4
  AND e.ingested_at <= if(
      w.6 > 0 AND mapContains({stale:Array(Map(Date, DateTime64(3, 'UTC')))}[w.6], toDate(e.timestamp, 'UTC')),
      {stale:Array(Map(Date, DateTime64(3, 'UTC')))}[w.6][toDate(e.timestamp, 'UTC')],
      w.5)
GROUP BY window_id, meter, dims, hour
ORDER BY window_id, meter, hour
