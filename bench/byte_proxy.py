#!/usr/bin/env python3
"""A byte-counting TCP proxy: listen on one port, forward to the broker, and count the bytes
flowing broker -> client (what a watcher receives) and client -> broker.

Run tansu with --advertised-listener-url pointing at the proxy so metadata routes clients through
it; give each watcher its own proxy (and its own tansu listener) so bytes are attributed.
Counts are written as JSON to --out every second and on SIGTERM/SIGINT.
"""
import argparse
import asyncio
import json
import signal

COUNTS = {"from_broker": 0, "to_broker": 0, "connections": 0}


async def pump(reader, writer, key):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            COUNTS[key] += len(data)
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
        try:
            await asyncio.gather(
                pump(client_reader, broker_writer, "to_broker"),
                pump(broker_reader, client_writer, "from_broker"),
            )
        except asyncio.CancelledError:
            pass  # shutting down: the final counts are dumped by main

    def dump():
        with open(args.out, "w") as f:
            json.dump(COUNTS, f)

    server = await asyncio.start_server(handle, "127.0.0.1", args.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        while not stop.is_set():
            dump()
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    dump()


if __name__ == "__main__":
    asyncio.run(main())
