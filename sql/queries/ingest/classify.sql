-- Sort every validated row (ingest/validate.sql) into accepted, duplicate or rejected
-- (with a reason). Rules (DESIGN.md invariant 1):
--  * a row with a defect is rejected with it;
--  * event_id is the idempotency key: the first valid copy (by seq: files in the order
--    given, rows in file order) is accepted; a later copy with the same content is a
--    duplicate (a no-op); a later copy with other content is rejected as a conflict,
--    whether the first copy is in this batch or was accepted by an earlier ingest.
CREATE TABLE {{classified}} ENGINE = Memory AS
SELECT
    r.seq AS seq,
    r.source AS source,
    r.source_line AS source_line,
    multiIf(r.defect != '', 'rejected',
            e.event_id != '', if(e.existing_hash = r.content_hash, 'duplicate', 'rejected'),
            d.eid = '' OR d.first_seq = r.seq, 'accepted',
            r.content_hash = d.first_hash, 'duplicate',
            'rejected') AS status,
    multiIf(r.defect != '', r.defect, status = 'rejected', 'conflicting_duplicate', '') AS reason,
    multiIf(r.defect != '', r.defect_words,
            status != 'rejected', '',
            if(e.event_id != '',
               concat('event_id ', r.eid, ' was already accepted (ingested ', toString(e.existing_at),
                      ' UTC) with different content; the first copy stands'),
               concat('event_id ', r.eid, ' appeared earlier (', d.first_source, ' line ', toString(d.first_line),
                      ') with different content; the first copy stands'))) AS detail,
    -- A rejected row's text may hold bytes that are not UTF-8: they are kept as U+FFFD.
    if(r.defect != '', toValidUTF8(r.f_event_id), r.f_event_id) AS event_id,
    if(r.defect != '', toValidUTF8(r.f_customer_id), r.f_customer_id) AS customer_id,
    if(r.defect != '', toValidUTF8(r.f_meter), r.f_meter) AS meter,
    r.ts AS timestamp,
    r.val AS value,
    mapFromArrays(r.pkeys, r.pvals) AS properties,
    ifNull(r.f_source, r.source) AS event_source,
    r.content_hash AS content_hash,
    -- The raw payload is kept for rejected rows only (what a person needs to resend):
    -- a JSON or CSV line as written, the fields of a Parquet or API row as JSON.
    if(status != 'rejected', '',
       toValidUTF8(if(r.is_json OR r.is_csv, r.raw,
          toJSONString(CAST((r.f_event_id, r.f_customer_id, r.f_meter, r.f_timestamp, r.f_value, r.f_properties),
                            'Tuple(event_id Nullable(String), customer_id Nullable(String), meter Nullable(String), timestamp Nullable(String), value Nullable(String), properties Nullable(String))'))))) AS raw
FROM {{validated}} AS r
-- The ids that come more than once in the batch among valid rows, with their first copy
-- and where it was (a file's batch holds rows of that file only; a batch of request
-- bodies holds several sources, so the first copy may be in another request). Few
-- ids repeat: this right side is small, and the join is cheaper than a window over the
-- batch (which sorted every row: 1.9 s of 8.7 for 2M rows). The repeated ids are found
-- among the ids whose 64-bit hash repeats (a group by of numbers, not of strings: 0.45
-- CPU-s less a batch of 1M rows), then compared exactly.
LEFT JOIN (
    SELECT eid, min(seq) AS first_seq, argMin(content_hash, seq) AS first_hash,
           argMin(source_line, seq) AS first_line, argMin(source, seq) AS first_source
    FROM {{validated}}
    WHERE defect = ''
      AND cityHash64(eid) IN (SELECT h FROM {{validated}} WHERE defect = ''
                              GROUP BY cityHash64(eid) AS h HAVING count() > 1)
    GROUP BY eid
    HAVING count() > 1
) AS d ON d.eid = r.eid AND r.defect = ''
-- The batch's ids that earlier ingests accepted (the join compares the ids exactly).
LEFT JOIN (
    SELECT event_id, any(content_hash) AS existing_hash, min(ingested_at) AS existing_at
    FROM usage_event_ids
    WHERE {{> ingest/_earlier_ids}}
    GROUP BY event_id
) AS e ON e.event_id = r.eid
