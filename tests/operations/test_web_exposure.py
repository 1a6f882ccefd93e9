"""What a real worker's web server lets a stranger reach (issue 13, finding 4): it listens only on
SAMBAND_WEB_HOST, Faust's own pages are off, and /api/* and the registry's write path need a token."""

from __future__ import annotations

import asyncio

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafka_io import produce
from test_worker_health import _get_until
from worker_process import WorkerProcess

from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.examples import example
from schemas.registry import CatalogRegistry

OPS_TOKEN = "test-token-operations-read"
OTHER_TOKEN = "test-token-subscriptions-only"

LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening socket on `port`, from /proc/net/tcp and tcp6 (what `ss -ltn` reads)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.partition(":")
                if state == LISTEN and int(hex_port, 16) == port:
                    found.add(address)
    return found


async def test_worker_listens_only_on_its_host_and_its_pages_need_a_token(worker_env, tmp_path):
    port = int(worker_env["SAMBAND_WEB_PORT"])
    env = {
        **worker_env,
        "SAMBAND_WEB_HOST": "127.0.0.1",
        "SAMBAND_API_TOKENS": f"{OPS_TOKEN}=operations:read,{OTHER_TOKEN}=subscriptions:read",
    }
    base = f"http://127.0.0.1:{port}"
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await _get_until(session, f"{base}/healthz", 200, worker)
            assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only: not 0.0.0.0, not ::

            for page in ("/router/", "/table/"):
                async with session.get(base + page) as response:
                    assert response.status == 404, page

            for path in ("/api/overview", "/api/trace/some-event-id"):
                async with session.get(base + path) as response:
                    assert response.status == 401, path
                    assert (await response.json())["error"] == "auth.unauthenticated"
                async with session.get(base + path, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}) as response:
                    assert response.status == 403, path
            async with session.get(
                f"{base}/api/overview", headers={"Authorization": f"Bearer {OPS_TOKEN}"}
            ) as response:
                assert response.status == 200
                assert "throughput" in await response.json()

            async with session.post(f"{base}/api/subscriptions/any/replay") as response:
                assert response.status == 401

            current = catalog().current("Move")
            register = f"{base}/subjects/{current.subject}/versions"
            async with session.post(register, json={"schema": current.text}) as response:
                assert response.status == 401
                assert (await response.json())["error_code"] == 40101
            async with session.post(
                register, json={"schema": current.text}, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}
            ) as response:
                assert response.status == 200
                assert (await response.json()) == {"id": current.id}
            async with session.get(f"{base}/schemas/ids/{current.id}") as response:  # reading stays open
                assert response.status == 200

            nested = b"[" * 100_000 + b"]" * 100_000  # the standard library's parser raised RecursionError
            async with session.post(
                register, data=nested, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}
            ) as response:
                assert response.status == 422
                assert (await response.json())["error_code"] == 42201
    finally:
        assert worker.stop() == 0, worker.log_tail()


async def test_bad_bytes_in_a_token_or_a_body_are_4xx_not_server_errors(worker_env, tmp_path):
    env = {**worker_env, "SAMBAND_API_TOKENS": f"{OPS_TOKEN}=operations:read+subscriptions:read+subscriptions:write"}
    base = f"http://127.0.0.1:{worker_env['SAMBAND_WEB_PORT']}"
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await _get_until(session, f"{base}/healthz", 200, worker)
            async with session.post(
                f"{base}/subscriptions",
                data=b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                headers={"Authorization": f"Bearer {OPS_TOKEN}"},
            ) as response:
                assert response.status == 400  # not a 500: the nesting is refused as invalid JSON
                assert (await response.json())["error"] == "request.invalid_json"
        reader, writer = await asyncio.open_connection("127.0.0.1", int(worker_env["SAMBAND_WEB_PORT"]))
        for path in ("/subscriptions", "/api/overview"):
            writer.write(
                b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xc3\r\n\r\n"
            )
            await writer.drain()
            status_line = await reader.readline()
            assert status_line.split()[1] == b"401", (path, status_line)
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
        writer.close()
    finally:
        assert worker.stop() == 0, worker.log_tail()


async def test_a_stage_that_dies_makes_the_worker_exit_non_zero(kafka_bootstrap, worker_env, tmp_path):
    """A real fault, not injected code: the events topic refuses every record (max.message.bytes),
    so ingest's first write fails for good. A supervisor must see the process end, not a worker
    that looks alive and routes nothing."""
    app_id = worker_env["SAMBAND_APP_ID"]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(f"{app_id}-events", 4, 1, topic_configs={"max.message.bytes": "100"}),
                NewTopic(f"{app_id}-ingest", 4, 1),
            ]
        )
    finally:
        await admin.close()
    codec = Codec(CatalogRegistry(catalog()))
    await produce(
        kafka_bootstrap, f"{app_id}-ingest", [codec.encode(example("Move"), codec.current_id("Move"))], [b"k"]
    )
    worker = WorkerProcess(worker_env, tmp_path / "worker.log")
    worker.start()
    try:
        deadline = asyncio.get_running_loop().time() + 90
        while worker.process.poll() is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)  # poll interval inside the deadline
        assert worker.process.poll() not in (None, 0), worker.log_tail()
        assert "IngestService]: Crashed" in worker.log_path.read_text()
    finally:
        worker.stop()
