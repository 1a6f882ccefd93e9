"""The webhook's HTTP/1.1 client (connectors/webhook/http1.py) against real servers on 127.0.0.1:
aiohttp's server for well-formed answers, a scripted asyncio server for the answers a client must
survive (interim, cut, malformed, closed, silent)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from yarl import URL

from connectors.webhook.http1 import MAX_HEAD, Endpoint, ProtocolError
from connectors.webhook.network import AddressRefused, AllowList, GuardedResolver

LOOPBACK = AllowList.parse("127.0.0.0/8, localhost")


async def _as_written(host: str, port: int) -> list[str]:
    return [host]  # the tests' servers are at literal addresses


def endpoint(url: str, limit: int = 4, read_timeout: float = 5.0, keepalive: float = 60.0) -> Endpoint:
    return Endpoint(URL(url), limit, 2.0, read_timeout, _as_written, keepalive=keepalive)


class Scripted:
    """A server that answers each request with the next of `answers` (bytes, or a function of the
    connection's writer), counting connections and requests; `None` closes without answering."""

    def __init__(self, answers: list[bytes | Callable | None]):
        self.answers = answers
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = 0
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook?x=1"
        return self.url

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line for line in head.split(b"\r\n") if line.startswith(b"Content-Length:"))[15:])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0) if self.answers else None
                if answer is None:
                    break
                if callable(answer):
                    await answer(writer)
                else:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@contextlib.asynccontextmanager
async def scripted(answers: list, **options) -> AsyncIterator[tuple[Scripted, Endpoint]]:
    """A scripted server and an endpoint posting to it, both closed after."""
    server = Scripted(answers)
    pool = endpoint(await server.start(), **options)
    try:
        yield server, pool
    finally:
        await pool.close()
        await server.stop()


async def _aiohttp_server(handler) -> tuple[str, web.AppRunner, list]:
    peers: list = []

    async def counting(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return await handler(request)

    app = web.Application()
    app.router.add_post("/hook", counting)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook", runner, peers


OK_NO_BODY = b"HTTP/1.1 204 No Content\r\n\r\n"


async def test_a_kept_connection_carries_the_next_request():
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"got": (await request.read()).decode()}, headers={"Retry-After": "7"})

    url, runner, peers = await _aiohttp_server(answer)
    pool = endpoint(url)
    try:
        first = await pool.post({"Content-Type": "application/json"}, b'{"a":1}', 1024)
        second = await pool.post({"Content-Type": "application/json"}, b'{"b":2}', 1024)
    finally:
        await pool.close()
        await runner.cleanup()
    assert (first.status, first.body) == (200, b'{"got": "{\\"a\\":1}"}')
    assert first.headers["retry-after"] == "7" and second.body == b'{"got": "{\\"b\\":2}"}'
    assert len(peers) == 2 and peers[0] == peers[1]  # one connection, kept


async def test_the_request_is_a_post_with_host_and_length_and_the_headers_given():
    async with scripted([OK_NO_BODY]) as (server, pool):
        answer = await pool.post({"Content-Type": "application/json", "webhook-id": "e1.s1"}, b'{"a":1}', 1024)
    port = URL(server.url).port
    assert (answer.status, answer.headers, answer.body) == (204, {}, b"")
    assert server.requests == [
        b"POST /hook?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b'webhook-id: e1.s1\r\nContent-Length: 7\r\n\r\n{"a":1}' % port
    ]


async def test_no_more_connections_than_the_limit():
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)  # the server's own pace, so requests overlap
        return web.Response(status=204)

    url, runner, peers = await _aiohttp_server(slow)
    pool = endpoint(url, limit=2)
    try:
        answers = await asyncio.gather(*(pool.post({}, b"x", 1024) for _ in range(20)))
    finally:
        await pool.close()
        await runner.cleanup()
    assert [a.status for a in answers] == [204] * 20
    assert len(set(peers)) == 2


async def test_a_chunked_answer_is_read_to_its_end_and_its_connection_kept():
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"challenge-", b"echoed", b"!"):
            await response.write(part)
        await response.write_eof()
        return response

    url, runner, peers = await _aiohttp_server(chunked)
    pool = endpoint(url)
    try:
        answers = [await pool.post({}, b"x", 1024) for _ in range(2)]
    finally:
        await pool.close()
        await runner.cleanup()
    assert [a.body for a in answers] == [b"challenge-echoed!"] * 2
    assert peers[0] == peers[1]


async def test_interim_answers_are_skipped_and_a_body_until_close_is_read():
    async def interim_then_until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nread until "
        )
        await writer.drain()
        writer.write(b"the close")  # no length: the body ends where the connection does
        writer.close()

    async with scripted([interim_then_until_close]) as (_server, pool):
        answer = await pool.post({}, b"x", 1024)
    assert answer.status == 200 and answer.body == b"read until the close"
    assert answer.headers == {"content-type": "text/plain"}


async def test_a_body_longer_than_asked_for_is_cut_and_its_connection_not_kept():
    big = b"y" * 100_000
    async with scripted([b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big), OK_NO_BODY]) as (
        server,
        pool,
    ):
        cut = await pool.post({}, b"x", 1000)
        after = await pool.post({}, b"x", 1000)
    assert cut.status == 200 and cut.body == b"y" * 1000
    assert after.status == 204 and server.connections == 2  # the cut one was not used again


async def test_connection_close_is_honoured():
    async with scripted([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", OK_NO_BODY]) as (
        server,
        pool,
    ):
        statuses = [(await pool.post({}, b"x", 1024)).status for _ in range(2)]
    assert statuses == [200, 204] and server.connections == 2


@pytest.mark.parametrize(
    "answer, says",
    [
        (b"HELLO THERE\r\n\r\n", "status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "two different Content-Lengths"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "not a number"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "not a number"),  # a digit to str.isdigit
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", "hex number"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", "CRLF"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "switches protocols"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"z" * MAX_HEAD + b"\r\n\r\n", "larger than 64 KiB"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed before the whole answer"),
    ],
)
async def test_a_malformed_or_cut_answer_is_a_protocol_error(answer, says):
    async def then_close(writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with scripted([then_close]) as (_server, pool):
        with pytest.raises(ProtocolError, match=says):
            await pool.post({}, b"x", 1024)


async def test_a_kept_connection_closed_by_the_server_as_the_request_went_out_is_sent_again_on_a_new_one():
    # The second request on the kept connection finds it closed without an answer (a server's
    # keep-alive ending at that moment); it is sent once more, on a new connection.
    async with scripted([OK_NO_BODY, None, OK_NO_BODY]) as (server, pool):
        statuses = [(await pool.post({}, b"x", 1024)).status for _ in range(2)]
    assert statuses == [204, 204] and server.connections == 2 and len(server.requests) == 3


async def test_a_request_is_sent_again_once_only():
    async with scripted([OK_NO_BODY, None, None, OK_NO_BODY]) as (server, pool):
        assert (await pool.post({}, b"x", 1024)).status == 204
        with pytest.raises(ProtocolError):
            await pool.post({}, b"x", 1024)  # closed on the kept connection, then on the new one
    assert len(server.requests) == 3


async def test_a_kept_connection_closed_after_its_answer_began_is_not_sent_again():
    async def begun_then_closed(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await writer.drain()
        writer.close()

    async with scripted([OK_NO_BODY, begun_then_closed, OK_NO_BODY]) as (server, pool):
        assert (await pool.post({}, b"x", 1024)).status == 204
        with pytest.raises(ProtocolError, match="closed before the whole answer"):
            await pool.post({}, b"x", 1024)
    assert len(server.requests) == 2


async def test_a_kept_connection_that_times_out_is_not_sent_again():
    async def silent(writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()

    async with scripted([OK_NO_BODY, silent, OK_NO_BODY], read_timeout=0.3) as (server, pool):
        assert (await pool.post({}, b"x", 1024)).status == 204
        with pytest.raises(TimeoutError):
            await pool.post({}, b"x", 1024)
    assert len(server.requests) == 2


async def test_a_first_request_closed_without_an_answer_is_not_sent_again():
    async with scripted([None, OK_NO_BODY]) as (server, pool):
        with pytest.raises(ProtocolError):
            await pool.post({}, b"x", 1024)
    assert len(server.requests) == 1


async def test_a_silent_server_times_out_at_the_read_timeout():
    async def silent(writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # holds the connection, never answers

    server = Scripted([silent])
    url = await server.start()
    pool = endpoint(url, read_timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(TimeoutError):
            await pool.post({}, b"x", 1024)
    finally:
        await pool.close()
        await server.stop()
    assert 0.3 <= loop.time() - started < 2.0  # the read timeout, not the total


async def test_a_header_with_a_line_break_is_never_sent():
    async with scripted([OK_NO_BODY]) as (server, pool):
        with pytest.raises(ValueError, match="line break"):
            await pool.post({"traceparent": "00-x\r\nX-Injected: 1"}, b"x", 1024)
    assert server.requests == []


async def test_an_idle_connection_is_closed_after_the_keepalive():
    server = Scripted([OK_NO_BODY])
    url = await server.start()
    pool = endpoint(url, keepalive=0.3)
    loop = asyncio.get_running_loop()
    try:
        assert (await pool.post({}, b"x", 1024)).status == 204
        answered = loop.time()
        async with asyncio.timeout(5):
            while server.closed == 0:  # the server sees the close the pool made
                await asyncio.sleep(0.02)
        closed = loop.time()
    finally:
        await pool.close()
        await server.stop()
    assert server.connections == 1 and closed - answered >= 0.3  # kept while the keepalive lasted


async def test_a_name_is_resolved_through_the_allow_list_at_each_new_connection():
    server = Scripted([OK_NO_BODY])
    url = await server.start()
    named = URL(url).with_host("localhost")
    allowed = Endpoint(named, 1, 2.0, 5.0, GuardedResolver(LOOPBACK, "http").resolve)
    refused = Endpoint(named, 1, 2.0, 5.0, GuardedResolver(AllowList(), "http").resolve)
    try:
        assert (await allowed.post({}, b"x", 1024)).status == 204
        with pytest.raises(AddressRefused):
            await refused.post({}, b"x", 1024)
    finally:
        await allowed.close()
        await refused.close()
        await server.stop()
    assert len(server.requests) == 1


def _certificate(tmp_path, name: str) -> tuple[str, str]:
    """A self-signed certificate for `name`: its PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


async def test_https_verifies_the_certificate_and_its_name(tmp_path):
    cert, key = _certificate(tmp_path, "hooks.example")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    async def hooks_example(host: str, port: int) -> list[str]:
        assert host == "hooks.example"
        return ["127.0.0.1"]

    url = URL(f"https://hooks.example:{port}/hook")
    trusting = ssl.create_default_context(cafile=cert)
    endpoints = [
        Endpoint(url, 1, 2.0, 5.0, hooks_example),  # the system's CAs do not know this certificate
        Endpoint(url, 1, 2.0, 5.0, hooks_example, tls=trusting),
        # trusted, but not for this name
        Endpoint(URL(f"https://localhost:{port}/hook"), 1, 2.0, 5.0, GuardedResolver(LOOPBACK, "https").resolve, tls=trusting),
    ]  # fmt: skip
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match="self-signed"):
            await endpoints[0].post({}, b"x", 1024)
        assert (await endpoints[1].post({}, b"x", 1024)).status == 204
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            await endpoints[2].post({}, b"x", 1024)
    finally:
        for each in endpoints:
            await each.close()
        await runner.cleanup()


async def test_a_subscribers_pool_before_its_first_connection_holds_under_1500_bytes():
    """A national worker process holds a pool for each of its 18,000 webhook subscriptions (each has
    had its handshake): aiohttp's session and connector were 5.4 KB each (tracemalloc), about 95 MiB."""
    import tracemalloc

    from connectors.webhook.config import WebhookConfig
    from connectors.webhook.sender import WebhookSender

    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        senders = [
            WebhookSender(WebhookConfig(url=f"https://hooks{i}.example/h", secret_ref="env:X"), LOOPBACK)
            for i in range(2000)
        ]
        before = tracemalloc.get_traced_memory()[0]
        for sender in senders:
            sender._open()  # as the first request (the handshake) opens it
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    for sender in senders:
        await sender.close()
    assert grown / 2000 < 1500, f"{grown / 2000:,.0f} bytes a subscriber's pool"


@pytest.mark.parametrize(
    "host", ["[::ffff:127.0.0.1%25]", "[::ffff:127.0.0.1%25lo]", "[::ffff:127.0.0.1]", "127.0.0.1"]
)
async def test_a_literal_address_is_judged_by_the_allow_list_as_connected_to(host):
    """Hostile review: with an empty IPv6 zone the address escaped both checks (the sender's saw
    no address, the client's saw a literal it did not resolve) and loopback was called."""
    server = Scripted([OK_NO_BODY])
    url = await server.start()
    port = URL(url).port
    pool = Endpoint(URL(f"https://{host}:{port}/hook"), 1, 2.0, 5.0, GuardedResolver(AllowList(), "https").resolve)
    try:
        with pytest.raises(OSError):  # AddressRefused, or no such address: never a connection
            await pool.post({}, b"x", 1024)
    finally:
        await pool.close()
        await server.stop()
    assert server.connections == 0


def test_a_webhook_url_with_an_ipv6_zone_is_refused():
    from pydantic import ValidationError

    from connectors.webhook.config import WebhookConfig

    with pytest.raises(ValidationError, match="zone"):
        WebhookConfig(url="https://[::ffff:127.0.0.1%25]:8443/admin", secret_ref="env:X")


async def test_a_kept_connection_holds_nothing_of_its_last_answer():
    """Hostile review: an idle kept connection held its last answer (up to 64 KiB of body and a head
    of thousands of headers) for as long as it was kept."""
    import gc
    import tracemalloc

    body = b"y" * 60_000
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)] * 20
    server = Scripted(list(answers))
    url = await server.start()
    pool = endpoint(url, limit=20)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        posts = [asyncio.create_task(pool.post({}, b"x", 64 * 1024)) for _ in range(20)]
        await asyncio.wait(posts)
        assert [len(post.result().body) for post in posts] == [60_000] * 20
        del posts
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
        await pool.close()
        await server.stop()
    assert server.connections == 20 and held < 200_000, f"{held:,} bytes held by 20 idle connections"


async def test_an_answer_with_more_than_100_headers_is_a_protocol_error():
    many = b"".join(b"X-%d: \r\n" % i for i in range(101))
    async with scripted([b"HTTP/1.1 204 No Content\r\n" + many + b"\r\n"]) as (_server, pool):
        with pytest.raises(ProtocolError, match="more than 100 headers"):
            await pool.post({}, b"x", 1024)


async def test_a_kept_connection_closed_long_after_the_request_is_not_sent_again():
    """Hostile review: a close seconds after the request is not a keep-alive's end crossing it:
    the subscriber may have acted on the request."""

    async def held_then_closed(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.8)  # the subscriber's own pace, past STALE_CLOSE
        writer.close()

    async with scripted([OK_NO_BODY, held_then_closed, OK_NO_BODY]) as (server, pool):
        assert (await pool.post({}, b"x", 1024)).status == 204
        with pytest.raises(ProtocolError):
            await pool.post({}, b"x", 1024)
    assert len(server.requests) == 2
