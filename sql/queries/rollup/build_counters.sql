-- sum, count and max meters of one UTC day, folded into hourly rows of the staging table
-- (the rows and their rules: rollup/_counter_rows.sql). The state columns are left out
-- of the INSERT and hold empty states (unique_state, latest_state) and 0 (tw_integral).
INSERT INTO {{staging}}
    (hour, customer_id, meter, dimensions, events, value_sum, value_max, first_at,
     max_ingested_at)
{{> rollup/_counter_rows}}
