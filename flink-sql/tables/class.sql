-- Flink job of table `class`: its Debezium change events (Kafka) -> the sink ([sink] kind), upserted on `class_id`.
-- Rendered by `cdc-orchestrator render class`; the double-brace placeholders come from its configuration.
-- Source types follow debezium/university-connector.json: decimals arrive as strings (decimal.handling.mode=string)
-- and are read as DECIMAL; TIMESTAMP arrives as epoch milliseconds (BIGINT) and DATE as epoch days (INT)
-- (time.precision.mode=connect); the INSERT converts them in UTC (setup.sql sets the session time zone).

-- The Kafka source: the table's Debezium topic, read as a changelog. The sidecar fills in its options from [kafka],
-- the same for every table: topic, brokers, and the job's consumer group, whose committed offsets it resumes from.
DROP TEMPORARY TABLE IF EXISTS `default_catalog`.`default_database`.`cdc_source_class`;

CREATE TEMPORARY TABLE `default_catalog`.`default_database`.`cdc_source_class` (
    `class_id`       STRING,
    `course_id`      INT,
    `lecturer_id`    INT,
    `academic_year`  STRING,
    `semester`       INT,
    `class_code`     STRING,
    `room_code`      STRING,
    `schedule_day`   STRING,
    `schedule_time`  STRING,
    `capacity`       INT,
    `enrolled_count` INT,
    `class_status`   STRING,
    `created_at`     BIGINT,
    PRIMARY KEY (`class_id`) NOT ENFORCED
) WITH (
{{ source_options }}
);

-- The sink, keyed like Postgres so that updates are upserts and deletes are applied. [sink] kind chooses it: an
-- Iceberg v2 table (the default), or with "jdbc" a database table, which must exist, written by Flink's JDBC
-- connector. The sidecar fills in the sink's statement, options and name, the same for every table.
{{ sink_create }} (
    `class_id`       STRING NOT NULL,
    `course_id`      INT,
    `lecturer_id`    INT,
    `academic_year`  STRING,
    `semester`       INT,
    `class_code`     STRING,
    `room_code`      STRING,
    `schedule_day`   STRING,
    `schedule_time`  STRING,
    `capacity`       INT,
    `enrolled_count` INT,
    `class_status`   STRING,
    `created_at`     TIMESTAMP(3),
    PRIMARY KEY (`class_id`) NOT ENFORCED
) WITH (
{{ sink_options }}
);

-- Every change (snapshot reads, inserts, updates and deletes) goes to the sink: the source is a changelog.
INSERT INTO {{ sink_table }}
SELECT
    `class_id`,
    `course_id`,
    `lecturer_id`,
    `academic_year`,
    `semester`,
    `class_code`,
    `room_code`,
    `schedule_day`,
    `schedule_time`,
    `capacity`,
    `enrolled_count`,
    `class_status`,
    CAST(TO_TIMESTAMP_LTZ(`created_at`, 3) AS TIMESTAMP(3)) AS `created_at`
FROM `default_catalog`.`default_database`.`cdc_source_class`;
