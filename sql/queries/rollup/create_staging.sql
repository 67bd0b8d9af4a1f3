-- A staging table with the live table's exact structure, partition key and sort key,
-- which REPLACE PARTITION requires.
CREATE TABLE {{staging}} AS usage_rollup
