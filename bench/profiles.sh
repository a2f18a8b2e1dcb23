#!/usr/bin/env bash
# Build profiles for the shipped binary, side by side (issue 19): for each candidate, the static musl binary's
# size and the decoder's CPU time (examples/decode_throughput.rs built by that same profile, same target), and
# Python's json.loads on the same file in the same run. Candidates are cargo profiles defined on the command line
# (--config), so Cargo.toml keeps only the chosen one. Results: target/bench/profiles.json and a Markdown table on
# stdout. The binary is built with the examples (dev-dependency features unified: a few KB over
# scripts/build-static.sh's binary alone).
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
sizes=target/bench/profile-sizes.txt
for name in "${ALL[@]}"; do
  mapfile -t flags < <(candidate "$name")
  profile=$([ "$name" = release ] && echo release || echo "bench-$name")
  echo "== $name: cargo build --profile $profile --target $target" >&2
  cargo "${flags[@]}" build --locked --profile "$profile" --target "$target" --bin cdc-orchestrator \
    --example decode_throughput --example produce >&2
  echo "$name $(stat -c %s "target/$target/$profile/cdc-orchestrator")" >>"$sizes"
done
# Then every candidate's decoder and json.loads in turn, ROUNDS times (default 5), medians: on a shared machine
# one run moves by +-25%; taking them in turn spreads the machine's moods over all of them alike.
python3 - "$sizes" "$values" "$target" "${ROUNDS:-5}" "${ALL[@]}" <<'PY'
import json, subprocess, sys
sizes_file, values, target, rounds, names = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
sizes = dict(line.split() for line in open(sizes_file))  # the latest build of each candidate
cpu = {name: [] for name in names + ["json.loads"]}
for _ in range(rounds):
    for name in names:
        profile = "release" if name == "release" else f"bench-{name}"
        exe = f"target/{target}/{profile}/examples/decode_throughput"
        out = json.loads(subprocess.run([exe, values, "40"], capture_output=True, text=True, check=True).stdout)
        cpu[name].append(out["cpu_ns_per_record"])
    out = json.loads(subprocess.run([sys.executable, "bench/json_loads.py", values, "10"], capture_output=True,
                                    text=True, check=True).stdout)
    cpu["json.loads"].append(out["cpu_ns_per_record"])
median = {name: sorted(v)[len(v) // 2] for name, v in cpu.items()}
with open("target/bench/profiles.json", "w") as f:
    json.dump({"sizes": sizes, "cpu_ns": cpu, "median": median}, f, indent=1)
print(f"| profile | static binary (bytes) | <= 8 MiB | decoder CPU ns (median; min of {rounds}) | "
      "json.loads CPU ns, same runs | ratio |")
print("|---|---|---|---|---|---|")
py = median["json.loads"]
for name in names:
    size = int(sizes[name])
    ok = "yes" if size <= 8 * 1024 * 1024 else "no"
    print(f"| {name} | {size:,} | {ok} | {median[name]:,.0f}; {min(cpu[name]):,.0f} | {py:,.0f}; "
          f"{min(cpu['json.loads']):,.0f} | {py / median[name]:.1f}x |")
PY
