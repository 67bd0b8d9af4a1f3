-- Fragment, included as ingest/_fields by ingest/validate: the steps that read each staged
-- row's fields, for a batch holding JSON or CSV lines (any row kind). Gives every staged
-- column and: is_csv; row_code (why the row cannot be read as an event: 0 when it can),
-- row_words; id_type_bad, customer_type_bad (JSON: an id neither a string nor an
-- integer), id_as_written, customer_as_written; f_event_id .. f_source (each field's
-- text, NULL when absent). A batch of field columns only swaps in ingest/_fields_columns.
    json_read AS (
        SELECT
            *, csv_header != '' AS is_csv,
            -- A JSON line is parsed once (twice with a number beyond a double, below): every
            -- key with its value as written; then each event field's value as written (NULL
            -- when absent), in the order of event_fields. But a bare number reaches the JSON functions through a double: 15 to 17
            -- significant digits, so 123456789012.123456789 would read 123456789012.12346,
            -- 999999999999.999999999 as 10^12, 1e-400 as 0, event_id 1.0 as 1, and 1e400 makes
            -- them refuse the line. So a line that may hold such a number (a key followed by
            -- a number with a fraction, an exponent, 16 or more digits, or a minus zero) has
            -- its top-level numbers taken from its text (j_numbers: one per top-level member,
            -- in order, '' for a value that is not a number). Other lines' numbers are small
            -- integers, exact in a double.
            if(is_json, JSONExtractKeysAndValuesRaw(raw), []) AS j_kv_read,
            is_json AND match(raw, '"[ \\t\\r]*:[ \\t\\r]*(-?[0-9]+[.eE]|-?[0-9]{16}|-0)') AS j_exact,
            -- The line with every string written "" (numbers and brackets stay as written),
            -- its outer braces off (after a byte-order mark, which the JSON functions skip)
            -- and nested objects and lists written @: its members, one
            -- per comma, each `"": value`. (Each step uses the one before once, and holds no
            -- `if`: in an if-branch the engine evaluates a step again for every use of it.)
            if(j_exact, splitByChar(',', flat_nested(flat_nested(flat_nested(flat_nested(
                replaceRegexpAll(replaceRegexpAll(raw, '"(?:[^"\\\\]|\\\\.)*"', '""'),
                                 '^\\x{FEFF}?[ \\t\\r]*\\{|\\}[ \\t\\r]*$', '')))))), ['']) AS j_members,
            if(j_exact, arrayMap(m -> extract(m, '^[ \\t\\r]*""[ \\t\\r]*:[ \\t\\r]*(-?[0-9][0-9.eE+-]*)[ \\t\\r]*$'),
                                 j_members), ['']) AS j_numbers
        FROM {{staging}}
    ),
    json_values AS (
        SELECT
            *,
            -- A number beyond a double (1e400) makes the JSON functions refuse the line: such a
            -- line is read with the exponents of long-exponent numbers dropped (1e400 as 1;
            -- a number is changed only between delimiters, so a line that is not JSON stays
            -- so), its numbers' text still taken from j_numbers.
            j_exact AND empty(j_kv_read) AS j_beyond_double,
            if(j_beyond_double,
               replaceRegexpAll(raw, '("(?:[^"\\\\]|\\\\.)*")|([ \\t\\r,:\\[])(-?[0-9.]+)[eE][+-]?[0-9]{3,}([ \\t\\r,}\\]])',
                                '\\1\\2\\3\\4'),
               raw) AS j_text,
            if(j_beyond_double, JSONExtractKeysAndValuesRaw(j_text), j_kv_read) AS j_kv,
            arrayMap(kv -> kv.1, j_kv) AS j_keys,
            -- each member's value as written: its number's text, or what the JSON functions give
            arrayMap((kv, number) -> if(number = '', kv.2, number), j_kv, arrayResize(j_numbers, length(j_kv), '')) AS j_values
        FROM json_read
    ),
    texts_read AS (
        SELECT
            *,
            if(is_json, arrayMap(name -> if(has(j_keys, name), j_values[indexOf(j_keys, name)], NULL), event_fields),
               CAST([], 'Array(Nullable(String))')) AS j_raw,
            -- A CSV line is split into cells (each followed by the comma appended here); a
            -- cell's text has its quotes removed and "" unescaped; an empty unquoted cell is NULL.
            if(is_csv, splitByChar(',', csv_header), []) AS c_names,
            if(is_csv, extractAll(concat(raw, ','), '("(?:[^"]|"")*"|[^,"]*),'), []) AS c_cells,
            if(is_csv, arrayMap(name -> if(has(c_names, name),
                                           arrayMap(c -> if(startsWith(c, '"'), replaceAll(substring(c, 2, length(c) - 2), '""', '"'),
                                                            nullIf(c, '')),
                                                    [c_cells[indexOf(c_names, name)]])[1],
                                           NULL), event_fields),
               CAST([], 'Array(Nullable(String))')) AS c_text,
            -- The text of each field: a JSON string decoded, null as NULL, any other JSON
            -- value as written; a Parquet or API row's own columns (below, without building
            -- an array of them: most batches are all such rows).
            multiIf(is_json, arrayMap(r -> multiIf(r IS NULL OR r = 'null', NULL, startsWith(r, '"'), JSONExtractString(r), r), j_raw),
                    is_csv, c_text,
                    CAST([], 'Array(Nullable(String))')) AS texts
        FROM json_values
    ),
    fields AS (
        SELECT
            *,
            -- Why the line (or row) cannot be read as an event; 0 when it can.
            indexOf([
                parse_error != '',
                (is_json OR is_csv) AND NOT isValidUTF8(raw),
                -- (an object with members is what the JSON functions list: only a line they
                -- list nothing of is checked again)
                is_json AND empty(j_kv) AND NOT (isValidJSON(j_text) AND JSONType(j_text) = 'Object'),
                is_json AND length(arrayDistinct(j_keys)) != length(j_keys),
                is_json AND NOT hasAll(event_fields, j_keys),
                is_csv AND NOT match(raw, '^("(?:[^"]|"")*"|[^,"]*)(,("(?:[^"]|"")*"|[^,"]*))*$'),
                is_csv AND length(c_cells) != length(c_names),
                NOT is_json AND NOT is_csv
                    AND not_utf8_words(meter, timestamp, value, properties, event_source) != '',
                -- members nested deeper than flat_nested reaches hold commas: the line is
                -- refused rather than read through a double
                j_exact AND length(j_members) != length(j_kv)
            ], 1) AS row_code,
            -- Why, in words (for a row that cannot be read only: `if` runs its branch for those rows).
            if(row_code = 0, '', multiIf(
                row_code = 1, parse_error,
                row_code = 2, concat('the line is not UTF-8 text (the first bad byte is at character ',
                                       toString(position(toValidUTF8(raw), '\xEF\xBF\xBD')), '); save the file as UTF-8'),
                row_code = 3, 'the line is not a JSON object',
                row_code = 4, concat('the field ', arrayFilter((k, i) -> indexOf(j_keys, k) != i, j_keys,
                                                                 arrayEnumerate(j_keys))[1],
                                       ' appears more than once in the object; send it once'),
                row_code = 5, concat('unknown field ', arrayFilter(k -> NOT has(event_fields, k), j_keys)[1],
                                       ' (the fields are ', arrayStringConcat(event_fields, ', '), ')'),
                row_code = 6, 'the line is not valid CSV (a quote inside an unquoted field, or a quoted field not closed on its line)',
                row_code = 7, concat('the line has ', toString(length(c_cells)), ' fields, the header has ',
                                       toString(length(c_names))),
                row_code = 9, concat('the line nests objects or lists more than 5 deep beside a number that is ',
                                     'read from its text; write its numbers as strings, or send a flatter line'),
                not_utf8_words(meter, timestamp, value, properties, event_source))) AS row_words,
            -- In JSON an id is a string or an integer.
            is_json AND NOT (j_raw[1] IS NULL OR j_raw[1] = 'null' OR startsWith(j_raw[1], '"') OR match(j_raw[1], '^-?[0-9]+$')) AS id_type_bad,
            is_json AND NOT (j_raw[2] IS NULL OR j_raw[2] = 'null' OR startsWith(j_raw[2], '"') OR match(j_raw[2], '^-?[0-9]+$')) AS customer_type_bad,
            -- an id of another JSON type, as written (for the words)
            if(id_type_bad, j_raw[1], '') AS id_as_written,
            if(customer_type_bad, j_raw[2], '') AS customer_as_written,
            if(is_json OR is_csv, texts[1], event_id) AS f_event_id,
            if(is_json OR is_csv, texts[2], customer_id) AS f_customer_id,
            if(is_json OR is_csv, texts[3], meter) AS f_meter,
            if(is_json OR is_csv, texts[4], timestamp) AS f_timestamp,
            if(is_json OR is_csv, texts[5], value) AS f_value,
            if(is_json OR is_csv, texts[6], properties) AS f_properties,
            if(is_json OR is_csv, texts[7], event_source) AS f_source
        FROM texts_read
    ),
