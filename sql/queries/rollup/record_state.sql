-- Recorded after the swap: a crash in between leaves the old state row, so the day
-- reads as dirty and is rebuilt (to the same rows) by the next run. Recorded only while
-- the live day is what this build swapped in (its row and event counts): another build
-- of the day that swapped in since keeps its own record, or the day reads as dirty.
INSERT INTO rollup_state
    (day, watermark, raw_rows, events, rollup_rows, definitions_hash, version)
SELECT
    {day:Date},
    {watermark:DateTime64(3, 'UTC')},
    {raw_rows:UInt64},
    {events:UInt64},
    {rollup_rows:UInt64},
    {definitions_hash:String},
    (SELECT max(version) FROM rollup_state WHERE day = {day:Date}) + 1
WHERE (
    SELECT tuple(count(), sum(events))
    FROM usage_rollup
    WHERE toYYYYMMDD(hour) = {partition:UInt32}
) = tuple({rollup_rows:UInt64}, {events:UInt64})
