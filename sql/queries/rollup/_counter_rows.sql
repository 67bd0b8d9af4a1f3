-- Fragment, included as rollup/_counter_rows: the hourly rows of sum, count and max
-- meters of the events of rollup/_day_events (one UTC day for a build; the days not
-- rolled up yet of one customer for the live usage, quantities/_live_events).
-- Plain aggregates only: these meters need no aggregate state and no spans (a build
-- leaves the state columns empty).
-- Rules (DESIGN.md invariant 3, docs/rollups.md): FINAL folds any exact re-insert; the
-- read is capped at the watermark taken just before; only events matching every property
-- of the meter's filter; rows split by the meter's declared dimensions only, keys sorted.
--
-- Two steps, because computing the dimension map of every event costs more than the
-- whole aggregation (it was ~40% of a 10M-event build): events are first grouped by
-- their stored `properties`, then each group's properties are reduced to the meter's
-- dimensions and groups that reduce to the same dimensions are added up (sums, counts,
-- maxima, minima and maxima of times all add up exactly over any split of the events).
--   grouped_meters  meters whose declared properties are all dimensions: grouping by the
--                   stored properties makes no more groups than grouping by dimensions
--                   (except for events with undeclared properties, which the second step
--                   folds), and the filter can be applied to the groups;
--   row_meters      the other counter meters (a free-form `note` property would make a
--                   group per event): dimensions and filter are computed per event.
SELECT
    hour,
    customer_id,
    meter,
    if(mapKeys(props) = {dimensions:Map(String, Array(String))}[meter], props,
       mapSort(mapFilter((k, v) -> has({dimensions:Map(String, Array(String))}[meter], k),
                         props))) AS dims,
    sum(n) AS events,
    sum(total) AS value_sum,
    max(largest) AS value_max,
    min(first_event) AS first_at,
    max(last_ingest) AS max_ingested_at
FROM
(
    SELECT
        toDateTime(intDiv(toUnixTimestamp64Milli(timestamp), 3600000) * 3600, 'UTC') AS hour,
        customer_id,
        meter,
        properties AS props,
        count() AS n,
        sum(value) AS total,
        max(value) AS largest,
        min(timestamp) AS first_event,
        max(ingested_at) AS last_ingest
    {{> rollup/_day_events}}
      AND meter IN {grouped_meters:Array(String)}
    GROUP BY hour, customer_id, meter, props
    -- every event of a group has these properties: the filter holds for all or none
    HAVING arrayAll((k, v) -> mapContains(props, k) AND props[k] = v,
                    mapKeys({filters:Map(String, Map(String, String))}[meter]),
                    mapValues({filters:Map(String, Map(String, String))}[meter]))
    UNION ALL
    SELECT
        toDateTime(intDiv(toUnixTimestamp64Milli(timestamp), 3600000) * 3600, 'UTC') AS hour,
        customer_id,
        meter,
        {{> shared/meter_dimensions}} AS props,
        count() AS n,
        sum(value) AS total,
        max(value) AS largest,
        min(timestamp) AS first_event,
        max(ingested_at) AS last_ingest
    {{> rollup/_day_events}}
      AND meter IN {row_meters:Array(String)}
      AND {{> shared/matches_meter_filter}}
    GROUP BY hour, customer_id, meter, props
)
GROUP BY hour, customer_id, meter, dims
