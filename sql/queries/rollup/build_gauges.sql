-- latest and time_weighted meters (gauges) of one UTC day, folded into hourly rows of the
-- staging table (the rows and their rules: rollup/_gauge_rows.sql). unique_state is left
-- out (empty state).
INSERT INTO {{staging}}
    (hour, customer_id, meter, dimensions, events, value_sum, value_max, latest_state,
     first_at, tw_integral, max_ingested_at)
{{> rollup/_gauge_rows}}
