-- Fragment, included as rollup/_gauge_rows: the hourly rows of latest and time_weighted
-- meters of the events of rollup/_day_events (one UTC day for a build; the days not
-- rolled up yet of one customer for the live usage, quantities/_live_events).
-- Rules (DESIGN.md invariant 3, docs/rollups.md), the same for _counter_rows.sql and
-- _unique_rows.sql:
--  * FINAL folds any exact re-insert of an event; the read is capped at the watermark
--    taken just before, so the recorded watermark covers exactly what was read;
--  * only the catalog's meters, and of those only events matching every property of the
--    meter's filter;
--  * rows are split by the meter's declared dimensions only (keys sorted, so the same
--    properties in another order are the same row);
--  * events at the same millisecond are ordered by event_id, everywhere, so "last value"
--    is the same on every run;
--  * time_weighted: each event's value is held until the next event of the hour, the
--    last one until the hour's end; tw_integral sums value x milliseconds of those spans.
WITH
    day_events AS (
        SELECT
            event_id, customer_id, meter, timestamp, value, properties, ingested_at,
            toUnixTimestamp64Milli(timestamp) AS at_ms,
            intDiv(at_ms, 3600000) * 3600000 + 3600000 AS hour_end_ms,
            -- Usually an event carries exactly its meter's dimensions, stored sorted:
            -- then the properties are the dimensions as they are.
            {{> shared/meter_dimensions}} AS dims,
            has({time_weighted_meters:Array(String)}, meter) AS is_time_weighted
        {{> rollup/_day_events}}
          AND meter IN {gauge_meters:Array(String)}
          AND {{> shared/matches_meter_filter}}
    )
-- One pass over the gauge events (CTEs are inlined where used, so a second reference
-- would read them twice). time_weighted events of a group are collected in time order and the
-- integral computed per group: value x (next event, or the hour's end - this event).
SELECT
    hour, customer_id, meter, dims, events, value_sum, value_max, latest_state, first_at,
    if(empty(spans), toDecimal256(0, 9),
       arraySum((v, at, next_at) -> toDecimal256(v, 9) * (next_at - at),
                arrayMap(x -> x.3, spans),
                arrayMap(x -> x.1, spans),
                arrayPushBack(arrayPopFront(arrayMap(x -> x.1, spans)), hour_end_ms))) AS tw_integral,
    max_ingested_at
FROM
(
    SELECT
        toDateTime(intDiv(at_ms, 3600000) * 3600, 'UTC') AS hour,
        customer_id,
        meter,
        dims,
        count() AS events,
        sum(value) AS value_sum,
        max(value) AS value_max,
        argMaxState(value, (timestamp, event_id)) AS latest_state,
        min(timestamp) AS first_at,
        arraySort(x -> (x.1, x.2), groupArrayIf((at_ms, event_id, value), is_time_weighted)) AS spans,
        any(hour_end_ms) AS hour_end_ms,
        max(ingested_at) AS max_ingested_at
    FROM day_events
    GROUP BY hour, customer_id, meter, dims
)
