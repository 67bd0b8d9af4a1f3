-- Fragment, included as quantities/_raw_selection: the conditions on usage_events rows of a
-- raw quantities query, after its time condition: the asked meters and customers, and
-- only events matching every property of their meter's filter.
  AND meter IN {meters:Array(String)}
  AND ({all_customers:Bool} OR customer_id IN {customer_ids:Array(String)})
  AND {{> shared/matches_meter_filter}}
