#!/usr/bin/env bash
# End-to-end run of the compose stack, for a machine with Docker and the compose plugin (about 8 GB of RAM):
#   1. builds and starts compose.yaml and waits until the sidecar is healthy;
#   2. inserts, updates and deletes rows of faculty and program in Postgres;
#   3. waits for the sidecar's log lines "Detected c/u operation on table: <t>" and
#      "Successfully triggered job for: <t>" for both tables;
#   4. checks with Trino that Iceberg holds the inserted and updated rows and not the deleted ones;
#   5. checks that MinIO holds data files under the `warehouse` bucket;
#   6. tears the stack down (also on failure, after printing the relevant logs; E2E_KEEP=1 keeps it up).
# Environment: E2E_PROJECT (compose project name, default cdc-e2e), E2E_TIMEOUT (seconds per wait, default 600).
set -euo pipefail
cd "$(dirname "$0")/.."

compose=(docker compose -f compose.yaml -p "${E2E_PROJECT:-cdc-e2e}")
timeout_s="${E2E_TIMEOUT:-600}"
minio_user="${MINIO_ROOT_USER:-admin}"
minio_password="${MINIO_ROOT_PASSWORD:-password}"

log() { printf '[e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

teardown() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    log "FAILED (exit $status); recent logs of the sidecar and Flink:"
    "${compose[@]}" logs --tail 100 cdc-orchestrator sql-gateway jobmanager taskmanager >&2 || true
  fi
  if [ -z "${E2E_KEEP:-}" ]; then
    log "tearing the stack down"
    "${compose[@]}" down --volumes --remove-orphans >&2 || true
  fi
  exit "$status"
}
trap teardown EXIT

# wait_for DESCRIPTION COMMAND...: runs COMMAND every 5 s until it succeeds; fails after E2E_TIMEOUT seconds.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + timeout_s))
  log "waiting for $what"
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out after ${timeout_s}s waiting for $what"
      return 1
    fi
    sleep 5
  done
  log "ok: $what"
}

healthy() {
  local id
  id=$("${compose[@]}" ps -q "$1")
  [ -n "$id" ] && [ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ]
}

psql_exec() {
  "${compose[@]}" exec -T postgres psql -v ON_ERROR_STOP=1 -q -U postgres -d sourcedb -c "$1"
}

sidecar_logged() {
  "${compose[@]}" logs --no-log-prefix cdc-orchestrator 2>&1 | grep -qF "$1"
}

# trino_equals SQL EXPECTED: the query's tab-separated output equals EXPECTED (one row per line).
trino_equals() {
  local got
  got=$("${compose[@]}" exec -T trino trino --output-format TSV --execute "$1" 2>/dev/null) || return 1
  if [ "$got" != "$2" ]; then
    log "trino: $1 -> $(printf '%s' "$got" | tr '\n' '|') (want $(printf '%s' "$2" | tr '\n' '|'))"
    return 1
  fi
}

minio_has_data_files() {
  local listing
  listing=$("${compose[@]}" run --rm -T minio-setup \
    "mc alias set local http://minio:9000 '$minio_user' '$minio_password' >/dev/null && mc ls --recursive local/warehouse/") \
    || return 1
  printf '%s\n' "$listing" | grep -q "university/$1/data/.*\.parquet"
}

log "building and starting the stack"
"${compose[@]}" up -d --build
wait_for "the sidecar to be healthy" healthy cdc-orchestrator

log "changing faculty and program"
psql_exec "INSERT INTO faculty (faculty_code, faculty_name) VALUES
             ('E2E-A', 'E2E Faculty A'), ('E2E-B', 'E2E Faculty B'), ('E2E-C', 'E2E Faculty C')"
psql_exec "UPDATE faculty SET faculty_name = 'E2E Faculty B renamed' WHERE faculty_code = 'E2E-B'"
psql_exec "DELETE FROM faculty WHERE faculty_code = 'E2E-C'"
psql_exec "INSERT INTO program (program_code, program_name, faculty_id, degree)
             SELECT code, name, f.id, 'S2' FROM faculty f,
                    (VALUES ('E2E-P1', 'E2E Program 1'), ('E2E-P2', 'E2E Program 2')) AS p (code, name)
             WHERE f.faculty_code = 'E2E-A'"
psql_exec "UPDATE program SET program_name = 'E2E Program 1 renamed' WHERE program_code = 'E2E-P1'"
psql_exec "DELETE FROM program WHERE program_code = 'E2E-P2'"

for table in faculty program; do
  wait_for "the sidecar to detect $table" sidecar_logged "Detected c/u operation on table: $table"
  wait_for "the sidecar to start the $table job" sidecar_logged "Successfully triggered job for: $table"
done

# Iceberg commits on checkpoints (10 s): poll until both changes and the snapshot rows are visible.
wait_for "Iceberg faculty rows in Trino" trino_equals \
  "SELECT faculty_code, faculty_name FROM iceberg.university.faculty WHERE faculty_code LIKE 'E2E-%' ORDER BY 1" \
  $'E2E-A\tE2E Faculty A\nE2E-B\tE2E Faculty B renamed'
wait_for "Iceberg program rows in Trino" trino_equals \
  "SELECT program_code, program_name, degree FROM iceberg.university.program WHERE program_code LIKE 'E2E-%' ORDER BY 1" \
  $'E2E-P1\tE2E Program 1 renamed\tS2'
wait_for "the seed rows (Debezium snapshot) in Iceberg" trino_equals \
  "SELECT count(*) FROM iceberg.university.faculty WHERE faculty_code IN ('FIK', 'FT')" "2"

for table in faculty program; do
  wait_for "Parquet data files of $table in MinIO bucket warehouse" minio_has_data_files "$table"
done

log "PASSED"
