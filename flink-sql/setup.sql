-- Session and catalog set-up, submitted before every table's statements (see `cdc-orchestrator render <table>`).
-- The double-brace placeholders are filled from the sidecar's configuration; the catalog credential and the S3
-- keys come from its environment (POLARIS_CLIENT_ID, POLARIS_CLIENT_SECRET, AWS_ACCESS_KEY_ID,
-- AWS_SECRET_ACCESS_KEY) at render time and are never written into these files. Only the Iceberg sink
-- ([sink] kind = "iceberg", the default) needs a catalog; the JDBC sink's tables are declared per table.

-- The INSERTs turn Debezium's epoch values into TIMESTAMP and DATE: do that in UTC, whatever the JVM's zone.
SET 'table.local-time-zone' = 'UTC';

-- Checkpointing (Iceberg commits, and the Kafka source commits its offsets, when a checkpoint completes), the job's
-- name and its pinned id are set by the launcher from flink.checkpoint_interval; templates must not set them.

{% if sink == "iceberg" -%}
-- Flink 1.18 has no CREATE CATALOG IF NOT EXISTS: re-create it, so a reused session always has the current
-- settings. Running jobs are unaffected (they carry their own catalog loader).
DROP CATALOG IF EXISTS `iceberg`;

-- Iceberg REST catalog (Apache Polaris) with S3FileIO on MinIO.
CREATE CATALOG `iceberg` WITH (
    'type' = 'iceberg',
    'catalog-type' = 'rest',
    'uri' = '{{ catalog_uri }}',
    'warehouse' = '{{ warehouse }}',
    'credential' = '{{ polaris_client_id }}:{{ polaris_client_secret }}',
    'scope' = '{{ scope }}',
    'io-impl' = 'org.apache.iceberg.aws.s3.S3FileIO',
    's3.endpoint' = '{{ s3_endpoint }}',
    's3.path-style-access' = '{{ s3_path_style_access }}',
    's3.access-key-id' = '{{ s3_access_key_id }}',
    's3.secret-access-key' = '{{ s3_secret_access_key }}',
    'client.region' = '{{ s3_region }}'
);

CREATE DATABASE IF NOT EXISTS `iceberg`.`{{ database }}`;
{%- endif %}
