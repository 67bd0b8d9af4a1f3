-- unique_count meters of one UTC day, folded into hourly rows of the staging table (the
-- rows and their rules: rollup/_unique_rows.sql). latest_state and tw_integral are left
-- out (empty state, 0).
INSERT INTO {{staging}}
    (hour, customer_id, meter, dimensions, events, value_sum, value_max, unique_state,
     first_at, max_ingested_at)
{{> rollup/_unique_rows}}
