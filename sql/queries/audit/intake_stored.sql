-- What the ingests received in [start, end) actually stored, per ingest, meter, currency
-- and outcome: accepted events (usage_events, FINAL) and rejected rows with their reason
-- (usage_events_rejected). The currency comes from the customer (the ledger's, bound as
-- a map, looked up with `transform`, a hash look-up: `map[key]` scans the keys for every
-- row); '' when the customer is unknown or the row had none.
SELECT ingest_id, meter, currency, outcome, reason, count() AS n
FROM
(
    SELECT ingest_id, meter,
           transform(customer_id, mapKeys({currencies:Map(String, String)}),
                     mapValues({currencies:Map(String, String)}), '') AS currency,
           'accepted' AS outcome, '' AS reason
    FROM usage_events FINAL
    WHERE ingested_at >= {start:DateTime64(3, 'UTC')}
      AND ingested_at < {end:DateTime64(3, 'UTC')}
      AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
    UNION ALL
    SELECT ingest_id, ifNull(meter, '') AS meter,
           transform(ifNull(customer_id, ''), mapKeys({currencies:Map(String, String)}),
                     mapValues({currencies:Map(String, String)}), '') AS currency,
           'rejected' AS outcome, toString(reason) AS reason
    FROM usage_events_rejected
    WHERE ingested_at >= {start:DateTime64(3, 'UTC')}
      AND ingested_at < {end:DateTime64(3, 'UTC')}
      AND ({all_customers:Bool} OR ifNull(customer_id, '') IN {customer_ids:Array(String)})
)
GROUP BY ingest_id, meter, currency, outcome, reason
ORDER BY ingest_id, meter, currency, outcome, reason
