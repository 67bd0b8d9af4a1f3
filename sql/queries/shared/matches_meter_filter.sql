-- Fragment, included as shared/matches_meter_filter: true when the event (`properties`,
-- `meter`) has every property of its meter's filter with the filter's value. The one
-- definition of "an event counts for its meter" wherever raw events are read.
arrayAll((k, v) -> mapContains(properties, k) AND properties[k] = v,
         mapKeys({filters:Map(String, Map(String, String))}[meter]),
         mapValues({filters:Map(String, Map(String, String))}[meter]))
