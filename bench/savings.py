"""What scale-to-zero saves on the example stack: a scripted burst pattern against the real sidecar (dry-run launcher).

The sidecar runs `run` with the example configuration (config/cdc-orchestrator.toml: cooldown 30 s, idle timeout
60 s, payment 5 m) on a tansu broker with the 12 university topics; jobs are simulated, the policy, timings and
accounting are the real ones. A scripted day of changes (registration waves, payment runs, a few edits, reference
tables untouched) is produced with examples/produce, and the savings are read from the sidecar's own
/metrics and /tables at the end. Prints a Markdown report (also target/bench/savings.md).

    python3 bench/savings.py [--minutes 12]   (scripts/bench.sh builds the binaries; or cargo build --release
                                               --bin cdc-orchestrator --example produce)
"""

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import bench

TABLES = ["class", "course", "faculty", "lecturer", "payment", "program", "registration", "room",
          "student_detail", "student_enrollment", "student_fee", "students"]

# (second, table, records): the scripted changes. Registration opens in three waves, payments run twice, a few
# student and faculty edits; class, course, lecturer, program, room and student_fee (reference data) never change.
PATTERN = [
    (0, "registration", 200), (0, "student_enrollment", 200),
    (60, "payment", 100),
    (120, "students", 3), (120, "student_detail", 3),
    (240, "registration", 150), (250, "student_enrollment", 150),
    (300, "faculty", 2),
    (420, "payment", 80),
    (480, "registration", 100), (490, "student_enrollment", 100),
    (600, "students", 1), (600, "student_detail", 1),
]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def sample(metrics, series):
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12.0, help="length of the run (the pattern spans 10)")
    parser.add_argument("--binary", default=str(bench.ROOT / "target/release/cdc-orchestrator"))
    args = parser.parse_args()
    binary = Path(args.binary)
    produce = binary.parent / "examples/produce"
    workdir = bench.ROOT / "target/bench"
    workdir.mkdir(parents=True, exist_ok=True)
    procs = bench.Procs(workdir)
    try:
        broker = bench.start_broker(procs, "savings-broker")
        bench.create_topics(broker, [bench.PREFIX + t for t in TABLES], 1)
        port = bench.free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CDC_")},
               "CDC_KAFKA__BOOTSTRAP": f"127.0.0.1:{broker}", "CDC_SERVER__LISTEN": f"127.0.0.1:{port}",
               "CDC_FLINK__LAUNCHER": "dry-run", "CDC_LOG_FORMAT": "json"}
        for variable in ("POLARIS_CLIENT_ID", "POLARIS_CLIENT_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.setdefault(variable, "bench")
        procs.start("savings-sidecar", [str(binary), "--config", str(bench.ROOT / "config/cdc-orchestrator.toml"),
                                        "run"], env=env)
        bench.wait_port(port)
        base = f"http://127.0.0.1:{port}"
        began = time.monotonic()
        end = began + args.minutes * 60
        print(f"savings: scripted pattern for {args.minutes:g} min against {base}", file=sys.stderr)
        for at, table, records in PATTERN:
            if records == 0:
                continue
            while time.monotonic() - began < at:
                time.sleep(0.2)
            producer = procs.start(f"savings-produce-{table}-{at}", [
                str(produce), "--broker", f"127.0.0.1:{broker}", "--table", table, "--count", str(records),
                "--op", "u", "--rate", "20"])
            producer.wait()
        while time.monotonic() < end:
            time.sleep(1)
        metrics = get(base + "/metrics")
        tables = json.loads(get(base + "/tables"))
    finally:
        procs.stop_all()
    share = sample(metrics, "cdc_job_running_share")
    tracked = sample(metrics, "cdc_tracked_seconds_total")
    counted = sample(metrics, "cdc_tables_tracked")
    job_s = sum(t["job_seconds"] for t in tables)
    lines = [
        f"{int(counted)} tables watched for {tracked:.0f} s; the sidecar ran a job {share * 100:.1f}% of the "
        f"table-time: **{(1 - share) * 100:.1f}% less job-time than one always-on job per table** "
        f"({job_s:.0f} job-seconds against {counted * tracked:.0f}).",
        "",
        "| table | changes produced | jobs started | job seconds | share of the run |",
        "|---|---|---|---|---|",
    ]
    produced = {}
    for _, table, records in PATTERN:
        produced[table] = produced.get(table, 0) + records
    by_table = {t["table"]: t for t in tables}
    for table in TABLES:
        t = by_table.get(table)
        if t is None:
            lines.append(f"| {table} | {produced.get(table, 0)} | 0 | 0 | 0% |")
            continue
        lines.append(f"| {table} | {produced.get(table, 0)} | {t['job_cycles']} | {t['job_seconds']:.0f} | "
                     f"{t['running_share'] * 100:.1f}% |")
    text = "\n".join(lines)
    (workdir / "savings.md").write_text(text + "\n")
    (workdir / "savings-metrics.txt").write_text(metrics)
    (workdir / "savings-tables.json").write_text(json.dumps(tables, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
