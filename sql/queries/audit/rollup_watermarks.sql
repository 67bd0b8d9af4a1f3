-- The watermark each of these UTC days was last rolled up with: its build read the
-- day's events ingested up to it (rollup_state, latest version per day).
SELECT day, watermark
FROM rollup_state FINAL
WHERE day IN {days:Array(Date)}
