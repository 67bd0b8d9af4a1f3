-- A day whose rollup is empty: REPLACE PARTITION refuses an empty source since
-- ClickHouse 26.6 (and silently drops the partition before), so the empty state is
-- reached by dropping the live partition, itself one atomic operation.
ALTER TABLE usage_rollup DROP PARTITION {partition:UInt32}
