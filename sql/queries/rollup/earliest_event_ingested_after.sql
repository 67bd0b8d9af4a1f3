-- The earliest event timestamp among the committed ingests whose ingest time (what their
-- events carry as ingested_at) is after {after}: how far back events may be that a
-- reader with that watermark has not seen. min_ts is the run's earliest accepted event
-- (meters/ingest/journal.py); a run that accepted nothing keeps the epoch and is skipped.
-- runs = 0 when there is none.
SELECT min(min_ts) AS earliest, count() AS runs
FROM ingest_runs FINAL
WHERE state = 'committed'
  AND ingested_at > {after:DateTime64(3, 'UTC')}
  AND max_ts > toDateTime64(0, 3, 'UTC')
