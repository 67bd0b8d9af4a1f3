-- Fragment, the live usage's swap for quantities/_rollup_gauge_rows (meters/quantities.py,
-- LiveCut): the rollup's hourly rows of latest and time_weighted meters where it is
-- complete (quantities/_rolled_gauge_rows), and for the live days the rows the rollup
-- build itself makes of their raw events (rollup/_gauge_rows over quantities/_live_events).
{{> quantities/_rolled_gauge_rows}}
UNION ALL
SELECT customer_id, meter, dims AS dimensions, hour, events, latest_state, first_at, tw_integral
FROM ({{> rollup/_gauge_rows}})
