#!/usr/bin/env python3
"""SQL for the e2e's Postgres databases, printed on stdout.

`sink_schema.py INIT_SQL`: the CREATE TABLE statements of INIT_SQL (compose/postgres/init.sql) as the JDBC sink's
tables: same columns, types and primary keys; no foreign keys, UNIQUE constraints or defaults, because each table's
Flink job upserts on its own and rows of different tables arrive in no common order.

`sink_schema.py --log-triggers TABLE...`: a table `e2e_changes (id, tbl, key)` and triggers that log the `id` of
every row inserted, updated or deleted in each TABLE (the checks read which keys changed, or were written).
"""
import re
import sys


def sink_schema(text):
    out = []
    for match in re.finditer(r"CREATE TABLE (\w+) \((.*?)\n\);", text, re.S):
        name, body = match.group(1), match.group(2)
        columns = []
        for line in body.strip().splitlines():
            line = line.strip().rstrip(",")
            if not line or line.startswith("UNIQUE") or line.startswith("--"):
                continue
            line = re.sub(r"\bSERIAL\b", "INTEGER", line)
            line = re.sub(r"\s+REFERENCES \w+ \(\w+\)", "", line)
            line = re.sub(r"\s+UNIQUE\b", "", line)
            line = re.sub(r"\s+DEFAULT .*$", "", line)
            columns.append("    " + line)
        out.append(f"CREATE TABLE {name} (\n" + ",\n".join(columns) + "\n);")
    return "\n".join(out)


def log_triggers(tables):
    out = ["CREATE TABLE e2e_changes (id BIGSERIAL PRIMARY KEY, tbl TEXT NOT NULL, key BIGINT NOT NULL,"
           " at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());",
           "CREATE FUNCTION e2e_log_change() RETURNS trigger LANGUAGE plpgsql AS $$\n"
           "BEGIN\n"
           "  INSERT INTO e2e_changes (tbl, key) VALUES (TG_TABLE_NAME, CASE WHEN TG_OP = 'DELETE' THEN OLD.id"
           " ELSE NEW.id END);\n"
           "  RETURN NULL;\n"
           "END $$;"]
    for table in tables:
        out.append(f"CREATE TRIGGER e2e_log_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION e2e_log_change();")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--log-triggers":
        print(log_triggers(sys.argv[2:]))
    elif len(sys.argv) == 2:
        print(sink_schema(open(sys.argv[1]).read()))
    else:
        sys.exit("usage: sink_schema.py INIT_SQL | --log-triggers TABLE...")
