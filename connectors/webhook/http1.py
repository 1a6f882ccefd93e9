"""The webhook's HTTP/1.1 client: POSTs to one URL over a pool of keep-alive connections.

    endpoint = Endpoint(URL("https://hooks.example/samband"), limit=8, connect_timeout=5, read_timeout=10,
                        resolve=GuardedResolver(allow, "https").resolve)
    answer = await endpoint.post({"Content-Type": "application/json"}, body, max_body=64 * 1024)
    answer.status, answer.headers.get("retry-after"), answer.body
    await endpoint.close()

Why not aiohttp's client: a webhook needs nothing of it but HTTP/1.1 itself (no cookies,
redirects, proxies, streaming or sessions), and its request path cost the worker about twice the
CPU of this one (`bench/bench_webhook_client.py`, docs/delivery.md "The webhook's own HTTP
client"); a reform day sends millions of requests (docs/national-scale.md). Its session was also
5.4 KB a subscriber, this pool 0.9 KB.

What it does, and nothing more:
- one request on a connection at a time; at most `limit` connections; a request waits for a
  free one. A connection is kept for the next request, `keepalive` seconds at most while idle,
  when the answer allows it (HTTP/1.1, no `Connection: close`, a body with a length or chunked,
  read to its end);
- a name is resolved at each new connection by `resolve` (the allow-list's check, network.py),
  and its addresses are tried in turn, each with an equal share of connect_timeout (an address
  that does not answer does not keep the next from being tried). A literal address goes through
  `resolve` too (no lookup is made for it): the allow-list is judged in that one place, on the
  address as connected to. https verifies the certificate and the host name;
- the answer's head is read up to 64 KiB; its body (Content-Length, chunked, or up to the
  connection's close) up to `max_body` bytes: a longer one is cut there and its connection
  closed, never read to its end;
- time: all of it (a free connection, connecting, the answer) within connect_timeout +
  read_timeout; connecting and TLS within connect_timeout; the whole answer within read_timeout
  of the request being written;
- a request on a kept connection that the server closed within `STALE_CLOSE` seconds of the
  request, before a byte of the answer (it closed the idle connection as the request went out),
  is sent once more, on a new connection: the subscriber deduplicates by `webhook-id`, and a
  retry would cost a whole retry-schedule step. Only then: not on a new connection, not once an
  answer has begun, not after a later close (the subscriber may have acted on it), not after a
  timeout.

Errors: the subscriber's side raises `TimeoutError`, `OSError` for connecting (refused,
unreachable, a name not found, TLS, the allow-list's `AddressRefused`), or `ProtocolError` (the
connection closed before its answer, or an answer that is not HTTP/1.x as a client reads it).
`ValueError` is the bus's own: a URL that is not http(s), a header holding a line break.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from yarl import URL

MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
STALE_CLOSE = 0.5  # seconds: a keep-alive's close crossing the request comes within a round trip
_MAX_CHUNK_LINE = 1024
_HEX_DIGITS = b"0123456789abcdefABCDEF"

Resolve = Callable[[str, int], Awaitable[list[str]]]  # host, port -> the addresses to try


class ProtocolError(Exception):
    """The connection closed before its answer, or the answer is not HTTP/1.x as a client reads it."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes  # up to the request's max_body


_tls: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The system's CAs, certificate and host name verified. One for the process, made at the first
    https connection: loading the CA store costs milliseconds and memory, and 18,000 pools share it."""
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


# Where the reading of an answer is: its head, then its body by Content-Length, by chunks, or to the close.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE = range(7)


class _Connection(asyncio.Protocol):
    """One connection; reads one answer at a time into `answer`."""

    __slots__ = (
        "_answer",
        "_body",
        "_buffer",
        "_headers",
        "_keep",
        "_max_body",
        "_remaining",
        "_scanned",
        "_state",
        "_status",
        "answer_started",
        "closed",
        "closed_at",
        "idle_since",
        "transport",
        "written_at",
    )  # fmt: skip

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.closed_at = self.written_at = 0.0  # loop times of the close, and of the last request written
        self.idle_since = 0.0
        self.answer_started = False  # a byte of the current answer came
        self._answer: asyncio.Future[Answer] | None = None
        self._buffer = bytearray()
        self._max_body = 0
        self._state = _HEAD
        self._scanned = 0  # how far the buffer was searched for a head's end: a trickled head is searched once
        self._remaining = 0
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._keep = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.closed_at = asyncio.get_running_loop().time()
        answer = self._answer
        if answer is not None and not answer.done():
            if self._state == _UNTIL_CLOSE:
                self._finish(keep=False)
            else:
                answer.set_exception(ProtocolError("the connection closed before the whole answer came"))

    def request(self, head: bytes, body: bytes, max_body: int) -> asyncio.Future[Answer]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._answer = answer = loop.create_future()
        self._max_body, self.answer_started, self.written_at = max_body, False, loop.time()
        self.transport.writelines((head, body))
        return answer

    @property
    def reusable(self) -> bool:
        return self._keep and not self.closed and not self._buffer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # nothing of ours is left to write once we give a connection up

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None or answer.done():
            self.close()  # bytes nobody asked for: not a connection to send the next request on
            return
        self.answer_started = True
        self._buffer += data
        try:
            self._read()
        except (ProtocolError, ValueError) as exc:  # ValueError: a number the checks let through, still not one
            answer.set_exception(exc if isinstance(exc, ProtocolError) else ProtocolError("a malformed answer"))
            self.close()

    def _read(self) -> None:
        buffer = self._buffer
        while self._answer is not None and not self._answer.done():
            state = self._state
            if state == _HEAD:
                end = self._block_end("head")
                if end < 0:
                    return
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._read_head(head)
            elif state in (_LENGTH, _CHUNK_DATA):
                if not buffer:
                    return
                taken = min(len(buffer), self._remaining)
                self._take(buffer, taken)
                self._remaining -= taken
                if self._remaining == 0 and state == _LENGTH:
                    self._finish(self._keep)
                elif self._remaining == 0:
                    self._state = _CHUNK_END
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n", 0, _MAX_CHUNK_LINE)
                if end < 0:
                    if len(buffer) > _MAX_CHUNK_LINE:
                        raise ProtocolError("a chunk's size line is too long")
                    return
                size = bytes(buffer[:end].split(b";", 1)[0].strip())
                del buffer[: end + 2]
                if not size or size.strip(_HEX_DIGITS):
                    raise ProtocolError("a chunk's size is not a hex number")
                self._remaining = int(size, 16)
                self._state = _CHUNK_DATA if self._remaining else _TRAILERS
            elif state == _CHUNK_END:
                if len(buffer) < 2:
                    return
                if buffer[:2] != b"\r\n":
                    raise ProtocolError("a chunk does not end with CRLF")
                del buffer[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                else:
                    end = self._block_end("trailers")
                    if end < 0:
                        return
                    del buffer[: end + 4]
                self._finish(self._keep)
            else:  # _UNTIL_CLOSE: connection_lost ends it
                self._take(buffer, len(buffer))
                return

    def _block_end(self, what: str) -> int:
        """Where the head (or the trailers) ends in the buffer, searched from where the last search
        stopped; -1 while it has not come."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3), MAX_HEAD + 4)
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise ProtocolError(f"the {what} of an answer is larger than 64 KiB")
            self._scanned = len(buffer)
        else:
            self._scanned = 0
        return end

    def _take(self, buffer: bytearray, count: int) -> None:
        """`count` bytes of body from the buffer, kept up to max_body; past it the answer ends cut."""
        room = self._max_body - len(self._body)
        self._body += buffer[: min(count, room)]
        del buffer[:count]
        if count > room or (len(self._body) >= self._max_body and self._state == _UNTIL_CLOSE):
            self._finish(keep=False)

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        if len(lines) > MAX_HEADERS + 1:
            raise ProtocolError(f"an answer with more than {MAX_HEADERS} headers")
        line = lines[0]
        # `HTTP/1.x NNN reason`; the reason may be missing, with or without its space
        if not line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) or not line[9:12].isdigit() or line[12:13] not in b" ":
            raise ProtocolError("the answer does not begin with an HTTP/1.x status line")
        status = int(line[9:12])
        headers: dict[str, str] = {}
        for field in lines[1:]:
            name, colon, value = field.partition(b":")
            if not colon or not name or name != name.strip():
                raise ProtocolError("an answer's header line is not `name: value`")
            key, text = name.decode("latin-1").lower(), value.strip().decode("latin-1")
            if key == "content-length" and headers.get(key, text) != text:
                raise ProtocolError("an answer with two different Content-Lengths")
            headers[key] = text
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("the answer switches protocols")
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self._status, self._headers, self._body = status, headers, bytearray()
        self._keep = line.startswith(b"HTTP/1.1") and "close" not in headers.get("connection", "").lower()
        length = headers.get("content-length")
        if status in (204, 304):
            self._finish(self._keep)
        elif "transfer-encoding" in headers:
            if headers["transfer-encoding"].lower().rsplit(",", 1)[-1].strip() == "chunked":
                self._state = _CHUNK_SIZE
            else:
                self._state, self._keep = _UNTIL_CLOSE, False
        elif length is not None:
            if not (length.isascii() and length.isdigit()):
                raise ProtocolError("an answer's Content-Length is not a number")
            self._remaining = int(length)
            self._state = _LENGTH
            if self._remaining == 0:
                self._finish(self._keep)
        else:
            self._state, self._keep = _UNTIL_CLOSE, False

    def _finish(self, keep: bool) -> None:
        self._keep = keep
        self._state = _HEAD
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(Answer(self._status, self._headers, bytes(self._body)))
        # nothing of it kept while the connection waits for the next request
        self._answer, self._headers, self._body = None, {}, bytearray()
        if not self._buffer:
            self._buffer = bytearray()  # an emptied one keeps its size
        if not keep:
            self.close()


class Endpoint:
    """Keep-alive connections to one URL's host, for POSTs to that URL."""

    def __init__(
        self,
        url: URL,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        resolve: Resolve,
        keepalive: float = 60.0,
        tls: ssl.SSLContext | None = None,
    ):
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise ValueError("a webhook URL is http(s)://host/...")
        self._host = url.raw_host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._tls = (tls or tls_context()) if url.scheme == "https" else None
        self._head_start = f"POST {url.raw_path_qs or '/'} HTTP/1.1\r\nHost: {url.host_port_subcomponent}\r\n"
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._resolve = resolve
        self._keepalive = keepalive
        self._slots = asyncio.Semaphore(limit)
        # A stack: the connection used last is taken first (the others may time out at the server, and go).
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def post(self, headers: dict[str, str], body: bytes, max_body: int) -> Answer:
        head = self._head(headers, len(body))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout + self._read_timeout
        # Timed with asyncio.timeout only where it may wait (a free connection, connecting): the
        # usual request, on a kept connection, costs one timer (`_exchange`), not the timeout's
        # three (made, rescheduled, cancelled), a few µs each.
        if self._slots.locked():
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        else:
            await self._slots.acquire()
        try:
            if self._closed:
                raise ProtocolError("the connection pool is closed")
            connection = self._idle_connection(loop)
            fresh = connection is None
            if connection is None:
                async with asyncio.timeout_at(deadline):
                    connection = await self._connect(loop)
            try:
                try:
                    result = await self._exchange(connection, head, body, max_body, deadline)
                except ProtocolError:
                    late = connection.closed_at - connection.written_at >= STALE_CLOSE
                    if fresh or connection.answer_started or late or self._closed:
                        raise
                    connection.close()  # a kept connection the server closed as the request went out
                    self._open.discard(connection)
                    async with asyncio.timeout_at(deadline):
                        connection = await self._connect(loop)
                    result = await self._exchange(connection, head, body, max_body, deadline)
            except BaseException:
                connection.close()
                self._open.discard(connection)
                raise
            if connection.reusable and not self._closed:
                connection.idle_since = loop.time()
                self._idle.append(connection)
                self._sweep_later(loop)
            else:
                connection.close()
                self._open.discard(connection)
            return result
        finally:
            self._slots.release()

    async def _exchange(
        self, connection: _Connection, head: bytes, body: bytes, max_body: int, deadline: float
    ) -> Answer:
        """The request written, its answer awaited: within read_timeout, and the attempt's deadline."""
        loop = asyncio.get_running_loop()
        answer = connection.request(head, body, max_body)
        timer = loop.call_at(min(deadline, loop.time() + self._read_timeout), _time_out, answer)
        try:
            return await answer
        finally:
            timer.cancel()

    def _head(self, headers: dict[str, str], length: int) -> bytes:
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if fields.count("\n") != len(headers) or fields.count("\r") != len(headers):
            raise ValueError("a request header holds a line break")  # the bus's own fault: never sent
        return f"{self._head_start}{fields}Content-Length: {length}\r\n\r\n".encode()

    def _idle_connection(self, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and loop.time() - connection.idle_since < self._keepalive:
                return connection
            connection.close()
            self._open.discard(connection)
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """A new connection: the host resolved and judged (within connect_timeout), then each
        address in turn, each given an equal share of connect_timeout."""
        async with asyncio.timeout(self._connect_timeout):
            addresses = await self._resolve(self._host, self._port)
        failure: Exception = OSError("the host has no address")
        for address in addresses:
            try:
                async with asyncio.timeout(self._connect_timeout / len(addresses)):
                    _, connection = await loop.create_connection(
                        _Connection,
                        address,
                        self._port,
                        ssl=self._tls,
                        server_hostname=self._host if self._tls else None,
                    )
            except (OSError, TimeoutError) as exc:
                failure = exc
                continue
            self._open.add(connection)
            return connection
        raise failure

    def _sweep_later(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweep is None:
            self._sweep = loop.call_later(self._keepalive, self._close_expired, loop)

    def _close_expired(self, loop: asyncio.AbstractEventLoop) -> None:
        """Idle connections past `keepalive` are closed, so an idle subscription holds no socket."""
        self._sweep = None
        now, kept = loop.time(), []
        for connection in self._idle:
            if connection.closed or now - connection.idle_since >= self._keepalive:
                connection.close()
                self._open.discard(connection)
            else:
                kept.append(connection)
        self._idle = kept
        if kept:
            self._sweep = loop.call_at(kept[0].idle_since + self._keepalive, self._close_expired, loop)

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for connection in self._open:
            connection.close()
        self._open.clear()
        self._idle.clear()


def _time_out(answer: asyncio.Future[Answer]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())
