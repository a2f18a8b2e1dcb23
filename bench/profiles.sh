#!/usr/bin/env bash
# Build profiles for the shipped binary, side by side (issue 19): for each candidate, the static musl binary's
# size and the decoder's speed (examples/decode_throughput.rs built by that same profile, same target), and
# Python's json.loads on the same file in the same run. Candidates are cargo profiles defined on the command line
# (--config), so Cargo.toml keeps only the chosen one. Results: target/bench/profiles.jsonl (one line per
# candidate) and a Markdown table on stdout.
#   bench/profiles.sh                 every candidate (a full release build each: ~10-20 min each on 2 cores)
#   bench/profiles.sh s-fat o3-thin   only these
# Run it under `nice -n 19` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
export CC_x86_64_unknown_linux_musl=musl-gcc
# The crates the decoder's time is spent in: its own (serde's derives are monomorphised there), serde_json's
# reader, serde, memchr, base64 and the number formatters.
HOT=(cdc-orchestrator serde serde_core serde_json memchr base64 itoa zmij ryu)
# Big crates nothing CPU-bound runs in (TLS, CLI parsing, config, templates, HTTP, metrics, compression).
COLD=(ring rustls regex regex-automata regex-syntax clap clap_builder tracing-subscriber reqwest hyper hyper-util
  h2 axum minijinja figment toml toml_edit toml_parser winnow prometheus-client zstd zstd-safe zstd-sys lz4 lz4-sys
  snap flate2 miniz_oxide rustls-native-certs webpki-root-certs moka chrono governor)

pkgs() { # level crate... -> --config flags
  local level=$1; shift
  for c in "$@"; do printf -- '--config\nprofile.%s.package.%s.opt-level=%s\n' "$P" "$c" "$level"; done
}

candidate() { # name -> cargo --config flags defining profile "bench-<name>"
  P="bench-$1"
  local base=(--config "profile.$P.inherits=\"release\"" --config "profile.$P.strip=true"
    --config "profile.$P.panic=\"unwind\"")
  case "$1" in
    s-fat) printf '%s\n' "${base[@]}" --config "profile.$P.opt-level=\"s\"" --config "profile.$P.lto=\"fat\"" \
      --config "profile.$P.codegen-units=1" ;;
    o3-fat) printf '%s\n' "${base[@]}" --config "profile.$P.opt-level=3" --config "profile.$P.lto=\"fat\"" \
      --config "profile.$P.codegen-units=1" ;;
    o2-fat) printf '%s\n' "${base[@]}" --config "profile.$P.opt-level=2" --config "profile.$P.lto=\"fat\"" \
      --config "profile.$P.codegen-units=1" ;;
    s-thin-hot3) printf '%s\n' "${base[@]}" --config "profile.$P.opt-level=\"s\"" --config "profile.$P.lto=\"thin\"" \
      --config "profile.$P.codegen-units=1"; pkgs 3 "${HOT[@]}" ;;
    s-thin-hot3-cgu16) printf '%s\n' "${base[@]}" --config "profile.$P.opt-level=\"s\"" \
      --config "profile.$P.lto=\"thin\"" --config "profile.$P.codegen-units=16"; pkgs 3 "${HOT[@]}" ;;
    o3-thin-coldz) printf '%s\n' "${base[@]}" --config "profile.$P.opt-level=3" --config "profile.$P.lto=\"thin\"" \
      --config "profile.$P.codegen-units=1"; pkgs '"z"' "${COLD[@]}" ;;
    # The hot crates but our own at 3 under fat LTO: does a dependency's level survive fat LTO's final pass at the
    # root's level? (Our own crate is the root: at 3 it would make the whole LTO pass run at 3.)
    s-fat-deps3) printf '%s\n' "${base[@]}" --config "profile.$P.opt-level=\"s\"" --config "profile.$P.lto=\"fat\"" \
      --config "profile.$P.codegen-units=1"; pkgs 3 "${HOT[@]:1}" ;;
    s-fat-hot3) printf '%s\n' "${base[@]}" --config "profile.$P.opt-level=\"s\"" --config "profile.$P.lto=\"fat\"" \
      --config "profile.$P.codegen-units=1"; pkgs 3 "${HOT[@]}" ;;
    release) ;; # the [profile.release] in Cargo.toml as it stands
    *) echo "unknown candidate $1" >&2; return 1 ;;
  esac
}

ALL=(release s-thin-hot3 s-fat-deps3 o2-fat o3-fat o3-thin-coldz)
[ $# -gt 0 ] && ALL=("$@")
mkdir -p target/bench
values=target/bench/profile-values.jsonl
python3 bench/bench.py --write-values "$values" --records 2000
out=target/bench/profiles.jsonl
for name in "${ALL[@]}"; do
  mapfile -t flags < <(candidate "$name")
  profile=$([ "$name" = release ] && echo release || echo "bench-$name")
  echo "== $name: cargo build --profile $profile --target $target" >&2
  began=$(date +%s)
  cargo "${flags[@]}" build --locked --profile "$profile" --target "$target" --bin cdc-orchestrator \
    --example decode_throughput --example produce >&2
  built=$(($(date +%s) - began))
  dir="target/$target/$profile"
  size=$(stat -c %s "$dir/cdc-orchestrator")
  rust=$("$dir/examples/decode_throughput" "$values" 40)
  python=$(python3 bench/json_loads.py "$values" 10)
  echo "{\"profile\":\"$name\",\"static_bytes\":$size,\"build_s\":$built,\"rust\":$rust,\"python\":$python}" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["profile"]] = r  # the latest measurement of each candidate
print("| profile | static binary (bytes) | <= 8 MiB | decoder CPU us/envelope | json.loads CPU us | ratio |")
print("|---|---|---|---|---|---|")
for r in rows.values():
    # CPU time: on a shared machine the wall time is mostly waiting for a core.
    us = r["rust"].get("cpu_ns_per_record", r["rust"]["ns_per_record"]) / 1000
    py = r["python"].get("cpu_ns_per_record", r["python"]["ns_per_record"]) / 1000
    ok = "yes" if r["static_bytes"] <= 8 * 1024 * 1024 else "no"
    print(f"| {r['profile']} | {r['static_bytes']:,} | {ok} | {us:.2f} | {py:.2f} | {py / us:.1f}x |")
PY
