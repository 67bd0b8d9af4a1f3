-- The latest ingest time of any event: the logical time of a re-rate, "every event
-- ingested up to here" (invariant 7: the data's clock, never now()).
SELECT max(ingested_at), count() FROM usage_events
