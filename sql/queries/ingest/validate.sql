-- Validate every staged row in the engine, in one pass: its fields read from the text
-- as it arrived, and the first defect found (with the words a person needs), or none;
-- ingest/classify.sql then sorts the rows into accepted, duplicate and rejected.
-- Rules (DESIGN.md invariants 1 and 2; the README's event format):
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
--    no period sum of Decimal(38, 9) can overflow. No value (absent or null) means 1; an
--    empty or blank text is not a number. A value is read from
--    its text, digit by digit: a bare JSON number too (never through a double).
--  * a JSON line is an object whose keys are event fields, each at most once.
CREATE TABLE {{validated}} ENGINE = Memory AS
WITH
    {min_ts:DateTime64(3, 'UTC')} AS min_ts,
    {max_ts:DateTime64(3, 'UTC')} AS max_ts,
    {max_age_days:UInt32} AS max_age_days,
    {meter_props:Map(String, Array(String))} AS meter_props,
    {prop_values:Map(String, Array(String))} AS prop_values,
    {counter_meters:Array(String)} AS counter_meters,
    mapKeys(meter_props) AS meter_names,
    ['event_id', 'customer_id', 'meter', 'timestamp', 'value', 'properties', 'source'] AS event_fields,
    toDecimal128(1000000000000, 9) AS max_abs_value,
    concat('; use RFC 3339 with an offset, e.g. 2026-10-01T12:00:00Z or ',
           '2026-10-01T12:00:00.123+02:00') AS ts_hint,
    -- How a value text reads: (why it is refused, its number written plainly). Refused: 1 not
    -- a decimal number, 2 out of range (|value| <= 10^12), 3 more than 9 decimal places
    -- once written out; 0 when it is accepted. From its parts [sign, integer digits,
    -- fraction digits, exponent]: the significant digits without leading and trailing zeros
    -- (`digits`) and the power of ten of the last of them (`last`), so the number is
    -- digits * 10^last exactly; an accepted one is written out as [-]digits[.digits] (at
    -- most 22 digits), which the engine reads into Decimal(38, 9) exactly, whatever the
    -- length of the text or its exponent (1 followed by 50 zeros, then e-50, is 1).
    (v -> arrayMap(g -> arrayMap(fraction -> arrayMap(lead -> arrayMap(digits -> arrayMap(last ->
            (multiIf(empty(g), 1,
                     digits = '', 0,
                     length(trim(LEADING '0' FROM replaceOne(replaceOne(g[4], '+', ''), '-', ''))) > 6,
                         if(startsWith(g[4], '-'), 3, 2),
                     NOT (length(digits) + last <= 12 OR (digits = '1' AND last = 12)), 2,
                     last < -9, 3,
                     0),
             multiIf(empty(g) OR digits = '' OR last > 12 OR last < -9, '0',
                     concat(if(g[1] = '-', '-', ''),
                            multiIf(last >= 0, concat(digits, repeat('0', toUInt64(least(last, 12)))),
                                    length(digits) + last > 0,
                                        concat(substring(digits, 1, length(digits) + last), '.',
                                               substring(digits, length(digits) + last + 1)),
                                    concat('0.', repeat('0', toUInt64(least(-(length(digits) + last), 9))), digits))))),
            [toInt64OrZero(g[4]) - length(fraction) + (length(lead) - length(digits))])[1],
            [trim(TRAILING '0' FROM lead)])[1],
            [trim(LEADING '0' FROM concat(g[2], fraction))])[1],
            [trim(TRAILING '0' FROM g[3])])[1],
            [extractGroups(v, '^([+-]?)([0-9]+)(?:\\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$')])[1]) AS value_read,
    -- properties as read from their JSON text: (a JSON object?, every value a string?, the
    -- keys sorted, their values in the same order)
    (p -> arrayMap(kvs -> (isValidJSON(p) AND JSONType(p) = 'Object',
                           arrayAll(kv -> startsWith(kv.2, '"'), JSONExtractKeysAndValuesRaw(p)),
                           arrayMap(kv -> kv.1, kvs), arrayMap(kv -> kv.2, kvs)),
                   [arraySort(kv -> kv.1, JSONExtractKeysAndValues(p, 'String'))])[1]) AS props_read,
    -- a meter's sorted property keys and values against the catalog: (the keys it does not
    -- declare, the values its declared value lists do not hold)
    ((m, ks, vs) -> (arrayFilter(k -> NOT has(meter_props[m], k), ks),
                     arrayFilter((v, k) -> NOT (empty(prop_values[concat(m, '\t', k)])
                                                OR has(prop_values[concat(m, '\t', k)], v)),
                                 vs, ks))) AS props_check,
    -- Nested objects and lists (one level, from the inside) written @, in a text whose
    -- strings are all "".
    (t -> replaceRegexpAll(t, '\\{[^{}\\[\\]]*\\}|\\[[^{}\\[\\]]*\\]', '@')) AS flat_nested,
    -- A row of field columns (Parquet, the Python API) whose text is not UTF-8: the first
    -- such field named, in words; '' when all are UTF-8.
    ((m, t, v, p, s) -> if(isValidUTF8(ifNull(m, '')) AND isValidUTF8(ifNull(t, '')) AND isValidUTF8(ifNull(v, ''))
                           AND isValidUTF8(ifNull(p, '')) AND isValidUTF8(ifNull(s, '')), '',
                           concat('field ', arrayFilter(f -> NOT isValidUTF8(f.2),
                                                        [('meter', ifNull(m, '')), ('timestamp', ifNull(t, '')),
                                                         ('value', ifNull(v, '')), ('properties', ifNull(p, '')),
                                                         ('source', ifNull(s, ''))])[1].1, ' is not UTF-8 text'))) AS not_utf8_words,
    -- The characters an id may not hold: control, format (bidirectional, zero-width,
    -- byte-order mark), private-use, separators and every space but U+0020.
    '[\\p{C}\\p{Zl}\\p{Zp}\\x{00A0}\\x{1680}\\x{2000}-\\x{200A}\\x{202F}\\x{205F}\\x{3000}]' AS not_printable,
    -- Why a text is not a printable id: 0 it is, 1 not UTF-8, 2 a character it may not
    -- hold, 3 a space at either end.
    (t -> if(match(t, '^[!-~]([ -~]*[!-~])?$'), 0,
             multiIf(NOT isValidUTF8(t), 1, match(t, not_printable), 2,
                     startsWith(t, ' ') OR endsWith(t, ' '), 3, 0))) AS id_code,
    ((code, t) -> multiIf(code = 1, 'is not UTF-8 text',
                          code = 2, concat('contains the character U+',
                                           -- its code point, from UTF-32 (at least 4 hex digits)
                                           substring(hex(convertCharset(extract(t, concat('(', not_printable, ')')),
                                                                        'UTF-8', 'UTF-32BE')),
                                                     if(startsWith(hex(convertCharset(extract(t, concat('(', not_printable, ')')),
                                                                                      'UTF-8', 'UTF-32BE')), '0000'), 5, 3)),
                                           ' (a control, format, invisible or special space character)'),
                          'starts or ends with a space')) AS id_problem,
    -- The steps are CTEs of a few columns each: a column of the step before is read as a
    -- column, where an alias of the same step is written out again at each use while the
    -- engine analyses the query (one step of them all was a query tree of 21,500 lines and
    -- cost ~0.5 s of analysis per batch, whatever its size).
    -- Each distinct (meter, properties) of the batch's Parquet and API rows, read once.
    props_distinct AS (
        SELECT pd_meter, pd_text, 1 AS pd_hit,
               props_read(ifNull(nullIf(pd_text, ''), '{}')) AS pd_read,
               props_check(pd_meter, pd_read.3, pd_read.4) AS pd_check
        FROM (SELECT DISTINCT ifNull(meter, '') AS pd_meter, ifNull(properties, '') AS pd_text
              FROM {{staging}}
              WHERE is_json = 0 AND csv_header = '')
    ),
    {{> ingest/_fields}}
    values_read AS (
        SELECT
            *,
            ifNull(f_event_id, '') AS eid,
            ifNull(f_customer_id, '') AS cid,
            -- RFC 3339 date-time. The engine's parser reads a text of the right shape, and
            -- printing the instant back (at the text's own offset) must give the text's
            -- date and time: that refuses 2026-11-31, 24:00:00 and leap seconds.
            ifNull(f_timestamp, '') AS ts_text,
            match(ts_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$') AS ts_shape,
            endsWith(ts_text, 'Z') OR endsWith(ts_text, 'z') AS ts_zulu,
            if(ts_zulu, 0, toInt32OrZero(substring(ts_text, length(ts_text) - 4, 2))) AS ts_offset_hours,
            if(ts_zulu, 0, toInt32OrZero(right(ts_text, 2))) AS ts_offset_minutes,
            ts_offset_hours <= 23 AND ts_offset_minutes <= 59 AS ts_offset_ok,
            if(ts_shape AND ts_offset_ok, parseDateTime64BestEffortOrNull(upper(ts_text), 3, 'UTC'), NULL) AS ts_parsed,
            ts_parsed IS NOT NULL
                AND formatDateTime(addSeconds(ts_parsed, if(startsWith(right(ts_text, 6), '-'), -1, 1)
                                                        * (ts_offset_hours * 3600 + ts_offset_minutes * 60)),
                                   '%Y-%m-%d %H:%i:%S')
                    = concat(left(ts_text, 10), ' ', substring(ts_text, 12, 8))
                AND toUInt16OrZero(left(ts_text, 4)) BETWEEN 1900 AND 2299 AS ts_real,
            if(ts_real, ts_parsed, NULL) AS ts,
            -- value: the common plain forms are read at once; others are checked digit by
            -- digit (only those rows: multiIf evaluates a branch for the rows that reach it).
            -- Only an absent value (no JSON key, JSON null, an empty unquoted CSV cell, a
            -- Parquet null: f_value IS NULL) means 1; an empty or blank text ("" in JSON, a
            -- quoted "" in CSV, '' in Parquet) is not a number: non_numeric_value.
            f_value IS NULL AS val_default,
            val_default OR match(f_value, '^-?[0-9]{1,12}(\\.[0-9]{1,9})?$') AS val_plain,
            if(val_plain, (0, ''), value_read(f_value)) AS val_read
        FROM fields
    ),
    parsed AS (
        SELECT
            *,
            val_read.1 AS val_problem,
            multiIf(val_default, toDecimal128(1, 9), val_plain, toDecimal128OrNull(f_value, 9),
                    val_problem = 0, toDecimal128OrNull(val_read.2, 9), NULL) AS val,
            ifNull(nullIf(f_properties, ''), '{}') AS props_json,
            -- A batch holds few distinct (meter, properties) pairs: a Parquet or API row's are
            -- read once per pair (props_distinct), the others' (JSON and CSV lines) here.
            if(pd_hit, pd_read, props_read(props_json)) AS props,
            if(pd_hit, pd_check, props_check(ifNull(f_meter, ''), props.3, props.4)) AS props_checked
        FROM values_read
        LEFT JOIN props_distinct ON pd_meter = ifNull(f_meter, '') AND pd_text = ifNull(f_properties, '')
    ),
    props_split AS (
        SELECT
            *,
            props.1 AS props_is_object,
            props.2 AS props_all_strings,
            props.3 AS pkeys,
            props.4 AS pvals,
            meter_props[ifNull(f_meter, '')] AS allowed_keys,
            props_checked.1 AS unknown_keys,
            props_checked.2 AS bad_values
        FROM parsed
    ),
    checked AS (
        SELECT
            *,
            id_code(eid) AS eid_code,
            id_code(cid) AS cid_code,
            -- The first defect, in the order of `reasons` below (0: none). Only cheap tests,
            -- all evaluated (a 26-way multiIf would filter every column at each step); the
            -- words of the detail are written for rejected rows only (below).
            indexOf([
                row_code != 0,
                id_type_bad,
                eid = '',
                customer_type_bad,
                cid = '',
                f_meter IS NULL OR f_meter = '',
                ts_text = '',
                eid_code != 0,
                lengthUTF8(eid) > 128,
                cid_code != 0,
                NOT ts_shape,
                NOT ts_offset_ok,
                NOT ts_real,
                ts < min_ts,
                ts > max_ts,
                NOT has(meter_names, f_meter),
                val_problem = 1,
                val_problem = 2,
                val_problem = 3 OR val IS NULL OR value_error != '',
                val < 0 AND has(counter_meters, f_meter),
                properties_error != '',
                NOT props_is_object,
                NOT props_all_strings,
                length(arrayDistinct(pkeys)) != length(pkeys),
                notEmpty(unknown_keys),
                notEmpty(bad_values)
            ], 1) AS defect_code
        FROM props_split
    ),
    validated AS (
        SELECT
            *,
            ['malformed_row', 'bad_event_id', 'missing_field', 'bad_customer_id', 'missing_field', 'missing_field',
             'missing_field', 'bad_event_id', 'bad_event_id', 'bad_customer_id', 'bad_timestamp', 'bad_timestamp',
             'bad_timestamp', 'timestamp_too_old', 'timestamp_in_future', 'unknown_meter', 'non_numeric_value',
             'value_out_of_range', 'value_out_of_range', 'negative_value', 'bad_properties', 'bad_properties',
             'bad_properties', 'bad_properties', 'bad_properties', 'bad_properties'] AS reasons,
            if(defect_code = 0, '', reasons[defect_code]) AS defect,
            -- The words, for rejected rows only (`if` runs its branch for those rows).
            if(defect_code = 0, '', multiIf(
            defect_code = 1, row_words,
            defect_code = 2, concat('event_id must be a string or an integer, not ', id_as_written),
            defect_code = 3, 'event_id is missing or empty',
            defect_code = 4, concat('customer_id must be a string or an integer, not ', customer_as_written),
            defect_code = 5, 'customer_id is missing or empty',
            defect_code = 6, 'meter is missing or empty',
            defect_code = 7, 'timestamp is missing or empty',
            defect_code = 8, concat('event_id ', id_problem(eid_code, eid), '; ids must be printable text'),
            defect_code = 9, concat('event_id has ', toString(lengthUTF8(eid)), ' characters; at most 128'),
            defect_code = 10, concat('customer_id ', id_problem(cid_code, cid), '; ids must be printable text'),
            defect_code = 11, concat('timestamp ', ts_text, multiIf(
                match(ts_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?$'),
                    ' has no offset, so it is ambiguous: add Z (UTC) or +hh:mm/-hh:mm',
                match(ts_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}([Zz]|[+-][0-9]{2}:[0-9]{2})$'),
                    ' has no seconds',
                match(ts_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?[+-][0-9]{2}:?[0-9]{0,2}$'),
                    ' has an offset not written +hh:mm or -hh:mm',
                ' is not an RFC 3339 date-time'), ts_hint),
            defect_code = 12, concat('timestamp ', ts_text, ' has the offset ', right(ts_text, 6),
                                       ', out of range (hours 00-23, minutes 00-59)'),
            defect_code = 13, concat('timestamp ', ts_text,
                                       if(toUInt16OrZero(left(ts_text, 4)) BETWEEN 1900 AND 2299,
                                          ' is not a real date and time (month 01-12, a day of that month, hours 00-23, minutes and seconds 00-59)',
                                          ' is outside the years 1900-2299'), ts_hint),
            defect_code = 14, concat('timestamp ', ts_text, ' is older than this ingest accepts: events from ',
                                       toString(min_ts), ' UTC on (the maximum event age, ', toString(max_age_days),
                                       ' days before the ingest time or --as-of: METERLINE_MAX_EVENT_AGE_DAYS); to ',
                                       'load older events (a backfill), run ingest with --as-of set shortly after them'),
            defect_code = 15, concat('timestamp ', ts_text, ' is after ', toString(max_ts),
                                       ' UTC, later than the ingest time allows (METERLINE_FUTURE_TOLERANCE_S)'),
            defect_code = 16, concat('meter ', f_meter, ' is not in the catalog (known: ',
                                       arrayStringConcat(arraySort(meter_names), ', '), ')'),
            defect_code = 17, concat('value ', if(match(f_value, '^\\s*$'), concat('"', f_value, '" (empty or blank text)'), f_value),
                                     ' is not a decimal number (digits, an optional sign, ',
                                     'decimal point and exponent: 12, -0.5, 1.5e3)',
                                     if(match(f_value, '^\\s*$'), '; leave the value out (JSON: no key or null, CSV: an empty unquoted cell) for the default 1', '')),
            defect_code = 18, concat('value ', f_value, ' is out of range: at most 1000000000000 (10^12) ',
                                       'in absolute value'),
            defect_code = 19, if(val_problem = 3 OR val IS NULL,
                                 concat('value ', f_value, ' has more than 9 decimal places; values are ',
                                        'kept exactly to 9, never rounded: round it before sending'),
                                 value_error),
            defect_code = 20, concat('value ', f_value, ' is negative; meter ', f_meter,
                                       ' is a counter and only counts up'),
            defect_code = 21, properties_error,
            defect_code = 22, concat('properties ', props_json, ' is not a JSON object'),
            defect_code = 23, concat('properties ', props_json, ': every value must be a string'),
            defect_code = 24, concat('properties ', props_json, ' repeat a key'),
            defect_code = 25, concat('unknown property ', arrayStringConcat(unknown_keys, ', '),
                                       ' for meter ', f_meter, ' (allowed: ', arrayStringConcat(allowed_keys, ', '), ')'),
            defect_code = 26, concat('property value ', arrayStringConcat(bad_values, ', '),
                                       ' is not allowed for meter ', f_meter),
            '')) AS defect_words,
            if(defect_code = 0,
               cityHash64(assumeNotNull(f_customer_id), assumeNotNull(f_meter),
                          toUnixTimestamp64Milli(assumeNotNull(ts)), assumeNotNull(val), pkeys, pvals),
               toUInt64(0)) AS content_hash
        FROM checked
    )
-- Only what classify needs is kept (the table lives for one batch, in memory). The
-- flags are plain UInt8: a test on a LowCardinality column is one, and a Memory table
-- refuses LowCardinality(UInt8).
SELECT seq, source, source_line, defect, defect_words, content_hash, eid, raw,
       CAST(is_json, 'UInt8') AS is_json, CAST(is_csv, 'UInt8') AS is_csv,
       f_event_id, f_customer_id, f_meter, f_timestamp, f_value, f_properties, f_source,
       ts, val, pkeys, pvals
FROM validated
-- Every if/multiIf/and/or evaluates a branch only for the rows that reach it: the JSON and
-- CSV parsing is not run for Parquet rows, nor the detail words for accepted rows (~15%
-- of the CPU time). But an expression that several such branches use is then computed
-- once per use if the plan merges the steps into one: a batch of 50,000 JSON lines parsed
-- each line ~20 times (2.3 CPU-s; 0.28 with the steps kept apart and the CTEs above).
-- Kept apart, a Parquet batch of 1M rows costs 15% less CPU too (2.98 -> 2.52 CPU-s).
SETTINGS short_circuit_function_evaluation = 'force_enable', query_plan_merge_expressions = 0
