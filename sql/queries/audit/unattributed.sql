-- Usage no subscription covers: events in [start, end) of customers the ledger does not
-- know, or outside every active span [start, end) of the customer's subscriptions.
-- Such usage is never billed; the audit lists it so that it is never silently dropped.
-- The spans map has one key per customer: a row finds its customer's position with
-- `transform` (a hash look-up) rather than `map[key]` or `mapContains`, which scan the
-- keys for every row (3,000 customers, 1.8M events: 10 s against 0.2 s).
WITH transform(customer_id, mapKeys({spans:Map(String, Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC'))))}),
               arrayEnumerate(mapKeys({spans:Map(String, Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC'))))})), 0) AS span_index
SELECT
    customer_id,
    meter,
    count() AS events,
    sum(value) AS value_sum,
    min(timestamp) AS first_at,
    max(timestamp) AS last_at,
    any(span_index) != 0 AS known_customer,
    min(event_id) AS example_event_id
FROM usage_events FINAL
WHERE timestamp >= {start:DateTime64(3, 'UTC')}
  AND timestamp < {end:DateTime64(3, 'UTC')}
  AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
  AND NOT arrayExists(
        s -> timestamp >= s.1 AND timestamp < s.2,
        mapValues({spans:Map(String, Array(Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC'))))})[span_index])
GROUP BY customer_id, meter
ORDER BY customer_id, meter
