#!/usr/bin/env bash
# Builds the statically linked release binary (x86_64-unknown-linux-musl, rustls + ring, no OpenSSL) that the
# Dockerfile copies into its FROM scratch image. Installs musl-tools and the rustup target when missing.
# Prints the binary's path on stdout (and its size on stderr). Extra arguments go to cargo (scripts/bench.sh builds
# its examples in the same command, e.g. `--example produce`).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl

if ! command -v musl-gcc >/dev/null; then
  echo "installing musl-tools (apt-get)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >&2
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  echo "adding the rustup target $target" >&2
  rustup target add "$target" >&2
fi

# ring, zstd and lz4 build C code: compile it with musl's gcc wrapper.
export CC_x86_64_unknown_linux_musl=musl-gcc
cargo build --release --locked --target "$target" --bin cdc-orchestrator "$@" >&2
bin="${CARGO_TARGET_DIR:-target}/$target/release/cdc-orchestrator"
echo "built $bin: $(stat -c %s "$bin") bytes" >&2
echo "$bin"
