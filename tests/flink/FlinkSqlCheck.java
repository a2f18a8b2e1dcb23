// Runs Flink SQL statements in a local, embedded Flink (no cluster) and prints what SELECTs return.
//
// Usage: java -cp '<flink lib>/*' FlinkSqlCheck.java STATEMENTS_FILE
// STATEMENTS_FILE holds statements separated by NUL characters. `SET 'k' = 'v'` sets the table config; a
// SELECT runs and prints each result row as Flink renders it (`+I[...]`, `-U[...]`, `+U[...]`, `-D[...]`), one
// per line; `ECHO text` prints the text; an EXPLAIN is planned (validated) and its plan dropped; any other
// statement is executed and awaited. The first failing statement ends the run with exit 1.
// tests/it/flink_sql.rs uses it to run the rendered DDL and conversions of the per-table jobs on real Flink.

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;

public class FlinkSqlCheck {
    private static final Pattern SET = Pattern.compile("(?s)^SET\\s+'([^']*)'\\s*=\\s*'([^']*)'$");

    public static void main(String[] args) throws Exception {
        String text = Files.readString(Path.of(args[0]), StandardCharsets.UTF_8);
        TableEnvironment env = TableEnvironment.create(EnvironmentSettings.inStreamingMode());
        env.getConfig().set("parallelism.default", "1");
        for (String statement : text.split("\0")) {
            statement = statement.strip();
            if (statement.isEmpty()) {
                continue;
            }
            try {
                Matcher set = SET.matcher(statement);
                if (statement.startsWith("ECHO ")) {
                    System.out.println(statement.substring(5));
                } else if (statement.regionMatches(true, 0, "EXPLAIN", 0, 7)) {
                    env.executeSql(statement).collect().close();
                } else if (set.matches()) {
                    env.getConfig().getConfiguration().setString(set.group(1), set.group(2));
                } else if (statement.regionMatches(true, 0, "SELECT", 0, 6)) {
                    try (CloseableIterator<Row> rows = env.executeSql(statement).collect()) {
                        while (rows.hasNext()) {
                            System.out.println(rows.next());
                        }
                    }
                } else {
                    TableResult result = env.executeSql(statement);
                    result.await();
                }
            } catch (Exception e) {
                System.err.println("FAILED: " + statement);
                Throwable cause = e;
                while (cause != null) {
                    System.err.println("  " + cause);
                    cause = cause.getCause();
                }
                System.exit(1);
            }
        }
        System.exit(0);
    }
}
