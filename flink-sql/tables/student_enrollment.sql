-- Flink job of table `student_enrollment`: its Debezium change events (Kafka) -> the sink ([sink] kind), upserted on `enrollment_id`.
-- Rendered by `cdc-orchestrator render student_enrollment`; the double-brace placeholders come from its configuration.
-- Source types follow debezium/university-connector.json: decimals arrive as strings (decimal.handling.mode=string)
-- and are read as DECIMAL; TIMESTAMP arrives as epoch milliseconds (BIGINT) and DATE as epoch days (INT)
-- (time.precision.mode=connect); the INSERT converts them in UTC (setup.sql sets the session time zone).

-- The Kafka source: the table's Debezium topic, read as a changelog. The sidecar fills in its options from [kafka],
-- the same for every table: topic, brokers, and the job's consumer group, whose committed offsets it resumes from.
DROP TEMPORARY TABLE IF EXISTS `default_catalog`.`default_database`.`cdc_source_student_enrollment`;

CREATE TEMPORARY TABLE `default_catalog`.`default_database`.`cdc_source_student_enrollment` (
    `enrollment_id`         INT,
    `student_id`            STRING,
    `registration_id`       STRING,
    `class_id`              STRING,
    `enrollment_date`       INT,
    `enrollment_status`     STRING,
    `final_grade`           DECIMAL(5,2),
    `grade_point`           DECIMAL(3,2),
    `attendance_percentage` DECIMAL(5,2),
    `created_at`            BIGINT,
    `updated_at`            BIGINT,
    PRIMARY KEY (`enrollment_id`) NOT ENFORCED
) WITH (
{{ source_options }}
);

-- The sink, keyed like Postgres so that updates are upserts and deletes are applied. [sink] kind chooses it: an
-- Iceberg v2 table (the default), or with "jdbc" a database table, which must exist, written by Flink's JDBC
-- connector. The sidecar fills in the sink's statement, options and name, the same for every table.
{{ sink_create }} (
    `enrollment_id`         INT NOT NULL,
    `student_id`            STRING,
    `registration_id`       STRING,
    `class_id`              STRING,
    `enrollment_date`       DATE,
    `enrollment_status`     STRING,
    `final_grade`           DECIMAL(5,2),
    `grade_point`           DECIMAL(3,2),
    `attendance_percentage` DECIMAL(5,2),
    `created_at`            TIMESTAMP(3),
    `updated_at`            TIMESTAMP(3),
    PRIMARY KEY (`enrollment_id`) NOT ENFORCED
) WITH (
{{ sink_options }}
);

-- Every change (snapshot reads, inserts, updates and deletes) goes to the sink: the source is a changelog.
INSERT INTO {{ sink_table }}
SELECT
    `enrollment_id`,
    `student_id`,
    `registration_id`,
    `class_id`,
    CAST(TO_TIMESTAMP_LTZ(CAST(`enrollment_date` AS BIGINT) * 86400000, 3) AS DATE) AS `enrollment_date`,
    `enrollment_status`,
    `final_grade`,
    `grade_point`,
    `attendance_percentage`,
    CAST(TO_TIMESTAMP_LTZ(`created_at`, 3) AS TIMESTAMP(3)) AS `created_at`,
    CAST(TO_TIMESTAMP_LTZ(`updated_at`, 3) AS TIMESTAMP(3)) AS `updated_at`
FROM `default_catalog`.`default_database`.`cdc_source_student_enrollment`;
