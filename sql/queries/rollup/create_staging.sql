-- A staging table with the live table's structure, partition key and sort key, which
-- REPLACE PARTITION requires. The engine is spelled out (not copied with AS) so that in
-- cluster mode the staging table stays a local MergeTree, not a Replicated one.
CREATE TABLE {{staging}} AS usage_rollup
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(hour)
ORDER BY (meter, customer_id, hour)
