import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

import org.apache.flink.api.common.JobID;
import org.apache.flink.client.deployment.StandaloneClusterId;
import org.apache.flink.client.program.rest.RestClusterClient;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.core.execution.SavepointFormatType;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.table.api.internal.TableEnvironmentInternal;
import org.apache.flink.table.catalog.Column;
import org.apache.flink.table.operations.Operation;
import org.apache.flink.table.operations.command.ResetOperation;
import org.apache.flink.table.operations.command.SetOperation;
import org.apache.flink.table.operations.command.StopJobOperation;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;

/**
 * One SQL Gateway session: a {@link TableEnvironment} that runs statements against the session cluster, and the
 * operations (statements) submitted to it.
 *
 * <p>Every statement runs on the session's one thread: Flink's planner keeps per-thread state, and an INSERT
 * planned on another thread than the DDL before it fails ({@code NullPointerException: metadataHandlerProvider}).
 * Sessions are independent, so several run at once.
 */
final class GatewaySession {
    /** Rows a query answers with at most; the rest is dropped (this gateway is not for big query results). */
    private static final int MAX_ROWS = 1000;

    /** Where an operation is, as the gateway's {@code OperationStatus} names it. */
    enum Status { PENDING, RUNNING, FINISHED, ERROR, CANCELED }

    /** A statement's result: column names and types, rows, and the job it submitted. */
    record Result(List<String> columns, List<String> types, List<List<Object>> rows, String jobId) {}

    /** One submitted statement. */
    static final class Submitted {
        final String statement;
        final long submittedNanos = System.nanoTime();
        volatile Status status = Status.PENDING;
        volatile Result result;
        volatile Throwable error;
        volatile Future<?> future;

        Submitted(String statement) {
            this.statement = statement;
        }
    }

    final String handle = UUID.randomUUID().toString();
    final String name;
    private final Map<String, String> defaults;
    private final Configuration clusterConfig;
    private final ExecutorService thread;
    private final Map<String, Submitted> operations = new ConcurrentHashMap<>();
    private volatile long lastSeenNanos = System.nanoTime();
    /** Created on the session's thread by its first statement, used only there. */
    private TableEnvironment tableEnv;

    GatewaySession(String name, Map<String, String> properties, Configuration clusterConfig) {
        this.name = name;
        this.defaults = new LinkedHashMap<>(properties);
        this.clusterConfig = clusterConfig;
        this.thread = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "session-" + handle.substring(0, 8));
            t.setDaemon(true);
            return t;
        });
    }

    void touch() {
        lastSeenNanos = System.nanoTime();
    }

    long idleMillis() {
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - lastSeenNanos);
    }

    /** Queues a statement; it runs after the ones before it. */
    String submit(String statement) {
        touch();
        String operationHandle = UUID.randomUUID().toString();
        Submitted operation = new Submitted(statement);
        operations.put(operationHandle, operation);
        operation.future = thread.submit(() -> run(operationHandle, operation));
        return operationHandle;
    }

    Submitted operation(String operationHandle) {
        return operations.get(operationHandle);
    }

    /** Cancels a statement that has not finished; a submitted job keeps running (as in Flink's gateway). */
    void cancel(String operationHandle) {
        Submitted operation = operations.get(operationHandle);
        if (operation != null && operation.status.compareTo(Status.FINISHED) < 0) {
            operation.status = Status.CANCELED;
            operation.future.cancel(true);
        }
    }

    void closeOperation(String operationHandle) {
        cancel(operationHandle);
        operations.remove(operationHandle);
    }

    /** The session configuration as the gateway's {@code GET /sessions/{handle}} shows it. */
    Map<String, String> properties() {
        try {
            return thread.submit(() -> env().getConfig().getConfiguration().toMap()).get(10, TimeUnit.SECONDS);
        } catch (Exception e) {
            return defaults;
        }
    }

    void close() {
        operations.values().forEach(op -> op.future.cancel(true));
        operations.clear();
        thread.shutdownNow();
    }

    private void run(String operationHandle, Submitted operation) {
        if (operation.status == Status.CANCELED) {
            return;
        }
        operation.status = Status.RUNNING;
        try {
            operation.result = execute(operation.statement);
            operation.status = Status.FINISHED;
        } catch (Throwable t) {
            operation.error = t;
            operation.status = Status.ERROR;
        }
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - operation.submittedNanos);
        String job = operation.result != null && operation.result.jobId() != null ? " job " + operation.result.jobId() : "";
        LocalSqlGateway.log("session %s operation %s %s in %d ms%s: %s", handle.substring(0, 8),
                operationHandle.substring(0, 8), operation.status, millis, job, summary(operation.statement));
    }

    private TableEnvironment env() {
        if (tableEnv == null) {
            Configuration config = new Configuration(clusterConfig);
            defaults.forEach(config::setString);
            tableEnv = TableEnvironment.create(
                    EnvironmentSettings.newInstance().inStreamingMode().withConfiguration(config).build());
        }
        return tableEnv;
    }

    private Result execute(String statement) throws Exception {
        TableEnvironmentInternal env = (TableEnvironmentInternal) env();
        List<Operation> parsed = env.getParser().parse(statement);
        if (parsed.size() != 1) {
            throw new IllegalArgumentException("expected one statement, got " + parsed.size());
        }
        Operation op = parsed.get(0);
        Configuration config = env.getConfig().getConfiguration();
        if (op instanceof SetOperation set) {
            if (set.getKey().isPresent() && set.getValue().isPresent()) {
                // Session settings reach the jobs submitted later, e.g. pipeline.name and the pinned
                // $internal.pipeline.job-id, because the planner hands this configuration to the executor.
                config.setString(set.getKey().get(), set.getValue().get());
                return ok();
            }
            List<List<Object>> rows = new ArrayList<>();
            config.toMap().forEach((k, v) -> rows.add(List.of(k, v)));
            return new Result(List.of("key", "value"), List.of("VARCHAR", "VARCHAR"), rows, null);
        }
        if (op instanceof ResetOperation reset) {
            if (reset.getKey().isPresent()) {
                String key = reset.getKey().get();
                config.removeKey(key);
                Optional.ofNullable(defaults.get(key)).ifPresent(v -> config.setString(key, v));
            } else {
                config.toMap().keySet().forEach(config::removeKey);
                defaults.forEach(config::setString);
            }
            return ok();
        }
        if (op instanceof StopJobOperation stop) {
            return stopJob(stop, config);
        }
        TableResult result = env.executeInternal(op);
        Optional<JobClient> job = result.getJobClient();
        if (job.isPresent() && result.getResultKind().name().equals("SUCCESS_WITH_CONTENT") && isModify(op)) {
            // The gateway answers an INSERT with its job id, without waiting for the job.
            String jobId = job.get().getJobID().toHexString();
            return new Result(List.of("job id"), List.of("VARCHAR"), List.of(List.of(jobId)), jobId);
        }
        return rows(result);
    }

    private static boolean isModify(Operation op) {
        return op instanceof org.apache.flink.table.operations.ModifyOperation
                || op instanceof org.apache.flink.table.operations.StatementSetOperation;
    }

    private Result stopJob(StopJobOperation stop, Configuration config) throws Exception {
        Configuration clientConfig = new Configuration(clusterConfig);
        try (RestClusterClient<StandaloneClusterId> client =
                new RestClusterClient<>(clientConfig, StandaloneClusterId.getInstance())) {
            JobID id = JobID.fromHexString(stop.getJobId());
            if (!stop.isWithSavepoint()) {
                client.cancel(id).get(60, TimeUnit.SECONDS);
                return ok();
            }
            String dir = config.toMap().get("execution.checkpointing.savepoint-dir");
            String path = client.stopWithSavepoint(id, stop.isWithDrain(), dir, SavepointFormatType.DEFAULT)
                    .get(120, TimeUnit.SECONDS);
            return new Result(List.of("savepoint path"), List.of("VARCHAR"), List.of(List.of(path)), null);
        }
    }

    private static Result ok() {
        return new Result(List.of("result"), List.of("VARCHAR"), List.of(List.of("OK")), null);
    }

    private static Result rows(TableResult result) throws Exception {
        List<String> columns = new ArrayList<>();
        List<String> types = new ArrayList<>();
        for (Column column : result.getResolvedSchema().getColumns()) {
            columns.add(column.getName());
            types.add(column.getDataType().getLogicalType().getTypeRoot().name());
        }
        List<List<Object>> rows = new ArrayList<>();
        try (CloseableIterator<Row> it = result.collect()) {
            while (it.hasNext() && rows.size() < MAX_ROWS) {
                Row row = it.next();
                List<Object> fields = new ArrayList<>();
                for (int i = 0; i < row.getArity(); i++) {
                    fields.add(row.getField(i));
                }
                rows.add(fields);
            }
        }
        String jobId = result.getJobClient().map(c -> c.getJobID().toHexString()).orElse(null);
        return new Result(columns, types, rows, jobId);
    }

    /** The statement for the log: its first line, with string literals after '=' hidden (they may be secrets). */
    static String summary(String statement) {
        String first = statement.strip().lines().findFirst().orElse("");
        String hidden = LITERAL_VALUE.matcher(first).replaceAll("= '…'");
        return hidden.length() > 100 ? hidden.substring(0, 100) + " …" : hidden;
    }

    private static final Pattern LITERAL_VALUE = Pattern.compile("=\\s*'(?:[^']|'')*'");

    /** An exception with its causes, as Flink's REST handlers put it in {@code errors}. */
    static String stackTrace(Throwable t) {
        StringWriter out = new StringWriter();
        t.printStackTrace(new PrintWriter(out));
        return out.toString();
    }
}
