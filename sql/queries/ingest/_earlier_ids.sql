-- Fragment, included as ingest/_earlier_ids by ingest/classify: which stored ids to read
-- for a batch's lookup. A small batch (an API call) reads only the granules of its ids,
-- along the sort key of usage_event_ids (event_id).
event_id IN (SELECT eid FROM {{validated}})
