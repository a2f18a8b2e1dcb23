#!/usr/bin/env python3
"""The Python counterpart of `cdc-orchestrator decode FILE`, for the benchmark: read the fixture JSON lines
(topic, base64 key and value), base64-decode, parse the value as JSON and print table, op and kind per line.
Usage: decode_lines.py FILE > answers.tsv"""
import base64
import json
import sys


def answer(line):
    try:
        record = json.loads(line)
        topic = record["topic"]
        key, value = record.get("key"), record.get("value")
        if key is not None:
            base64.b64decode(key)
        if value is None:
            return topic.rsplit(".", 1)[-1], "", "tombstone"
        raw = base64.b64decode(value)
    except (ValueError, KeyError, TypeError) as e:
        return "", "", f"invalid: {e}"
    if raw[:1] == b"\0":
        return topic.rsplit(".", 1)[-1], "", "opaque"
    try:
        envelope = json.loads(raw)
    except ValueError as e:
        return "", "", f"invalid: {e}"
    if not isinstance(envelope, dict):
        return "", "", "invalid: not an object"
    payload = envelope.get("payload", envelope)
    if not isinstance(payload, dict):
        return "", "", "invalid: no payload"
    if "status" in payload and "id" in payload:
        return "", "", "transaction"
    source = payload.get("source") or {}
    table = source.get("table") or topic.rsplit(".", 1)[-1]
    op = payload.get("op") or payload.get("__op") or ""
    return table, op, "change" if op else "heartbeat"


def main():
    out = sys.stdout
    with open(sys.argv[1], "rb") as f:
        for line in f:
            if line.strip():
                out.write("\t".join(answer(line)) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
