"""What one webhook request costs the bus: aiohttp's client against the webhook's own (connectors/webhook/http1.py).

    .venv/bin/python bench/bench_webhook_client.py [--requests 20000] [--concurrency 4] [--repeat 3] [--body 2000]

No Kafka broker: a local aiohttp server in a process of its own answers 204 to every POST (its
CPU is not counted). In this process, in turns, each client posts `--requests` bodies of `--body`
bytes, `--concurrency` at a time over keep-alive connections, with the headers a batched webhook
request carries. About 10 s a turn on a 2-core machine. It prints a line per client and turn, then
a table of the medians and ranges over the turns of this process's CPU time per request (what
the worker pays for the request alone; the bus's own work per delivery is bench_delivery.py's)
and of requests/s, and the ratio aiohttp / http1 of CPU per request in each turn.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from statistics import median

import aiohttp
from aiohttp import web
from yarl import URL

from connectors.webhook.http1 import Endpoint

HEADERS = {
    "Content-Type": "application/cloudevents-batch+json; charset=utf-8",
    "User-Agent": "samband-webhook/1",
    "webhook-id": "batch.0123456789abcdef0123456789abcdef",
    "webhook-timestamp": "1796698989",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
}
MAX_BODY = 64 * 1024


def serve(port: int) -> None:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def with_aiohttp(url: URL, body: bytes, requests: int, concurrency: int) -> tuple[float, float]:
    """As the webhook sender posted before it had a client of its own."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=30, sock_connect=10, sock_read=20),
        cookie_jar=aiohttp.DummyCookieJar(),
    )

    async def post() -> None:
        reply = await session.post(url, data=body, headers=dict(HEADERS), allow_redirects=False)
        try:
            await reply.content.read(MAX_BODY)
        finally:
            reply.release()

    try:
        return await _timed(post, requests, concurrency)
    finally:
        await session.close()


async def with_endpoint(url: URL, body: bytes, requests: int, concurrency: int) -> tuple[float, float]:
    async def as_written(host: str, port: int) -> list[str]:
        return [host]  # a literal address; the allow-list's check is not what is measured

    endpoint = Endpoint(url, concurrency, 10, 20, as_written)

    async def post() -> None:
        await endpoint.post(dict(HEADERS), body, MAX_BODY)

    try:
        return await _timed(post, requests, concurrency)
    finally:
        await endpoint.close()


async def _timed(post, requests: int, concurrency: int) -> tuple[float, float]:
    async def worker(n: int) -> None:
        for _ in range(n):
            await post()

    await asyncio.gather(*(worker(5) for _ in range(concurrency)))  # connections open, paths warm
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = requests // concurrency * concurrency
    return cpu / done * 1e6, done / wall


async def wait_listening(port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--body", type=int, default=2000, help="bytes per request (a batch of 3 events is about 2,000)")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    server.start()
    url, body = URL(f"http://127.0.0.1:{port}/hook"), b"x" * args.body
    results: dict[str, list[tuple[float, float]]] = {"aiohttp's client": [], "the webhook's client (http1)": []}
    try:
        asyncio.run(wait_listening(port))
        for turn in range(args.repeat):
            for name, run in zip(results, (with_aiohttp, with_endpoint), strict=True):
                cpu, rate = asyncio.run(run(url, body, args.requests, args.concurrency))
                results[name].append((cpu, rate))
                print(f"turn {turn + 1}: {name}: {cpu:.0f} µs CPU per request, {rate:,.0f} requests/s", flush=True)
    finally:
        server.terminate()
    print(f"\n{args.requests:,} POSTs of {args.body:,} bytes, {args.concurrency} at a time, {args.repeat} turns")
    print("| client | CPU µs per request, median (range) | requests/s, median (range) |\n|---|---:|---:|")
    for name, runs in results.items():
        cpus, rates = [c for c, _ in runs], [r for _, r in runs]
        print(f"| {name} | {median(cpus):.0f} ({min(cpus):.0f}-{max(cpus):.0f}) | "
              f"{median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) |")  # fmt: skip
    per = [a[0] / b[0] for a, b in zip(*results.values(), strict=True)]
    print(f"aiohttp / http1 CPU per request, per turn: {', '.join(f'{p:.2f}' for p in per)}")


if __name__ == "__main__":
    main()
