#!/usr/bin/env python3
"""Writes Debezium envelopes (~1 KB, like a university-schema row change) at a fixed rate, round-robin over the
tables, one record per request (tansu mishandles multi-record batches), and logs `table produce_ms` per record
so that the bench can pair every record with the event that reported it."""
import argparse
import json
import random
import time

from kafka import KafkaProducer

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--prefix", default="university-server.public.")
    parser.add_argument("--tables", required=True, help="comma-separated")
    parser.add_argument("--rate", type=float, required=True, help="records per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--size", type=int, default=1024, help="approximate value bytes")
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    tables = args.tables.split(",")
    producer = KafkaProducer(
        bootstrap_servers=args.broker, api_version=(2, 8, 0), linger_ms=0, acks=1, max_in_flight_requests_per_connection=1
    )
    base = json.dumps(envelope(tables[0], 0, 0, ""))
    pad = "x" * max(0, args.size - len(base) - 40)
    rng = random.Random(7)
    interval = 1.0 / args.rate
    start = time.monotonic()
    total = int(args.rate * args.seconds)
    with open(args.log, "w") as log:
        for seq in range(total):
            due = start + seq * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            table = tables[seq % len(tables)]
            now_ms = int(time.time() * 1000)
            value = json.dumps(envelope(table, seq, now_ms, pad)).encode()
            key = json.dumps({"id": rng.randrange(1 << 30)}).encode()
            producer.send(args.prefix + table, value=value, key=key, partition=0, timestamp_ms=now_ms).get(timeout=10)
            log.write(f"{table} {now_ms}\n")
    producer.flush()


if __name__ == "__main__":
    main()
