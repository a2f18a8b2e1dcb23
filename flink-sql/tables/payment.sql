-- Flink job of table `payment`: its Debezium change events (Kafka) -> the sink ([sink] kind), upserted on `payment_id`.
-- Rendered by `cdc-orchestrator render payment`; the double-brace placeholders come from its configuration.
-- Source types follow debezium/university-connector.json: decimals arrive as strings (decimal.handling.mode=string)
-- and are read as DECIMAL; TIMESTAMP arrives as epoch milliseconds (BIGINT) and DATE as epoch days (INT)
-- (time.precision.mode=connect); the INSERT converts them in UTC (setup.sql sets the session time zone).

-- The Kafka source: the table's Debezium topic, read as a changelog. The sidecar fills in its options from [kafka],
-- the same for every table: topic, brokers, and the job's consumer group, whose committed offsets it resumes from.
DROP TEMPORARY TABLE IF EXISTS `default_catalog`.`default_database`.`cdc_source_payment`;

CREATE TEMPORARY TABLE `default_catalog`.`default_database`.`cdc_source_payment` (
    `payment_id`             STRING,
    `student_id`             STRING,
    `registration_id`        STRING,
    `payment_type`           STRING,
    `payment_amount`         DECIMAL(12,2),
    `bank_name`              STRING,
    `virtual_account_number` STRING,
    `payment_channel`        STRING,
    `payment_time`           BIGINT,
    `payment_status`         STRING,
    `installment_number`     INT,
    `late_fee_charged`       DECIMAL(12,2),
    `total_paid_amount`      DECIMAL(12,2),
    `payment_proof_url`      STRING,
    `due_date`               INT,
    `created_at`             BIGINT,
    `updated_at`             BIGINT,
    PRIMARY KEY (`payment_id`) NOT ENFORCED
) WITH (
{{ source_options }}
);

-- The sink, keyed like Postgres so that updates are upserts and deletes are applied. [sink] kind chooses it: an
-- Iceberg v2 table (the default), or with "jdbc" a database table, which must exist, written by Flink's JDBC
-- connector. The sidecar fills in the sink's statement, options and name, the same for every table.
{{ sink_create }} (
    `payment_id`             STRING NOT NULL,
    `student_id`             STRING,
    `registration_id`        STRING,
    `payment_type`           STRING,
    `payment_amount`         DECIMAL(12,2),
    `bank_name`              STRING,
    `virtual_account_number` STRING,
    `payment_channel`        STRING,
    `payment_time`           TIMESTAMP(3),
    `payment_status`         STRING,
    `installment_number`     INT,
    `late_fee_charged`       DECIMAL(12,2),
    `total_paid_amount`      DECIMAL(12,2),
    `payment_proof_url`      STRING,
    `due_date`               DATE,
    `created_at`             TIMESTAMP(3),
    `updated_at`             TIMESTAMP(3),
    PRIMARY KEY (`payment_id`) NOT ENFORCED
) WITH (
{{ sink_options }}
);

-- Every change (snapshot reads, inserts, updates and deletes) goes to the sink: the source is a changelog.
INSERT INTO {{ sink_table }}
SELECT
    `payment_id`,
    `student_id`,
    `registration_id`,
    `payment_type`,
    `payment_amount`,
    `bank_name`,
    `virtual_account_number`,
    `payment_channel`,
    CAST(TO_TIMESTAMP_LTZ(`payment_time`, 3) AS TIMESTAMP(3)) AS `payment_time`,
    `payment_status`,
    `installment_number`,
    `late_fee_charged`,
    `total_paid_amount`,
    `payment_proof_url`,
    CAST(TO_TIMESTAMP_LTZ(CAST(`due_date` AS BIGINT) * 86400000, 3) AS DATE) AS `due_date`,
    CAST(TO_TIMESTAMP_LTZ(`created_at`, 3) AS TIMESTAMP(3)) AS `created_at`,
    CAST(TO_TIMESTAMP_LTZ(`updated_at`, 3) AS TIMESTAMP(3)) AS `updated_at`
FROM `default_catalog`.`default_database`.`cdc_source_payment`;
