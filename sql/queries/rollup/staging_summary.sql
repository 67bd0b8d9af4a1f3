SELECT count() AS rollup_rows, sum(events) AS events FROM {{staging}}
