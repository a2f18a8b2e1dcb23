import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.GlobalConfiguration;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ArrayNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A stand-in for Flink's SQL Gateway REST endpoint, for the end-to-end test on one machine: no package registry
 * ships Flink's {@code flink-sql-gateway} jar. Production uses Flink's own gateway.
 *
 * <p>It serves the endpoints of Flink's published REST API (v1 to v4, sessions, statements, operations, results)
 * with the same JSON shapes, and runs every statement through Flink's real {@code TableEnvironment} against the
 * session cluster ({@code execution.target: remote}). Errors come back as Flink's REST handlers send them: a
 * status and {@code {"errors": [...]}} with the exception's stack trace.
 *
 * <p>Usage: {@code LocalSqlGateway --port P --flink-rest-address 127.0.0.1 --flink-rest-port R
 * [--flink-conf-dir DIR] [--session-idle-timeout-seconds S]}.
 */
public final class LocalSqlGateway {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String VERSION = "2.0.0";
    private static final List<String> API_VERSIONS = List.of("V1", "V2", "V3", "V4");
    private static final Pattern SESSION = Pattern.compile("^/v[1-4]/sessions/([^/]+)(/.*)?$");
    private static final Pattern OPERATION = Pattern.compile("^/operations/([^/]+)/(status|cancel|close|result/(\\d+))$");

    private final Map<String, GatewaySession> sessions = new ConcurrentHashMap<>();
    private final Configuration clusterConfig;

    private LocalSqlGateway(Configuration clusterConfig) {
        this.clusterConfig = clusterConfig;
    }

    public static void main(String[] args) throws IOException {
        Map<String, String> options = new LinkedHashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            options.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        }
        int port = Integer.parseInt(options.getOrDefault("port", "8083"));
        long idleTimeoutSeconds = Long.parseLong(options.getOrDefault("session-idle-timeout-seconds", "600"));
        // The cluster's own configuration (defaults such as parallelism.default and the savepoint folder), as
        // Flink's gateway reads it, then what makes statements run remotely on that cluster.
        Configuration cluster = options.containsKey("flink-conf-dir")
                ? GlobalConfiguration.loadConfiguration(options.get("flink-conf-dir"))
                : new Configuration();
        cluster.setString("execution.target", "remote");
        cluster.setString("rest.address", options.getOrDefault("flink-rest-address", "127.0.0.1"));
        cluster.setString("rest.port", options.getOrDefault("flink-rest-port", "8081"));
        LocalSqlGateway gateway = new LocalSqlGateway(cluster);

        // The JDK server writes headers and body separately: without TCP_NODELAY each keep-alive answer waits for
        // the client's delayed ACK (~40 ms), which made every statement of the launcher take ~200 ms.
        System.setProperty("sun.net.httpserver.nodelay", "true");
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 64);
        server.createContext("/", gateway::handle);
        server.setExecutor(Executors.newFixedThreadPool(16));
        server.start();
        // Sessions nobody talks to expire, as sql-gateway.session.idle-timeout makes them in Flink's gateway.
        Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "session-expiry");
            t.setDaemon(true);
            return t;
        }).scheduleWithFixedDelay(() -> gateway.expire(idleTimeoutSeconds * 1000), 1, 1, TimeUnit.SECONDS);
        log("SQL Gateway stand-in on http://127.0.0.1:%d, Flink REST at %s:%s", port,
                cluster.getString("rest.address", ""), cluster.getString("rest.port", ""));
    }

    static void log(String format, Object... args) {
        System.err.println(Instant.now() + " " + String.format(format, args));
    }

    private void expire(long idleMillis) {
        sessions.values().removeIf(session -> {
            if (session.idleMillis() <= idleMillis) {
                return false;
            }
            log("session %s expired after %d ms idle", session.handle, session.idleMillis());
            session.close();
            return true;
        });
    }

    /** Thrown by handlers: becomes the HTTP status and Flink's error body. */
    private static final class RestError extends Exception {
        private static final long serialVersionUID = 1L;
        final int status;
        final List<String> errors;

        RestError(int status, List<String> errors) {
            super(errors.get(0));
            this.status = status;
            this.errors = errors;
        }

        /** An unexpected exception, as Flink's AbstractHandler reports it: 500 with the trace between markers. */
        static RestError internal(String trace) {
            return new RestError(500, List.of("Internal server error.",
                    "<Exception on server side:\n" + trace + "\nEnd of exception on server side>"));
        }

        static RestError badRequest(String message) {
            return new RestError(400, List.of(message));
        }
    }

    private void handle(HttpExchange exchange) throws IOException {
        long started = System.nanoTime();
        String method = exchange.getRequestMethod();
        String path = exchange.getRequestURI().getPath();
        int status = 200;
        Object body;
        try {
            body = route(method, path, exchange.getRequestURI().getQuery(), readBody(exchange));
        } catch (RestError e) {
            status = e.status;
            ObjectNode error = JSON.createObjectNode();
            error.putArray("errors").addAll(e.errors.stream().map(JSON.getNodeFactory()::textNode).toList());
            body = error;
        } catch (Exception e) {
            status = 500;
            body = JSON.createObjectNode().set("errors", JSON.createArrayNode().add("Internal server error.")
                    .add("<Exception on server side:\n" + GatewaySession.stackTrace(e) + "\nEnd of exception on server side>"));
        }
        byte[] bytes = JSON.writeValueAsBytes(body);
        exchange.getResponseHeaders().set("Content-Type", "application/json; charset=UTF-8");
        exchange.sendResponseHeaders(status, bytes.length);
        exchange.getResponseBody().write(bytes);
        exchange.close();
        if (status >= 400) {
            log("%s %s -> %d in %d ms", method, path, status, TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started));
        }
    }

    private static JsonNode readBody(HttpExchange exchange) throws RestError {
        try (InputStream in = exchange.getRequestBody()) {
            String text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            return text.isBlank() ? JSON.createObjectNode() : JSON.readTree(text);
        } catch (IOException e) {
            throw RestError.badRequest("Request did not match expected format: " + e.getMessage());
        }
    }

    private Object route(String method, String path, String query, JsonNode body) throws Exception {
        if (path.matches("^(/v[1-4])?/api_versions$") && method.equals("GET")) {
            ObjectNode answer = JSON.createObjectNode();
            answer.putArray("versions").addAll(API_VERSIONS.stream().map(JSON.getNodeFactory()::textNode).toList());
            return answer;
        }
        if (path.matches("^/v[1-4]/info$") && method.equals("GET")) {
            return JSON.createObjectNode().put("productName", "Apache Flink").put("version", VERSION);
        }
        if (path.matches("^/v[1-4]/sessions$") && method.equals("POST")) {
            return openSession(body);
        }
        Matcher session = SESSION.matcher(path);
        if (!session.matches()) {
            throw new RestError(404, List.of("Not found: " + path));
        }
        String version = path.substring(1, 3);
        String handle = session.group(1);
        String rest = session.group(2) == null ? "" : session.group(2);
        GatewaySession s = sessions.get(handle);
        if (s == null) {
            // Flink's SessionManagerImpl.getSession, as its REST handler reports it.
            throw RestError.internal("org.apache.flink.table.gateway.api.utils.SqlGatewayException: Session '" + handle
                    + "' does not exist.\n\tat org.apache.flink.table.gateway.service.session.SessionManagerImpl.getSession(SessionManagerImpl.java:1)");
        }
        s.touch();
        switch (method + " " + rest) {
            case "DELETE ":
                sessions.remove(handle);
                s.close();
                log("session %s closed", handle);
                return JSON.createObjectNode().put("status", "CLOSED");
            case "GET ": {
                ObjectNode answer = JSON.createObjectNode();
                ObjectNode properties = answer.putObject("properties");
                s.properties().forEach(properties::put);
                return answer;
            }
            case "POST /heartbeat":
                return JSON.createObjectNode();
            case "POST /statements": {
                JsonNode statement = body.get("statement");
                if (statement == null || !statement.isTextual()) {
                    throw RestError.badRequest("Field 'statement' is required.");
                }
                return JSON.createObjectNode().put("operationHandle", s.submit(statement.asText()));
            }
            default:
                return operation(method, version, s, rest, query);
        }
    }

    private Object openSession(JsonNode body) {
        Map<String, String> properties = new LinkedHashMap<>();
        body.path("properties").fields().forEachRemaining(e -> properties.put(e.getKey(), e.getValue().asText()));
        String name = body.path("sessionName").asText("");
        GatewaySession session = new GatewaySession(name, properties, clusterConfig);
        sessions.put(session.handle, session);
        log("session %s opened (%s), %d open", session.handle, name, sessions.size());
        return JSON.createObjectNode().put("sessionHandle", session.handle);
    }

    private Object operation(String method, String version, GatewaySession s, String rest, String query) throws RestError {
        Matcher m = OPERATION.matcher(rest);
        if (!m.matches()) {
            throw new RestError(404, List.of("Not found: " + rest));
        }
        String handle = m.group(1);
        GatewaySession.Submitted op = s.operation(handle);
        if (op == null) {
            throw RestError.internal("org.apache.flink.table.gateway.api.utils.SqlGatewayException: Can not find the "
                    + "submitted operation in the OperationManager with the " + handle + ".");
        }
        String action = m.group(2);
        if (action.equals("status") && method.equals("GET")) {
            return JSON.createObjectNode().put("status", op.status.name());
        }
        if (action.equals("cancel") && method.equals("POST")) {
            s.cancel(handle);
            return JSON.createObjectNode().put("status", "CANCELED");
        }
        if (action.equals("close") && method.equals("DELETE")) {
            s.closeOperation(handle);
            return JSON.createObjectNode().put("status", "CLOSED");
        }
        if (action.startsWith("result/") && method.equals("GET")) {
            boolean v1 = version.equals("v1");
            if (!v1 && (query == null || !query.contains("rowFormat="))) {
                throw RestError.badRequest("Parameter rowFormat is mandatory.");
            }
            return result(version, s.handle, handle, Long.parseLong(m.group(3)), op);
        }
        throw new RestError(405, List.of("Method " + method + " is not allowed for " + rest));
    }

    /**
     * A page of results: everything at token 0 with a link to token 1, which is the end (EOS). A running
     * statement answers NOT_READY with a link to the same token; a failed one answers with its exception.
     */
    private Object result(String version, String session, String handle, long token, GatewaySession.Submitted op)
            throws RestError {
        String base = "/" + version + "/sessions/" + session + "/operations/" + handle + "/result/";
        ObjectNode answer = JSON.createObjectNode();
        ObjectNode results = JSON.createObjectNode();
        ArrayNode columns = results.putArray("columns");
        results.put("rowFormat", "JSON");
        ArrayNode data = results.putArray("data");
        switch (op.status) {
            case ERROR:
                throw RestError.internal("org.apache.flink.table.gateway.api.utils.SqlGatewayException: "
                        + "Failed to fetchResults.\nCaused by: " + GatewaySession.stackTrace(op.error));
            case CANCELED:
                throw RestError.internal("org.apache.flink.table.gateway.api.utils.SqlGatewayException: "
                        + "Can not fetch results from the operation " + handle + ": it is CANCELED.");
            case PENDING:
            case RUNNING:
                answer.put("resultType", "NOT_READY");
                answer.set("results", results);
                answer.put("nextResultUri", base + token + "?rowFormat=JSON");
                return answer;
            default:
                break;
        }
        GatewaySession.Result result = op.result;
        for (int i = 0; i < result.columns().size(); i++) {
            ObjectNode column = columns.addObject().put("name", result.columns().get(i));
            column.putObject("logicalType").put("type", result.types().get(i)).put("nullable", true);
            column.putNull("comment");
        }
        if (token == 0) {
            for (List<Object> row : result.rows()) {
                ObjectNode rowNode = data.addObject().put("kind", "INSERT");
                rowNode.set("fields", JSON.valueToTree(row.stream().map(LocalSqlGateway::jsonValue).toList()));
            }
            answer.put("resultType", "PAYLOAD");
            answer.put("nextResultUri", base + "1?rowFormat=JSON");
        } else {
            answer.put("resultType", "EOS");
        }
        answer.set("results", results);
        if (!version.equals("v1")) {
            answer.put("isQueryResult", result.jobId() != null && !result.columns().equals(List.of("job id")));
            answer.put("resultKind", result.rows().isEmpty() ? "SUCCESS" : "SUCCESS_WITH_CONTENT");
            if (result.jobId() != null) {
                answer.put("jobID", result.jobId());
            }
        }
        return answer;
    }

    /** Numbers, booleans and strings as JSON values; anything else as its text. */
    private static Object jsonValue(Object value) {
        if (value == null || value instanceof Number || value instanceof Boolean || value instanceof String) {
            return value;
        }
        return value.toString();
    }
}
