#!/usr/bin/env python3
"""The baseline's decoding cost on the same file the Rust decoder benchmark reads (one JSON value per line):
json.loads of each value and the table and operation picked out, as bench/baseline_consumer.py does. Prints one
JSON line: records, rounds, ns per record (wall
and CPU), changes."""
import json
import sys
import time


def main():
    path = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with open(path, "rb") as f:
        values = [line.rstrip(b"\n") for line in f if line.strip()]
    changes = 0
    cpu_started = time.thread_time_ns()
    started = time.perf_counter()
    for _ in range(rounds):
        changes = 0
        for value in values:
            envelope = json.loads(value)
            payload = envelope.get("payload", envelope)
            table = (payload.get("source") or {}).get("table")
            if table and payload.get("op"):
                changes += 1
    elapsed = time.perf_counter() - started
    # CPU time as well as wall time: on a shared machine the wall time includes waiting for a core.
    cpu_ns = time.thread_time_ns() - cpu_started
    n = len(values) * rounds
    print(json.dumps({"records": len(values), "rounds": rounds, "ns_per_record": round(elapsed * 1e9 / n, 1),
                      "cpu_ns_per_record": round(cpu_ns / n, 1), "changes": changes}))


if __name__ == "__main__":
    main()
