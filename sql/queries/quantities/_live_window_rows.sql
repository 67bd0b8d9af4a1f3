-- Fragment, the live usage's swap for quantities/_rollup_window_rows (meters/quantities.py,
-- LiveCut): the rollup's hourly rows of sum, count, max and unique_count meters where it
-- is complete (quantities/_rolled_window_rows), and for the live days the rows the rollup
-- build itself makes of their raw events (rollup/_counter_rows and rollup/_unique_rows
-- over quantities/_live_events). A counter meter's row holds an empty unique_state, as a
-- build leaves it.
{{> quantities/_rolled_window_rows}}
UNION ALL
SELECT customer_id, meter, dims AS dimensions, hour, events, value_sum, value_max,
       arrayReduce('uniqExactState', emptyArrayString()) AS unique_state
FROM ({{> rollup/_counter_rows}})
UNION ALL
SELECT customer_id, meter, dims AS dimensions, hour, events, value_sum, value_max, unique_state
FROM ({{> rollup/_unique_rows}})
