-- Fragment, included as quantities/_rollup_gauge_rows: the hourly rollup rows a gauge
-- query of latest and time_weighted meters reads, every hour before the last window's end
-- (a level is carried in from however long ago; the live usage: quantities/_live_gauge_rows).
SELECT customer_id, meter, dimensions, hour, events, latest_state, first_at, tw_integral
FROM usage_rollup
WHERE hour < {last_end:DateTime64(3, 'UTC')}
  AND meter IN {meters:Array(String)}
  AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
