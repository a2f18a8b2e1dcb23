-- Flink job of table `course`: its Debezium change events (Kafka) -> the sink ([sink] kind), upserted on `id`.
-- Rendered by `cdc-orchestrator render course`; the double-brace placeholders come from its configuration.
-- Source types follow debezium/university-connector.json: decimals arrive as strings (decimal.handling.mode=string)
-- and are read as DECIMAL; TIMESTAMP arrives as epoch milliseconds (BIGINT) and DATE as epoch days (INT)
-- (time.precision.mode=connect); the INSERT converts them in UTC (setup.sql sets the session time zone).

-- The Kafka source: the table's Debezium topic, read as a changelog. The sidecar fills in its options from [kafka],
-- the same for every table: topic, brokers, and the job's consumer group, whose committed offsets it resumes from.
DROP TEMPORARY TABLE IF EXISTS `default_catalog`.`default_database`.`cdc_source_course`;

CREATE TEMPORARY TABLE `default_catalog`.`default_database`.`cdc_source_course` (
    `id`          INT,
    `course_code` STRING,
    `course_name` STRING,
    `credits`     INT,
    `program_id`  INT,
    `created_at`  BIGINT,
    PRIMARY KEY (`id`) NOT ENFORCED
) WITH (
{{ source_options }}
);

-- The sink, keyed like Postgres so that updates are upserts and deletes are applied. [sink] kind chooses it: an
-- Iceberg v2 table (the default), or with "jdbc" a database table, which must exist, written by Flink's JDBC
-- connector. The sidecar fills in the sink's statement, options and name, the same for every table.
{{ sink_create }} (
    `id`          INT NOT NULL,
    `course_code` STRING,
    `course_name` STRING,
    `credits`     INT,
    `program_id`  INT,
    `created_at`  TIMESTAMP(3),
    PRIMARY KEY (`id`) NOT ENFORCED
) WITH (
{{ sink_options }}
);

-- Every change (snapshot reads, inserts, updates and deletes) goes to the sink: the source is a changelog.
INSERT INTO {{ sink_table }}
SELECT
    `id`,
    `course_code`,
    `course_name`,
    `credits`,
    `program_id`,
    CAST(TO_TIMESTAMP_LTZ(`created_at`, 3) AS TIMESTAMP(3)) AS `created_at`
FROM `default_catalog`.`default_database`.`cdc_source_course`;
