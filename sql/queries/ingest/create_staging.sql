-- One batch of incoming rows, as they arrived. A JSON or CSV line is kept whole in `raw`
-- (undecoded: the classify query checks it is UTF-8) and parsed by the classify query,
-- so a broken line is still a row; Parquet and API rows arrive as one text per field.
CREATE TABLE {{staging}}
(
    seq              UInt64,
    source           String,
    source_line      UInt64,
    is_json          UInt8,
    -- a CSV line's field names in file order, comma-joined; '' for other rows
    csv_header       LowCardinality(String),
    raw              String,
    parse_error      String,
    properties_error String,
    value_error      String,
    event_id         Nullable(String),
    customer_id      Nullable(String),
    meter            Nullable(String),
    timestamp        Nullable(String),
    value            Nullable(String),
    properties       Nullable(String),
    event_source     Nullable(String)
)
ENGINE = Memory
