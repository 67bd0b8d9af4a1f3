-- One batch of incoming rows, as text, exactly as they arrived. A JSON line is kept
-- whole in `raw` and parsed by the classify query, so a broken line is still a row.
CREATE TABLE {{staging}}
(
    seq          UInt64,
    source       String,
    source_line  UInt64,
    is_json      UInt8,
    raw          String,
    parse_error  String,
    event_id     Nullable(String),
    customer_id  Nullable(String),
    meter        Nullable(String),
    timestamp    Nullable(String),
    value        Nullable(String),
    properties   Nullable(String),
    event_source Nullable(String)
)
ENGINE = Memory
