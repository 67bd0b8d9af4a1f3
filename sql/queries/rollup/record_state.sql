-- Recorded after the swap: a crash in between leaves the old state row, so the day
-- reads as dirty and is rebuilt (to the same rows) by the next run.
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
