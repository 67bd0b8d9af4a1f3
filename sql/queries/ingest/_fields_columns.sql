-- Fragment, swapped in for ingest/_fields by a batch whose rows are all field columns
-- (Parquet files, the Python API): the same columns, without the steps that parse JSON
-- and CSV lines (20-30% of validate's CPU time on a Parquet batch even when no row took
-- their branches: 2.26 -> 1.61 CPU-s for 1M rows, measured side by side).
    fields AS (
        SELECT
            *,
            toUInt8(0) AS is_csv,
            not_utf8_words(meter, timestamp, value, properties, event_source) AS column_words,
            multiIf(parse_error != '', 1, column_words != '', 8, 0) AS row_code,
            multiIf(row_code = 1, parse_error, column_words) AS row_words,
            false AS id_type_bad,
            false AS customer_type_bad,
            '' AS id_as_written,
            '' AS customer_as_written,
            event_id AS f_event_id,
            customer_id AS f_customer_id,
            meter AS f_meter,
            timestamp AS f_timestamp,
            value AS f_value,
            properties AS f_properties,
            event_source AS f_source
        FROM {{staging}}
    ),
