#!/usr/bin/env python3
"""Writes the input of the `decode FILE` benchmark: fixture JSON lines (topic, base64 key and value), nine in ten
the benchmark's ~1 KB Debezium envelopes (bench.py), one in ten the shapes of tests/data/debezium-cases.jsonl
(tombstones, heartbeats, transactions, schemas, unwrapped records, Avro, broken JSON) in turn.
Usage: decode_input.py OUT LINES"""
import base64
import json
import sys
from pathlib import Path

import bench

ROOT = Path(__file__).resolve().parent.parent


def main():
    out, lines = Path(sys.argv[1]), int(sys.argv[2])
    cases = [json.loads(l) for l in open(ROOT / "tests/data/debezium-cases.jsonl") if l.strip()]
    for case in cases:
        case.pop("expect", None)
        case.pop("name", None)
    pad = "x" * 500
    with open(out, "w") as f:
        for seq in range(lines):
            if seq % 10 == 9:
                record = cases[(seq // 10) % len(cases)]
            else:
                table = bench.TABLES[seq % len(bench.TABLES)]
                value = json.dumps(bench.envelope(table, seq, 1_700_000_000_000 + seq, pad)).encode()
                record = {"topic": bench.PREFIX + table, "key": base64.b64encode(b'{"id":%d}' % seq).decode(),
                          "value": base64.b64encode(value).decode()}
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
