#!/usr/bin/env python3
"""How long one broker takes to answer one ListOffsets v2 request (the sidecar's batched watermark read) for the
first N topics of a benchmark topic set, and the exact sizes on the wire (a check of bench.py's floor formula).
  list_offsets_probe.py --broker 127.0.0.1:9092 --topics 1200 --partitions 100 --steps 12,120,600,1200
Prints one JSON line per step: topics, partitions, request and response bytes, seconds to answer."""
import argparse
import json
import socket
import struct
import time

PREFIX = "university-server.public."
CLIENT_ID = b"cdc-orchestrator"


def string(s):
    return struct.pack(">h", len(s)) + s


def list_offsets(topics, correlation):
    """topics: (name, [partition, ...]) pairs."""
    body = struct.pack(">hhi", 2, 2, correlation) + string(CLIENT_ID)  # ListOffsets v2, header v1
    body += struct.pack(">ibi", -1, 1, len(topics))  # replica id, read_committed, topic count
    for name, partitions in topics:
        body += string(name.encode()) + struct.pack(">i", len(partitions))
        body += b"".join(struct.pack(">iq", p, -1) for p in partitions)
    return struct.pack(">i", len(body)) + body


def split(topics, per_request):
    """The topics' partitions in requests of at most `per_request` partitions, a topic going on in the next request
    when the current one is full (as the sidecar does, src/kafka/watermarks.rs)."""
    requests, current, room = [], [], per_request
    for name, partitions in topics:
        rest = list(partitions)
        while rest:
            now, rest = rest[:room], rest[room:]
            current.append((name, now))
            room -= len(now)
            if room == 0:
                requests.append(current)
                current, room = [], per_request
    if current:
        requests.append(current)
    return requests


def read_frame(sock):
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    size = struct.unpack(">i", head)[0]
    got = 0
    while got < size:
        chunk = sock.recv(min(1 << 20, size - got))
        if not chunk:
            raise ConnectionError("closed")
        got += len(chunk)
    return size + 4


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topics", type=int, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--steps", default="", help="topic counts to ask for, comma-separated (default: all)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--per-request", type=int, default=0,
                        help="ask in requests of at most this many partitions, one after another (default: one request)")
    parser.add_argument("--prefix", default=PREFIX + "scale")
    args = parser.parse_args()
    host, port = args.broker.rsplit(":", 1)
    steps = [int(s) for s in args.steps.split(",") if s] or [args.topics]
    with socket.create_connection((host, int(port)), timeout=args.timeout) as sock:
        for i, n in enumerate(steps):
            topics = [(f"{args.prefix}{t}", args.partitions) for t in range(n)]
            topics = [(name, range(partitions)) for name, partitions in topics]
            requests = split(topics, args.per_request) if args.per_request > 0 else [topics]
            sent = received = 0
            t0 = time.perf_counter()
            for r, asked in enumerate(requests):
                request = list_offsets(asked, i * len(requests) + r + 1)
                sent += len(request)
                sock.sendall(request)
                try:
                    received += read_frame(sock)
                except (socket.timeout, ConnectionError) as e:
                    print(json.dumps({"topics": n, "partitions": n * args.partitions, "request": sent,
                                      "error": str(e), "after_s": round(time.perf_counter() - t0, 2)}), flush=True)
                    return
            print(json.dumps({"topics": n, "partitions": n * args.partitions, "requests": len(requests),
                              "request": sent, "response": received, "seconds": round(time.perf_counter() - t0, 3)}),
                  flush=True)

if __name__ == "__main__":
    main()
