-- Every row of a classified batch (ingest/classify.sql) with its outcome, in the order
-- received: what the HTTP service answers for each event of a request (the rows of each
-- source by line, or by position in a JSON array).
SELECT source, source_line, status, reason, detail, event_id
FROM {{classified}}
ORDER BY seq
