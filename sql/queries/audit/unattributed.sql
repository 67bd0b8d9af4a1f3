-- Usage no subscription covers: events in [start, end) of customers the ledger does not
-- know, or outside every active span [start, end) of the customer's subscriptions.
-- Such usage is never billed; the audit lists it so that it is never silently dropped.
SELECT
    customer_id,
    meter,
    count() AS events,
    sum(value) AS value_sum,
    min(timestamp) AS first_at,
    max(timestamp) AS last_at,
    mapContains({spans:Map(String, Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC'))))},
                customer_id) AS known_customer,
    min(event_id) AS example_event_id
FROM usage_events FINAL
WHERE timestamp >= {start:DateTime64(3, 'UTC')}
  AND timestamp < {end:DateTime64(3, 'UTC')}
  AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
  AND NOT arrayExists(
        s -> timestamp >= s.1 AND timestamp < s.2,
        {spans:Map(String, Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC'))))}[customer_id])
GROUP BY customer_id, meter
ORDER BY customer_id, meter
