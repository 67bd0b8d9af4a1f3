-- Fragment, included as rollup/_day_events: the events of one UTC day a build reads.
-- FINAL folds any exact re-insert of an event; the read is capped at the watermark taken
-- just before, so the recorded watermark covers exactly what was read.
FROM usage_events FINAL
WHERE timestamp >= {day_start:DateTime64(3, 'UTC')}
  AND timestamp < {day_end:DateTime64(3, 'UTC')}
  AND ingested_at <= {watermark:DateTime64(3, 'UTC')}
