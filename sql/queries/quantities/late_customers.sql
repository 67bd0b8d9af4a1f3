-- Customers with events in [start, end) ingested after `since`: the only ones whose
-- finalized periods in that range can need an adjustment.
SELECT DISTINCT customer_id
FROM usage_events
WHERE timestamp >= {start:DateTime64(3, 'UTC')}
  AND timestamp < {end:DateTime64(3, 'UTC')}
  AND ingested_at > {since:DateTime64(3, 'UTC')}
