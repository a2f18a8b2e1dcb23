#!/usr/bin/env bash
# Benchmarks: the sidecar's watcher against the consume-everything baseline, side by side in one run, then the
# sidecar alone at 12 to 12,000 partitions, then the decoder against Python's json.loads. See BENCHMARKS.md.
#   scripts/bench.sh           full run (~18 min with the release builds)
#   scripts/bench.sh --quick   short run (~9 min with the release builds)
# Installs what it needs (tansu, and kafka-python for the baseline into .tools/bench), builds the release binary
# and the decoder benchmark, and prints a Markdown report (also written to target/bench/report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh tansu
if [ ! -d .tools/bench/kafka ]; then
  echo "installing kafka-python (the baseline's Kafka client) into .tools/bench" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target .tools/bench kafka-python==3.0.12
fi
echo "== cargo build --release (the binary and the decoder benchmark)" >&2
cargo build --release --locked --bin cdc-orchestrator --example decode_throughput --example produce
cargo build --profile release-o3 --locked --example decode_throughput
exec python3 bench/bench.py "$@"
