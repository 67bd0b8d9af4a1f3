-- The swap: one atomic operation that makes the staging table's day the live one.
ALTER TABLE usage_rollup REPLACE PARTITION {partition:UInt32} FROM {{staging}}
