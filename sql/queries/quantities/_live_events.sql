-- Fragment, the live usage's swap for rollup/_day_events (meters/quantities.py, LiveCut):
-- the events of some customers on the UTC days their rollup does not hold yet (never
-- rolled up, or events ingested since the build), before the instant asked. The build's
-- own rules (FINAL; capped at a watermark: here the latest committed ingest), with
-- day_start .. day_end the span of those days, its end the instant asked.
{{> rollup/_day_events}}
  AND toDate(timestamp, 'UTC') IN {live_days:Array(Date)}
  AND customer_id IN {customer_ids:Array(String)}
