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
    body = struct.pack(">hhi", 2, 2, correlation) + string(CLIENT_ID)  # ListOffsets v2, header v1
    body += struct.pack(">ibi", -1, 1, len(topics))  # replica id, read_committed, topic count
    for name, partitions in topics:
        body += string(name.encode()) + struct.pack(">i", partitions)
        body += b"".join(struct.pack(">iq", p, -1) for p in range(partitions))
    return struct.pack(">i", len(body)) + body


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
    parser.add_argument("--prefix", default=PREFIX + "scale")
    args = parser.parse_args()
    host, port = args.broker.rsplit(":", 1)
    steps = [int(s) for s in args.steps.split(",") if s] or [args.topics]
    with socket.create_connection((host, int(port)), timeout=args.timeout) as sock:
        for i, n in enumerate(steps):
            topics = [(f"{args.prefix}{t}", args.partitions) for t in range(n)]
            request = list_offsets(topics, i + 1)
            t0 = time.perf_counter()
            sock.sendall(request)
            try:
                response = read_frame(sock)
            except (socket.timeout, ConnectionError) as e:
                print(json.dumps({"topics": n, "partitions": n * args.partitions, "request": len(request),
                                  "error": str(e), "after_s": round(time.perf_counter() - t0, 2)}), flush=True)
                return
            print(json.dumps({"topics": n, "partitions": n * args.partitions, "request": len(request),
                              "response": response, "seconds": round(time.perf_counter() - t0, 3)}), flush=True)


if __name__ == "__main__":
    main()
