-- Classify every staged row as accepted, duplicate or rejected (with a reason), in the
-- engine, in one pass. Rules (DESIGN.md invariants 1 and 2):
--  * a row with a defect is rejected with the first defect found, in the order below;
--  * event_id is the idempotency key: the first valid copy (by seq: files in the order
--    given, rows in file order) is accepted; a later copy with the same content is a
--    duplicate (a no-op); a later copy with other content is rejected as a conflict,
--    whether the first copy is in this batch or was accepted by an earlier ingest.
-- "Content" is customer, meter, timestamp (ms), value and the sorted properties, hashed
-- with cityHash64 (only copies of one event_id are compared, so 64 bits are plenty);
-- the source file is not content, so a re-sent file's rows are duplicates.
CREATE TABLE {{classified}} ENGINE = Memory AS
WITH
    {min_ts:DateTime64(3, 'UTC')} AS min_ts,
    {max_ts:DateTime64(3, 'UTC')} AS max_ts,
    {meter_props:Map(String, Array(String))} AS meter_props,
    {prop_values:Map(String, Array(String))} AS prop_values,
    {counter_meters:Array(String)} AS counter_meters,
    mapKeys(meter_props) AS meter_names,
    fields AS (
        SELECT
            seq, source, source_line, is_json, raw,
            if(is_json AND NOT (isValidJSON(raw) AND JSONType(raw) = 'Object'),
               'the line is not a JSON object', parse_error) AS row_error,
            if(is_json, multiIf(JSONType(raw, 'event_id') = 'String', JSONExtractString(raw, 'event_id'),
                                JSONType(raw, 'event_id') IN ('Int64', 'UInt64'), JSONExtractRaw(raw, 'event_id'),
                                NULL), event_id) AS f_event_id,
            if(is_json, if(JSONType(raw, 'customer_id') = 'String', JSONExtractString(raw, 'customer_id'),
                           if(JSONType(raw, 'customer_id') IN ('Int64', 'UInt64'), JSONExtractRaw(raw, 'customer_id'), NULL)),
               customer_id) AS f_customer_id,
            if(is_json, if(JSONType(raw, 'meter') = 'String', JSONExtractString(raw, 'meter'), NULL), meter) AS f_meter,
            if(is_json, multiIf(JSONType(raw, 'timestamp') = 'String', JSONExtractString(raw, 'timestamp'),
                                JSONType(raw, 'timestamp') = 'Null', NULL,
                                JSONExtractRaw(raw, 'timestamp')), timestamp) AS f_timestamp,
            if(is_json, multiIf(JSONType(raw, 'value') = 'String', JSONExtractString(raw, 'value'),
                                JSONType(raw, 'value') = 'Null', NULL,
                                JSONExtractRaw(raw, 'value')), value) AS f_value,
            if(is_json, multiIf(JSONType(raw, 'properties') = 'String', JSONExtractString(raw, 'properties'),
                                JSONType(raw, 'properties') = 'Null', NULL,
                                JSONExtractRaw(raw, 'properties')), properties) AS f_properties,
            if(is_json, if(JSONType(raw, 'source') = 'String', JSONExtractString(raw, 'source'), NULL),
               event_source) AS f_source
        FROM {{staging}}
    ),
    parsed AS (
        SELECT
            *,
            ifNull(f_event_id, '') AS eid,
            parseDateTime64BestEffortOrNull(f_timestamp, 3, 'UTC') AS ts,
            -- A timestamp must say which instant it is: a time of day and a zone.
            match(ifNull(f_timestamp, ''),
                  '\\d{1,2}:\\d{2}(:\\d{2}([.,]\\d+)?)?\\s*([Zz]|UTC|GMT|[+-]\\d{2}(:?\\d{2})?)$') AS ts_has_zone,
            if(f_value IS NULL OR f_value = '', toDecimal128(1, 9), toDecimal128OrNull(f_value, 9)) AS val,
            ifNull(nullIf(f_properties, ''), '{}') AS props_json,
            isValidJSON(props_json) AND JSONType(props_json) = 'Object' AS props_is_object,
            arrayAll(kv -> startsWith(kv.2, '"'), JSONExtractKeysAndValuesRaw(props_json)) AS props_all_strings,
            arrayMap(kv -> kv.1, JSONExtractKeysAndValues(props_json, 'String')) AS keys0,
            arrayMap(kv -> kv.2, JSONExtractKeysAndValues(props_json, 'String')) AS vals0,
            arraySort(keys0) AS pkeys,
            arraySort((v, k) -> k, vals0, keys0) AS pvals,
            meter_props[ifNull(f_meter, '')] AS allowed_keys,
            arrayFilter(k -> NOT has(allowed_keys, k), pkeys) AS unknown_keys,
            arrayFilter((v, k) -> NOT (empty(prop_values[concat(ifNull(f_meter, ''), '\t', k)])
                                       OR has(prop_values[concat(ifNull(f_meter, ''), '\t', k)], v)),
                        pvals, pkeys) AS bad_values
        FROM fields
    ),
    validated AS (
        SELECT
            *,
            multiIf(
                row_error != '', ('malformed_row', row_error),
                eid = '', ('missing_field', 'event_id is missing or empty'),
                f_customer_id IS NULL OR f_customer_id = '', ('missing_field', 'customer_id is missing or empty'),
                f_meter IS NULL OR f_meter = '', ('missing_field', 'meter is missing or empty'),
                f_timestamp IS NULL OR f_timestamp = '', ('missing_field', 'timestamp is missing or empty'),
                lengthUTF8(eid) > 128 OR match(eid, '[[:cntrl:]]'),
                    ('bad_event_id', concat('event_id must be 1 to 128 printable characters (got ',
                                            toString(lengthUTF8(eid)), ' characters)')),
                ts IS NULL OR NOT ts_has_zone,
                    ('bad_timestamp', concat('timestamp ', f_timestamp,
                                             ' is not an ISO 8601 time with a timezone, e.g. 2026-10-01T12:00:00Z')),
                ts < min_ts,
                    ('timestamp_too_old', concat('timestamp ', f_timestamp, ' is before ', toString(min_ts),
                                                 ' UTC, the oldest time this ingest accepts')),
                ts > max_ts,
                    ('timestamp_in_future', concat('timestamp ', f_timestamp, ' is after ', toString(max_ts),
                                                   ' UTC, later than the ingest time allows')),
                NOT has(meter_names, f_meter),
                    ('unknown_meter', concat('meter ', f_meter, ' is not in the catalog (known: ',
                                             arrayStringConcat(arraySort(meter_names), ', '), ')')),
                val IS NULL,
                    ('non_numeric_value', concat('value ', f_value, ' is not a decimal number')),
                val < 0 AND has(counter_meters, f_meter),
                    ('negative_value', concat('value ', f_value, ' is negative; meter ', f_meter,
                                              ' is a counter and only counts up')),
                NOT props_is_object,
                    ('bad_properties', concat('properties ', props_json, ' is not a JSON object')),
                NOT props_all_strings,
                    ('bad_properties', concat('properties ', props_json, ': every value must be a string')),
                length(arrayDistinct(pkeys)) != length(pkeys),
                    ('bad_properties', concat('properties ', props_json, ' repeat a key')),
                notEmpty(unknown_keys),
                    ('bad_properties', concat('unknown property ', arrayStringConcat(unknown_keys, ', '),
                                              ' for meter ', f_meter, ' (allowed: ',
                                              arrayStringConcat(allowed_keys, ', '), ')')),
                notEmpty(bad_values),
                    ('bad_properties', concat('property value ', arrayStringConcat(bad_values, ', '),
                                              ' is not allowed for meter ', f_meter)),
                ('', '')
            ) AS verdict,
            verdict.1 AS defect,
            if(defect = '',
               cityHash64(assumeNotNull(f_customer_id), assumeNotNull(f_meter),
                          toUnixTimestamp64Milli(assumeNotNull(ts)), assumeNotNull(val), pkeys, pvals),
               toUInt64(0)) AS content_hash
        FROM parsed
    ),
    -- A batch holds rows of one source file, so "earlier" is a line of the same file.
    ranked AS (
        SELECT
            *,
            row_number() OVER w AS copy_number,
            first_value(content_hash) OVER w AS first_hash,
            first_value(source_line) OVER w AS first_line
        FROM validated
        WINDOW w AS (PARTITION BY defect = '', eid ORDER BY seq
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    ),
    existing AS (
        SELECT event_id, any(content_hash) AS existing_hash, min(ingested_at) AS existing_at
        FROM usage_event_ids
        -- CTEs are inlined where used: read the ids from the cheap first step, so
        -- that validation runs once.
        WHERE event_id IN (SELECT ifNull(f_event_id, '') FROM fields)
        GROUP BY event_id
    )
SELECT
    r.seq AS seq,
    r.source AS source,
    r.source_line AS source_line,
    multiIf(r.defect != '', 'rejected',
            e.event_id != '', if(e.existing_hash = r.content_hash, 'duplicate', 'rejected'),
            r.copy_number = 1, 'accepted',
            r.content_hash = r.first_hash, 'duplicate',
            'rejected') AS status,
    multiIf(r.defect != '', r.defect, status = 'rejected', 'conflicting_duplicate', '') AS reason,
    multiIf(r.defect != '', r.verdict.2,
            status != 'rejected', '',
            e.event_id != '', concat('event_id ', r.eid, ' was already accepted (ingested ',
                                     toString(e.existing_at), ' UTC) with different content; the first copy stands'),
            concat('event_id ', r.eid, ' appeared earlier (', r.source, ' line ', toString(r.first_line),
                   ') with different content; the first copy stands')) AS detail,
    r.f_event_id AS event_id,
    r.f_customer_id AS customer_id,
    r.f_meter AS meter,
    r.ts AS timestamp,
    r.val AS value,
    mapFromArrays(r.pkeys, r.pvals) AS properties,
    ifNull(r.f_source, r.source) AS event_source,
    r.content_hash AS content_hash,
    -- The raw payload is kept for rejected rows only (what a person needs to resend).
    if(status != 'rejected', '',
       if(r.is_json, r.raw,
          toJSONString(CAST((r.f_event_id, r.f_customer_id, r.f_meter, r.f_timestamp, r.f_value, r.f_properties),
                            'Tuple(event_id Nullable(String), customer_id Nullable(String), meter Nullable(String), timestamp Nullable(String), value Nullable(String), properties Nullable(String))')))) AS raw
FROM ranked AS r
LEFT JOIN existing AS e ON e.event_id = r.eid
