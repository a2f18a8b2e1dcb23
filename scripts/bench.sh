#!/usr/bin/env bash
# Benchmarks: the sidecar's watcher against the consume-everything baseline, side by side in one run (idle, at
# 1,000 and at 10,000 changes/s, with the broker bytes per Kafka API against the ListOffsets floor), then the sidecar
# alone at 12 to 12,000 partitions and at 120,000, then the decoder against Python's json.loads and `decode FILE`
# against the same work in Python. See BENCHMARKS.md.
#   scripts/bench.sh           full run (~25 min with the release build)
#   scripts/bench.sh --quick   short run (~15 min with the release build)
# Measures the shipped binary: the static musl build of the release profile, as scripts/build-static.sh makes it,
# with the producer and the decoder benchmark built by the same command. Installs what it needs (tansu, and kafka-python for the
# baseline into .tools/bench) and prints a Markdown report (also written to target/bench/report.md).
# On a machine shared with other work, run it as `nice -n 19 scripts/bench.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh tansu
if [ ! -d .tools/bench/kafka ]; then
  echo "installing kafka-python (the baseline's Kafka client) into .tools/bench" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target .tools/bench kafka-python==3.0.12
fi
# The static build (scripts/build-static.sh: musl target, musl-gcc for the C in ring, zstd and lz4) makes the binary
# and the examples in one cargo command, because building examples turns on the dev-dependencies' features for the
# whole build: a second command for the examples alone would build everything again.
echo "== the static release binary, the producer and the decoder benchmark (x86_64-unknown-linux-musl)" >&2
binary="$(scripts/build-static.sh --example decode_throughput --example produce)"
exec python3 bench/bench.py --binary "$binary" "$@"
