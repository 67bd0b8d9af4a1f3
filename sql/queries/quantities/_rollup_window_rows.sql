-- Fragment, included as quantities/_rollup_window_rows: the hourly rollup rows a window
-- query of sum, count, max and unique_count meters reads (the live usage reads these
-- where the rollup is complete, and the rollup's own rows of the raw events elsewhere:
-- quantities/_live_window_rows).
SELECT customer_id, meter, dimensions, hour, events, value_sum, value_max, unique_state
FROM usage_rollup
WHERE hour >= {first_start:DateTime64(3, 'UTC')}
  AND hour < {last_end:DateTime64(3, 'UTC')}
  AND meter IN {meters:Array(String)}
  AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
