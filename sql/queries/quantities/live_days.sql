-- The UTC days from {since} ({gauges_since} for latest and time_weighted meters, whose
-- level is carried in from before a window) to before {until} holding events of these
-- customers (ingested up to {watermark}), per kind of meter (`gauge`: latest and
-- time_weighted; else sum, count, max, unique_count), and whether their rollup does not
-- hold those events yet (`unrolled`): the day was never rolled up, or one of them was
-- ingested after the watermark the day's last build read up to (meters/rollup.py). The
-- live usage reads those days from the raw events (meters.quantities.live_cut). Reads only
-- the customers' events, two columns, by the table's sort key (meter, customer_id,
-- timestamp); rollup_state is one row per day.
SELECT e.day AS day, e.gauge AS gauge, s.built = 0 OR e.latest > s.watermark AS unrolled
FROM
(
    SELECT
        toDate(timestamp, 'UTC') AS day,
        has({gauge_meters:Array(String)}, meter) AS gauge,
        max(ingested_at) AS latest
    FROM usage_events
    WHERE meter IN {meters:Array(String)}
      AND customer_id IN {customer_ids:Array(String)}
      AND timestamp < {until:DateTime64(3, 'UTC')}
      AND (timestamp >= {since:DateTime64(3, 'UTC')}
           OR (has({gauge_meters:Array(String)}, meter)
               AND timestamp >= {gauges_since:DateTime64(3, 'UTC')}))
      AND ingested_at <= {watermark:DateTime64(3, 'UTC')}
    GROUP BY day, gauge
) AS e
LEFT JOIN
(
    SELECT day, watermark, toUInt8(1) AS built
    FROM rollup_state FINAL
    WHERE day >= toDate(least({since:DateTime64(3, 'UTC')},
                              {gauges_since:DateTime64(3, 'UTC')}), 'UTC')
      AND day <= toDate({until:DateTime64(3, 'UTC')}, 'UTC')
) AS s ON s.day = e.day
ORDER BY day, gauge
