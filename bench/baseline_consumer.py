#!/usr/bin/env python3
"""The baseline: what the reference orchestrator did to notice changes.

It consumes EVERY record of every topic matching the CDC pattern with a real Kafka client (kafka-python, pinned to
api_version (2, 8, 0), the dialect tansu answers), json-decodes each value and notes the table and operation, like
the reference system's consume-everything loop. tansu 0.6 does not serve kafka-python's consumer-group protocol,
so partitions are assigned directly (re-listed every few seconds for new topics) and start at the end, which is
what a group with auto.offset.reset=latest does on first start.

Detection latency per record is the time it was seen minus its producer timestamp; latencies stay in memory (no
per-record output, which would cost the baseline CPU the reference system did not spend), and on SIGTERM a JSON
summary goes to --out.
"""
import argparse
import json
import re
import signal
import time

from kafka import KafkaConsumer, TopicPartition


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--pattern", default=r"^[^_].*\..*\..*$", help="regex of CDC topics")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    pattern = re.compile(args.pattern)

    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    consumer = KafkaConsumer(bootstrap_servers=args.broker, api_version=(2, 8, 0), metadata_max_age_ms=5000)
    assigned = set()
    tables = {}
    latencies_ms = []
    records = 0
    value_bytes = 0
    next_listing = 0.0
    ready_written = False
    while not stop:
        now = time.monotonic()
        if now >= next_listing:
            next_listing = now + 5.0
            wanted = set()
            for topic in consumer.topics():
                if pattern.match(topic):
                    for partition in consumer.partitions_for_topic(topic) or ():
                        wanted.add(TopicPartition(topic, partition))
            if wanted != assigned:
                new = wanted - assigned
                consumer.assign(sorted(wanted))
                if new:
                    consumer.seek_to_end(*new)
                assigned = wanted
            if not ready_written and assigned:
                ready_written = True
                with open(args.out + ".ready", "w") as ready:
                    ready.write(str(len(assigned)))
        batches = consumer.poll(timeout_ms=200)
        seen_ms = time.time() * 1000.0
        for batch in batches.values():
            for record in batch:
                records += 1
                if record.value is None:
                    continue
                value_bytes += len(record.value)
                try:
                    envelope = json.loads(record.value)
                except ValueError:
                    continue
                payload = envelope.get("payload", envelope) if isinstance(envelope, dict) else None
                if not isinstance(payload, dict):
                    continue
                source = payload.get("source") or {}
                table = source.get("table") or record.topic.rsplit(".", 1)[-1]
                ops = tables.setdefault(table, {})
                op = payload.get("op")
                ops[op] = ops.get(op, 0) + 1
                latencies_ms.append(seen_ms - record.timestamp)
    with open(args.out, "w") as out:
        json.dump(
            {"records": records, "value_bytes": value_bytes, "tables": tables, "latencies_ms": latencies_ms}, out
        )


if __name__ == "__main__":
    main()
