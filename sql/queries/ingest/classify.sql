-- Classify every staged row as accepted, duplicate or rejected (with a reason), in the
-- engine, in one pass. Rules (DESIGN.md invariants 1 and 2; the README's event format):
--  * a row with a defect is rejected with the first defect found, in the order below;
--  * event_id is the idempotency key: the first valid copy (by seq: files in the order
--    given, rows in file order) is accepted; a later copy with the same content is a
--    duplicate (a no-op); a later copy with other content is rejected as a conflict,
--    whether the first copy is in this batch or was accepted by an earlier ingest.
-- "Content" is customer, meter, timestamp (ms), value and the sorted properties, hashed
-- with cityHash64 (only copies of one event_id are compared, so 64 bits are plenty);
-- the source file is not content, so a re-sent file's rows are duplicates.
-- What is accepted, exactly:
--  * text is UTF-8; ids (event_id, customer_id) are printable: no control, format
--    (bidirectional, zero-width, byte-order mark), private-use or separator characters,
--    no space other than U+0020 and none at either end; event_id has 1-128 characters.
--    In JSON an id is a string or an integer (written as its digits).
--  * timestamp: RFC 3339 date-time with an offset: YYYY-MM-DD, T (or t, or one space),
--    hh:mm:ss, optional fraction, then Z (or z) or +hh:mm/-hh:mm; years 1900-2299;
--    no leap second. Stored in UTC; digits past milliseconds are dropped.
--  * value: [+-]digits[.digits][e[+-]digits], |value| <= 10^12 with at most 9 decimal
--    places once written out (trailing zeros do not count): neither is ever rounded, so
--    no period sum of Decimal(38, 9) can overflow. No value means 1.
--  * a JSON line is an object whose keys are event fields, each at most once.
CREATE TABLE {{classified}} ENGINE = Memory AS
WITH
    {min_ts:DateTime64(3, 'UTC')} AS min_ts,
    {max_ts:DateTime64(3, 'UTC')} AS max_ts,
    {meter_props:Map(String, Array(String))} AS meter_props,
    {prop_values:Map(String, Array(String))} AS prop_values,
    {counter_meters:Array(String)} AS counter_meters,
    mapKeys(meter_props) AS meter_names,
    ['event_id', 'customer_id', 'meter', 'timestamp', 'value', 'properties', 'source'] AS event_fields,
    toDecimal128(1000000000000, 9) AS max_abs_value,
    -- A JSON value's text: a string decoded, null as NULL, anything else as written.
    (r -> multiIf(r IS NULL OR r = 'null', NULL, startsWith(r, '"'), JSONExtractString(r), r)) AS json_text,
    -- A JSON id is a string or an integer.
    (r -> r IS NULL OR r = 'null' OR startsWith(r, '"') OR match(r, '^-?[0-9]+$')) AS json_id_ok,
    -- A JSON line's value of one field, as written (NULL when the key is absent).
    ((keys, kv, name) -> if(has(keys, name), kv[indexOf(keys, name)].2, NULL)) AS json_raw,
    -- A CSV cell's text: quotes removed and "" unescaped; an empty unquoted cell is NULL.
    (c -> if(startsWith(c, '"'), replaceAll(substring(c, 2, length(c) - 2), '""', '"'), nullIf(c, ''))) AS csv_text,
    ((names, cells, name) -> if(has(names, name), csv_text(cells[indexOf(names, name)]), NULL)) AS csv_field,
    -- The Unicode code point of one UTF-8 character, as U+XXXX.
    (c -> concat('U+', leftPad(hex(multiIf(
        length(c) = 1, toUInt32(reinterpretAsUInt8(c)),
        length(c) = 2, bitOr(bitShiftLeft(toUInt32(bitAnd(reinterpretAsUInt8(substring(c, 1, 1)), 31)), 6),
                             toUInt32(bitAnd(reinterpretAsUInt8(substring(c, 2, 1)), 63))),
        length(c) = 3, bitOr(bitOr(bitShiftLeft(toUInt32(bitAnd(reinterpretAsUInt8(substring(c, 1, 1)), 15)), 12),
                                   bitShiftLeft(toUInt32(bitAnd(reinterpretAsUInt8(substring(c, 2, 1)), 63)), 6)),
                             toUInt32(bitAnd(reinterpretAsUInt8(substring(c, 3, 1)), 63))),
        bitOr(bitOr(bitShiftLeft(toUInt32(bitAnd(reinterpretAsUInt8(substring(c, 1, 1)), 7)), 18),
                    bitShiftLeft(toUInt32(bitAnd(reinterpretAsUInt8(substring(c, 2, 1)), 63)), 12)),
              bitOr(bitShiftLeft(toUInt32(bitAnd(reinterpretAsUInt8(substring(c, 3, 1)), 63)), 6),
                    toUInt32(bitAnd(reinterpretAsUInt8(substring(c, 4, 1)), 63))))
    )), 4, '0'))) AS code_point,
    -- Why a text is not a printable id ('' when it is).
    (t -> multiIf(
        NOT isValidUTF8(t), 'is not UTF-8 text',
        match(t, '^[!-~]([ -~]*[!-~])?$'), '',
        match(t, '[\\p{C}\\p{Zl}\\p{Zp}\\x{00A0}\\x{1680}\\x{2000}-\\x{200A}\\x{202F}\\x{205F}\\x{3000}]'),
            concat('contains the character ',
                   code_point(extract(t, '([\\p{C}\\p{Zl}\\p{Zp}\\x{00A0}\\x{1680}\\x{2000}-\\x{200A}\\x{202F}\\x{205F}\\x{3000}])')),
                   ' (a control, format, invisible or special space character)'),
        startsWith(t, ' ') OR endsWith(t, ' '), 'starts or ends with a space',
        '')) AS id_problem,
    fields AS (
        SELECT
            seq, source, source_line, is_json, csv_header != '' AS is_csv, raw, parse_error, properties_error,
            -- A JSON line is parsed once: every key with its value as written.
            if(is_json, JSONExtractKeysAndValuesRaw(raw), []) AS j_kv,
            arrayMap(kv -> kv.1, j_kv) AS j_keys,
            -- A CSV line is split into cells (each followed by the comma appended here).
            splitByChar(',', csv_header) AS c_names,
            if(is_csv, extractAll(concat(raw, ','), '("(?:[^"]|"")*"|[^,"]*),'), []) AS c_cells,
            multiIf(
                parse_error != '', parse_error,
                (is_json OR is_csv) AND NOT isValidUTF8(raw),
                    concat('the line is not UTF-8 text (the first bad byte is at character ',
                           toString(position(toValidUTF8(raw), '\xEF\xBF\xBD')), '); save the file as UTF-8'),
                is_json AND NOT (isValidJSON(raw) AND JSONType(raw) = 'Object'), 'the line is not a JSON object',
                is_json AND length(arrayDistinct(j_keys)) != length(j_keys),
                    concat('the field ', arrayFilter((k, i) -> indexOf(j_keys, k) != i, j_keys, arrayEnumerate(j_keys))[1],
                           ' appears more than once in the object; send it once'),
                is_json AND NOT hasAll(event_fields, j_keys),
                    concat('unknown field ', arrayFilter(k -> NOT has(event_fields, k), j_keys)[1],
                           ' (the fields are ', arrayStringConcat(event_fields, ', '), ')'),
                is_csv AND NOT match(raw, '^("(?:[^"]|"")*"|[^,"]*)(,("(?:[^"]|"")*"|[^,"]*))*$'),
                    'the line is not valid CSV (a quote inside an unquoted field, or a quoted field not closed on its line)',
                is_csv AND length(c_cells) != length(c_names),
                    concat('the line has ', toString(length(c_cells)), ' fields, the header has ', toString(length(c_names))),
                NOT is_json AND NOT is_csv AND NOT isValidUTF8(concat(ifNull(meter, ''), ifNull(timestamp, ''), ifNull(value, ''),
                                                                      ifNull(properties, ''), ifNull(event_source, ''))),
                    concat('field ', arrayFilter(f -> NOT isValidUTF8(f.2),
                                                 [('meter', ifNull(meter, '')), ('timestamp', ifNull(timestamp, '')),
                                                  ('value', ifNull(value, '')), ('properties', ifNull(properties, '')),
                                                  ('source', ifNull(event_source, ''))])[1].1,
                           ' is not UTF-8 text'),
                '') AS row_error,
            multiIf(is_json, if(json_id_ok(json_raw(j_keys, j_kv, 'event_id')), '', concat('event_id must be a string or an integer, not ', json_raw(j_keys, j_kv, 'event_id'))),
                    '') AS id_type_error,
            multiIf(is_json, if(json_id_ok(json_raw(j_keys, j_kv, 'customer_id')), '', concat('customer_id must be a string or an integer, not ', json_raw(j_keys, j_kv, 'customer_id'))),
                    '') AS customer_type_error,
            multiIf(is_json, json_text(json_raw(j_keys, j_kv, 'event_id')), is_csv, csv_field(c_names, c_cells, 'event_id'), event_id) AS f_event_id,
            multiIf(is_json, json_text(json_raw(j_keys, j_kv, 'customer_id')), is_csv, csv_field(c_names, c_cells, 'customer_id'), customer_id) AS f_customer_id,
            multiIf(is_json, json_text(json_raw(j_keys, j_kv, 'meter')), is_csv, csv_field(c_names, c_cells, 'meter'), meter) AS f_meter,
            multiIf(is_json, json_text(json_raw(j_keys, j_kv, 'timestamp')), is_csv, csv_field(c_names, c_cells, 'timestamp'), timestamp) AS f_timestamp,
            multiIf(is_json, json_text(json_raw(j_keys, j_kv, 'value')), is_csv, csv_field(c_names, c_cells, 'value'), value) AS f_value,
            multiIf(is_json, json_text(json_raw(j_keys, j_kv, 'properties')), is_csv, csv_field(c_names, c_cells, 'properties'), properties) AS f_properties,
            multiIf(is_json, json_text(json_raw(j_keys, j_kv, 'source')), is_csv, csv_field(c_names, c_cells, 'source'), event_source) AS f_source
        FROM {{staging}}
    ),
    parsed AS (
        SELECT
            *,
            ifNull(f_event_id, '') AS eid,
            ifNull(f_customer_id, '') AS cid,
            -- RFC 3339 date-time: the date and time sit at fixed places, the offset at the end.
            ifNull(f_timestamp, '') AS ts_text,
            match(ts_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$') AS ts_shape,
            toUInt16OrZero(substring(ts_text, 1, 4)) AS ts_year,
            toUInt8OrZero(substring(ts_text, 6, 2)) AS ts_month,
            toUInt8OrZero(substring(ts_text, 9, 2)) AS ts_day,
            toUInt8OrZero(substring(ts_text, 12, 2)) AS ts_hour,
            toUInt8OrZero(substring(ts_text, 15, 2)) AS ts_minute,
            toUInt8OrZero(substring(ts_text, 18, 2)) AS ts_second,
            if(endsWith(ts_text, 'Z') OR endsWith(ts_text, 'z'), 1, 6) AS ts_zone_len,
            if(substring(ts_text, 20, 1) = '.', substring(ts_text, 21, length(ts_text) - 20 - ts_zone_len), '') AS ts_fraction,
            right(ts_text, ts_zone_len) AS ts_zone,
            toUInt8OrZero(substring(ts_zone, 2, 2)) AS ts_offset_hours,
            toUInt8OrZero(substring(ts_zone, 5, 2)) AS ts_offset_minutes,
            multiIf(ts_month = 2, if((ts_year % 4 = 0 AND ts_year % 100 != 0) OR ts_year % 400 = 0, 29, 28),
                    ts_month IN (4, 6, 9, 11), 30, 31) AS ts_month_days,
            ts_month BETWEEN 1 AND 12 AND ts_day BETWEEN 1 AND ts_month_days
                AND ts_hour <= 23 AND ts_minute <= 59 AND ts_second <= 59 AS ts_real,
            ts_offset_hours <= 23 AND ts_offset_minutes <= 59 AS ts_offset_ok,
            ts_year BETWEEN 1900 AND 2299 AS ts_year_ok,
            if(ts_shape AND ts_real AND ts_offset_ok AND ts_year_ok,
               addSeconds(makeDateTime64(ts_year, ts_month, ts_day, ts_hour, ts_minute, ts_second,
                                         toUInt16OrZero(rightPad(left(ts_fraction, 3), 3, '0')), 3, 'UTC'),
                          if(startsWith(ts_zone, '-'), 1, -1) * (ts_offset_hours * 3600 + ts_offset_minutes * 60)),
               NULL) AS ts,
            -- value: sign, integer digits, fraction digits, exponent.
            f_value IS NULL OR f_value = '' AS val_default,
            extractGroups(ifNull(f_value, ''), '^([+-]?)([0-9]+)(?:\\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$') AS val_parts,
            notEmpty(val_parts) AS val_is_number,
            trim(TRAILING '0' FROM val_parts[3]) AS val_fraction,
            trim(LEADING '0' FROM concat(val_parts[2], val_fraction)) AS val_digits_lead,
            trim(TRAILING '0' FROM val_digits_lead) AS val_digits,
            length(trim(LEADING '0' FROM replaceOne(replaceOne(val_parts[4], '+', ''), '-', ''))) > 6 AS val_huge_exponent,
            -- the power of ten of the last significant digit
            toInt64OrZero(val_parts[4]) - length(val_fraction) + (length(val_digits_lead) - length(val_digits)) AS val_last_power,
            val_digits = '' OR (NOT val_huge_exponent
                                AND (length(val_digits) + val_last_power <= 12
                                     OR (val_digits = '1' AND val_last_power = 12))) AS val_in_range,
            val_digits = '' OR (NOT val_huge_exponent AND val_last_power >= -9) AS val_exact,
            multiIf(val_default, toDecimal128(1, 9),
                    val_is_number AND val_in_range AND val_exact, toDecimal128OrNull(f_value, 9),
                    NULL) AS val,
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
            id_problem(eid) AS eid_problem,
            id_problem(cid) AS cid_problem,
            concat('; use RFC 3339 with an offset, e.g. 2026-10-01T12:00:00Z or ',
                   '2026-10-01T12:00:00.123+02:00') AS ts_hint,
            multiIf(
                row_error != '', ('malformed_row', row_error),
                id_type_error != '', ('bad_event_id', id_type_error),
                eid = '', ('missing_field', 'event_id is missing or empty'),
                customer_type_error != '', ('bad_customer_id', customer_type_error),
                cid = '', ('missing_field', 'customer_id is missing or empty'),
                f_meter IS NULL OR f_meter = '', ('missing_field', 'meter is missing or empty'),
                ts_text = '', ('missing_field', 'timestamp is missing or empty'),
                eid_problem != '', ('bad_event_id', concat('event_id ', eid_problem, '; ids must be printable text')),
                lengthUTF8(eid) > 128,
                    ('bad_event_id', concat('event_id has ', toString(lengthUTF8(eid)), ' characters; at most 128')),
                cid_problem != '', ('bad_customer_id', concat('customer_id ', cid_problem, '; ids must be printable text')),
                NOT ts_shape,
                    ('bad_timestamp', concat('timestamp ', ts_text, multiIf(
                        match(ts_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?$'),
                            ' has no offset, so it is ambiguous: add Z (UTC) or +hh:mm/-hh:mm',
                        match(ts_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}([Zz]|[+-][0-9]{2}:[0-9]{2})$'),
                            ' has no seconds',
                        match(ts_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?[+-][0-9]{2}:?[0-9]{0,2}$'),
                            ' has an offset not written +hh:mm or -hh:mm',
                        ' is not an RFC 3339 date-time'), ts_hint)),
                NOT ts_real,
                    ('bad_timestamp', concat('timestamp ', ts_text, ' is not a real date and time (month 01-12, a day ',
                                             'of that month, hours 00-23, minutes and seconds 00-59)', ts_hint)),
                NOT ts_offset_ok,
                    ('bad_timestamp', concat('timestamp ', ts_text, ' has the offset ', ts_zone,
                                             ', out of range (hours 00-23, minutes 00-59)')),
                NOT ts_year_ok,
                    ('bad_timestamp', concat('timestamp ', ts_text, ' is outside the years 1900-2299')),
                ts < min_ts,
                    ('timestamp_too_old', concat('timestamp ', ts_text, ' is older than this ingest accepts: events from ',
                                                 toString(min_ts), ' UTC on (the maximum event age, METERLINE_MAX_EVENT_AGE_DAYS ',
                                                 'days before the ingest time or before --as-of); to load older events (a ',
                                                 'backfill), run ingest with --as-of set shortly after them')),
                ts > max_ts,
                    ('timestamp_in_future', concat('timestamp ', ts_text, ' is after ', toString(max_ts),
                                                   ' UTC, later than the ingest time allows (METERLINE_FUTURE_TOLERANCE_S)')),
                NOT has(meter_names, f_meter),
                    ('unknown_meter', concat('meter ', f_meter, ' is not in the catalog (known: ',
                                             arrayStringConcat(arraySort(meter_names), ', '), ')')),
                NOT val_default AND NOT val_is_number,
                    ('non_numeric_value', concat('value ', f_value, ' is not a decimal number (digits, an optional sign, ',
                                                 'decimal point and exponent: 12, -0.5, 1.5e3)')),
                NOT val_in_range,
                    ('value_out_of_range', concat('value ', f_value, ' is out of range: at most 1000000000000 (10^12) ',
                                                  'in absolute value')),
                NOT val_exact OR val IS NULL,
                    ('value_out_of_range', concat('value ', f_value, ' has more than 9 decimal places; values are ',
                                                  'kept exactly to 9, never rounded: round it before sending')),
                val < 0 AND has(counter_meters, f_meter),
                    ('negative_value', concat('value ', f_value, ' is negative; meter ', f_meter,
                                              ' is a counter and only counts up')),
                properties_error != '', ('bad_properties', properties_error),
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
FROM ranked AS r
LEFT JOIN existing AS e ON e.event_id = r.eid
