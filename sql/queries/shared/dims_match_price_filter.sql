-- Fragment, included as shared/dims_match_price_filter: true when an event's dimension
-- group `dims` has every (key, value) of the price's filter `price_filter`: the rule of
-- meterline.jobs.period_charges.matches_filter, in the engine.
arrayAll((k, v) -> mapContains(dims, k) AND dims[k] = v,
         mapKeys({price_filter:Map(String, String)}),
         mapValues({price_filter:Map(String, String)}))
