#!/usr/bin/env python3
"""A byte-counting TCP proxy: listen on one port, forward to the broker, and count the bytes
flowing broker -> client (what a watcher receives) and client -> broker, in all and per Kafka API.

It reads the Kafka frames as they pass (a 4-byte size, then in a request the api_key, api_version and
correlation id; in a response the correlation id, matched to its request on the same connection) and counts
each frame's bytes, size prefix included, under its API's name. Nothing is buffered beyond a frame's header.

Run tansu with --advertised-listener-url pointing at the proxy so metadata routes clients through
it; give each watcher its own proxy (and its own tansu listener) so bytes are attributed.
Counts are written as JSON to --out every 0.25 s and on SIGTERM/SIGINT.
"""
import argparse
import asyncio
import json
import os
import signal
import time

# The APIs a watcher or a consumer uses; others are counted under their number.
API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
    15: "DescribeGroups", 16: "ListGroups", 17: "SaslHandshake", 18: "ApiVersions", 36: "SaslAuthenticate",
}

COUNTS = {"from_broker": 0, "to_broker": 0, "connections": 0, "apis": {}}


def api_count(api):
    name = API_NAMES.get(api, str(api))
    entry = COUNTS["apis"].get(name)
    if entry is None:
        entry = COUNTS["apis"][name] = {"requests": 0, "to_broker": 0, "responses": 0, "from_broker": 0}
    return entry


class FrameCounter:
    """Walks one direction's byte stream frame by frame. Requests record their correlation id's API in the
    connection's `pending`; responses look it up there."""

    def __init__(self, direction, pending):
        self.direction = direction  # "to_broker" or "from_broker"
        self.pending = pending
        self.header = bytearray()  # the current frame's first bytes, until its header is known
        self.remaining = 0  # bytes of the current frame still to pass
        self.entry = None  # the current frame's API counters

    def feed(self, data):
        view = memoryview(data)
        while view:
            if self.entry is None:
                want = 12 if self.direction == "to_broker" else 8
                take = view[:want - len(self.header)]
                self.header += take
                view = view[len(take):]
                if len(self.header) < want:
                    return  # all of `data` is in the header so far
                size = int.from_bytes(self.header[0:4], "big", signed=True)
                if self.direction == "to_broker":
                    api = int.from_bytes(self.header[4:6], "big", signed=True)
                    correlation = int.from_bytes(self.header[8:12], "big", signed=True)
                    self.pending[correlation] = api
                    self.entry = api_count(api)
                    self.entry["requests"] += 1
                else:
                    correlation = int.from_bytes(self.header[4:8], "big", signed=True)
                    self.entry = api_count(self.pending.pop(correlation, -1))
                    self.entry["responses"] += 1
                self.entry[self.direction] += len(self.header)
                self.remaining = size + 4 - len(self.header)
                self.header = bytearray()
            passed = min(self.remaining, len(view))
            self.entry[self.direction] += passed
            self.remaining -= passed
            view = view[passed:]
            if self.remaining == 0:
                self.entry = None


async def pump(reader, writer, key, counter):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            COUNTS[key] += len(data)
            counter.feed(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port of the broker")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)

    async def handle(client_reader, client_writer):
        COUNTS["connections"] += 1
        try:
            broker_reader, broker_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        pending = {}
        try:
            await asyncio.gather(
                pump(client_reader, broker_writer, "to_broker", FrameCounter("to_broker", pending)),
                pump(broker_reader, client_writer, "from_broker", FrameCounter("from_broker", pending)),
            )
        except asyncio.CancelledError:
            pass  # shutting down: the final counts are dumped by main

    def dump():
        # "at": CLOCK_MONOTONIC, the same clock as the reader's time.monotonic(), so windows are exact.
        with open(args.out + ".tmp", "w") as f:
            json.dump({**COUNTS, "at": time.monotonic()}, f)
        os.replace(args.out + ".tmp", args.out)

    server = await asyncio.start_server(handle, "127.0.0.1", args.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        while not stop.is_set():
            dump()
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except asyncio.TimeoutError:
                pass
    dump()


if __name__ == "__main__":
    asyncio.run(main())
