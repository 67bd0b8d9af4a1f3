-- Hourly usage rollup: per (meter, customer, dimensions, UTC hour), what any billing
-- period made of whole UTC hours needs, so a period in any whole-hour timezone is merged
-- exactly from hourly rows (docs/rollups.md).
--
-- One partition per UTC day. A day is only ever written whole: built in a staging table
-- (CREATE TABLE ... AS usage_rollup) and swapped in with REPLACE PARTITION, so there is
-- exactly one row per key and hour. That is why the engine is a plain MergeTree and not
-- an AggregatingMergeTree: there is never anything to fold, and tw_integral (the gauge's
-- integral from the hour's first event to the hour's end) is not a mergeable aggregate,
-- so an engine that merges rows by key would invite summing two partial hours wrongly.
-- Readers still combine hours with the -Merge combinators.
CREATE TABLE IF NOT EXISTS usage_rollup ON CLUSTER meterline_cluster
(
    hour            DateTime('UTC'),
    customer_id     String,
    meter           LowCardinality(String),
    -- The meter's declared dimension properties only, keys sorted; other properties do
    -- not split rows.
    dimensions      Map(LowCardinality(String), String),
    events          UInt64,
    value_sum       Decimal(38, 9),
    value_max       Decimal(38, 9),
    -- unique_count meters: exact set of the unique_property's values (empty otherwise).
    unique_state    AggregateFunction(uniqExact, String),
    -- latest and time_weighted meters: the last value, ordered by (timestamp, event_id)
    -- so that two events at the same millisecond resolve the same way every time.
    latest_state    AggregateFunction(argMax, Decimal(38, 9), Tuple(DateTime64(3, 'UTC'), String)),
    first_at        DateTime64(3, 'UTC'),
    -- time_weighted meters: sum of value x milliseconds from the hour's first event to the
    -- hour's end (each value held until the next event of the hour). Decimal(76, 9): any
    -- Decimal(38, 9) value times any span of milliseconds fits exactly.
    tw_integral     Decimal(76, 9),
    -- The latest ingest among the events behind this row (for audits of late events).
    max_ingested_at DateTime64(3, 'UTC')
)
ENGINE = ReplicatedMergeTree
PARTITION BY toYYYYMMDD(hour)
ORDER BY (meter, customer_id, hour);

-- One row per rolled-up UTC day (the latest version wins; read with FINAL): what the
-- build read, so a later run can tell whether the day received events since.
CREATE TABLE IF NOT EXISTS rollup_state ON CLUSTER meterline_cluster
(
    day              Date,
    -- max(ingested_at) of the day's events the build read; it read none ingested later.
    watermark        DateTime64(3, 'UTC'),
    -- usage_events rows of the day (before FINAL) when the build started: a row arriving
    -- at or below the watermark (an ingest with an earlier clock) still changes the count.
    raw_rows         UInt64,
    -- events folded into the day's rollup rows (after FINAL, catalog meters and filters).
    events           UInt64,
    rollup_rows      UInt64,
    -- the meter definitions the day was built with (aggregation, dimensions, unique
    -- property, filter of each meter).
    definitions_hash String,
    version          UInt64
)
ENGINE = ReplicatedReplacingMergeTree(version)
ORDER BY day;
