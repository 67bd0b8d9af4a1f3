CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER meterline_cluster
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplicatedMergeTree
ORDER BY version;
