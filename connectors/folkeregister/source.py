"""Source: Folkeregisteret's event feed (hendelsesliste) into `samband-ingest`.

Per page (at most 1000 entries from the bookmarked sequence number):
fetch the page -> fetch its event documents (`document_fetch`: in bulk, one POST of the page's
ids to …/hendelser/dokumenter, an extension the simulator or a proxy offers; or one GET per
document, concurrently and bounded, which is all the real register offers) -> map each to its catalog
record and encode it (connectors.folkeregister.encoding, in `encode_workers` worker processes) -> send the page's records and dead
letters, waiting until all are durable -> only then save the bookmark {"next_seq": last + 1}.
A crash between the send and the bookmark re-reads the page: same event ids, same keys, and
ingest deduplicates by event id.

HTTP: If-None-Match when re-polling the end of the feed (304 = nothing new), 429 waits for
Retry-After, 5xx and connection errors back off exponentially with full jitter; every wait
is logged (`feed.throttled`, `feed.backoff`). Authentication is a TokenProvider; the real
feed wants a Maskinporten token, which is another TokenProvider (see docs/connectors.md).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
from concurrent.futures import ProcessPoolExecutor
from itertools import chain
from typing import Literal, Protocol

import aiohttp
import orjson
from pydantic import Field

from connectors.api import ConnectorConfig, OutputRecord, SecretStr, Source
from connectors.dead_letters import DeadLetter
from connectors.folkeregister.encoding import encode_documents, start_worker
from connectors.folkeregister.feed_format import API_PATH, BULK_LIMIT, BULK_PATH

NO_BULK_ENDPOINT = (404, 405)  # what a feed without the bulk extension answers to its POST
_Dead = tuple[bytes | None, bytes, DeadLetter]  # key, raw bytes, why


class TokenProvider(Protocol):
    async def token(self) -> str:
        """A current access token (a provider refreshes it before it expires)."""
        ...

    def invalidate(self) -> None:
        """The feed refused the token (401): fetch a new one next time."""
        ...


class StaticTokenProvider:
    def __init__(self, token: str):
        self._token = token

    async def token(self) -> str:
        return self._token

    def invalidate(self) -> None:
        pass  # a static token cannot be renewed; the next 401 fails the source


class FeedSourceConfig(ConnectorConfig):
    base_url: str = Field(pattern=r"^https?://", description="feed host, e.g. http://127.0.0.1:8089")
    token: SecretStr | None = Field(None, description="static bearer token; omit when a TokenProvider is injected")
    start_seq: int = Field(1, ge=1, description="first sequence number when there is no bookmark yet")
    document_fetch: Literal["auto", "bulk", "single"] = Field(
        "auto",
        description="bulk: one POST of a page's ids to …/hendelser/dokumenter (the simulator's or a proxy's "
        "extension); single: one GET per document (the real register); auto: bulk when the feed offers it",
    )
    document_concurrency: int = Field(64, ge=1, le=512, description="event documents fetched at once (single)")
    encode_workers: int = Field(
        1, ge=0, le=8, description="processes mapping and encoding documents; 0: on the source's own event loop"
    )
    poll_interval_s: float = Field(1.0, gt=0, description="wait when the feed has nothing new")
    backoff_initial_s: float = Field(0.2, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    request_timeout_s: float = Field(30.0, gt=0)
    stop_at_end: bool = Field(False, description="return once the feed is read to its end (batch runs, tests)")


class FeedError(RuntimeError):
    """The feed answered in a way retrying cannot fix (e.g. 401 twice, 400)."""


class _Stopping(Exception):
    """Stop was requested while waiting to retry: the page is unfinished and its bookmark unsaved."""


class FolkeregisterFeedSource(Source):
    """Polls Folkeregisteret's hendelsesliste and writes catalog events to samband-ingest."""

    Config = FeedSourceConfig
    description = "Folkeregisteret event feed (hendelsesliste) -> samband-ingest, with exact resume"
    config: FeedSourceConfig

    async def start(self) -> None:
        injected = self.context.extras.get("token_provider")
        if injected is None and self.config.token is None:
            raise FeedError("no credentials: set `token` or inject a token_provider")
        self.tokens: TokenProvider = injected or StaticTokenProvider(self.config.token.get_secret_value())
        self._encoders = self._start_encoders(self.config.encode_workers)
        limit = self.config.document_concurrency
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit + 2),  # documents + the prefetched page
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_s),
        )
        self._documents = asyncio.Semaphore(limit)
        self._fetch = self.config.document_fetch  # auto becomes single when the feed has no bulk endpoint
        self._random = random.Random()

    async def stop(self) -> None:
        if getattr(self, "http", None) is not None:
            await self.http.close()
        if getattr(self, "_encoders", None) is not None:
            await asyncio.to_thread(self._encoders.shutdown, cancel_futures=True)

    @staticmethod
    def _start_encoders(workers: int) -> ProcessPoolExecutor | None:
        """Worker processes for the CPU work, started now (they take a moment to import) and not awaited."""
        if workers == 0:
            return None
        spawn = multiprocessing.get_context("spawn")  # not fork: this process holds an event loop and sockets
        pool = ProcessPoolExecutor(workers, mp_context=spawn, initializer=start_worker, initargs=(os.getpid(),))
        for _ in range(workers):
            pool.submit(encode_documents, [])
        return pool

    async def run(self) -> None:
        bookmark = await self.context.state.load()
        next_seq = bookmark["next_seq"] if bookmark else self.config.start_seq
        self.log.info("feed.resume", next_seq=next_seq, from_bookmark=bookmark is not None)
        try:
            await self._poll(next_seq)
        except _Stopping:
            self.log.info("feed.stopped_while_waiting")

    async def _poll(self, next_seq: int) -> None:
        """Pipelined: while a page is sent and bookmarked, the next one is fetched and mapped.

        A page's records are sent only once the previous page's bookmark is saved, and its own
        bookmark only once they are durable: pages are produced and bookmarked strictly in order.
        """
        prefetch = asyncio.create_task(self._fetch_page(next_seq, etag=None))
        delivering: asyncio.Task | None = None
        try:
            while not self.stopping.is_set():
                entries, documents, etag = await prefetch
                if not entries:
                    if delivering is not None:
                        await delivering  # nothing to overlap with: finish the page in flight
                        delivering = None
                    if self.config.stop_at_end:
                        self.log.info("feed.caught_up", next_seq=next_seq)
                        return
                    if await _wait(self.stopping, self.config.poll_interval_s):
                        return
                    prefetch = asyncio.create_task(self._fetch_page(next_seq, etag=etag))
                    continue
                following = _last_seq(entries, next_seq) + 1
                prefetch = asyncio.create_task(self._fetch_page(following, etag=None))  # a new position: no ETag
                records, dead = await self._map_page(entries, documents)
                if delivering is not None:
                    await delivering
                delivering = asyncio.create_task(self._deliver(next_seq, following - 1, records, dead))
                next_seq = following
        finally:
            prefetch.cancel()
            await asyncio.gather(prefetch, return_exceptions=True)
            if delivering is not None:
                await delivering  # a page already sent gets its bookmark

    async def _fetch_page(self, seq: int, *, etag: str | None) -> tuple[list, list, str | None]:
        """The page at `seq` (empty when there is nothing new), its documents, and the ETag to re-poll with."""
        status, body, new_etag = await self._request(f"{API_PATH}/feed?seq={seq}", etag=etag)
        if status == 304 or body is None:
            return [], [], etag
        entries = orjson.loads(body)
        return entries, await self._fetch_documents(entries), new_etag

    async def _fetch_documents(self, entries: list) -> list[tuple[bytes, DeadLetter | None]]:
        """Per entry: its event document's bytes, or the raw entry and why it has no document."""
        ids = [_document_id(entry) for entry in entries]
        wanted = [i for i in ids if i is not None]
        bodies = await self._bulk(wanted) if self._fetch != "single" else None
        if bodies is None:
            bodies = await asyncio.gather(*(self._single(i) for i in wanted))
        found = iter(bodies)
        results: list[tuple[bytes, DeadLetter | None]] = []
        for entry, document_id in zip(entries, ids, strict=False):
            body = next(found) if document_id is not None else None
            if body is not None:
                results.append((body, None))
            elif document_id is None:
                results.append(
                    (_raw(entry), _dead("source.malformed_entry", "feed entry has no usable hendelsesdokument id"))
                )
            else:
                results.append(
                    (_raw(entry), _dead("source.document_missing", f"event document {document_id} not found"))
                )
        return results

    async def _bulk(self, ids: list[str]) -> list[bytes | None] | None:
        """The documents (None for an unknown id), or None when the feed has no bulk endpoint (auto only)."""
        bodies: list[bytes | None] = []
        for start in range(0, len(ids), BULK_LIMIT):
            chunk = ids[start : start + BULK_LIMIT]
            passthrough = NO_BULK_ENDPOINT if self._fetch == "auto" else ()
            status, body, _ = await self._request(BULK_PATH, body=orjson.dumps(chunk), passthrough=passthrough)
            if status in NO_BULK_ENDPOINT:
                self.log.warning("feed.bulk_unavailable", status=status, document_fetch="single")
                self._fetch = "single"
                return None
            lines = body.split(b"\n")  # JSON lines, one per id: each document's bytes unchanged
            if lines[-1] == b"":
                lines.pop()
            if len(lines) != len(chunk):
                raise FeedError(f"bulk answer has {len(lines)} documents for {len(chunk)} ids")
            bodies += [None if line == b"null" else line for line in lines]
        return bodies

    async def _single(self, document_id: str) -> bytes | None:
        async with self._documents:
            status, body, _ = await self._request(f"{API_PATH}/{document_id}", passthrough=(404,))
        return body if status == 200 else None

    async def _map_page(self, entries: list, documents: list) -> tuple[list[OutputRecord], list[_Dead]]:
        raws = [raw for raw, failure in documents if failure is None]
        encoded = iter(await self._encode(raws))
        records: list[OutputRecord] = []
        dead: list[_Dead] = []
        for entry, (raw, failure) in zip(entries, documents, strict=False):
            result = failure or next(encoded)
            if isinstance(result, DeadLetter):
                dead.append((_entry_key(entry), raw, result))
            else:
                records.append(OutputRecord(key=result[0], value=result[1]))
        return records, dead

    async def _encode(self, raws: list[bytes]) -> list:
        """encode_documents over the workers, a contiguous share each (in order), or here without workers."""
        if self._encoders is None:
            return encode_documents(raws)
        loop = asyncio.get_running_loop()
        share = max(1, -(-len(raws) // self.config.encode_workers))
        shares = [raws[i : i + share] for i in range(0, len(raws), share)]
        encoded = await asyncio.gather(*(loop.run_in_executor(self._encoders, encode_documents, s) for s in shares))
        return list(chain.from_iterable(encoded))

    async def _deliver(self, first: int, last: int, records: list[OutputRecord], dead: list[_Dead]) -> None:
        """Send a page's records and dead letters, wait until all are durable, then save its bookmark."""
        await asyncio.gather(
            self.context.output.send(records), *(self.context.dead_letters.send(k, v, d) for k, v, d in dead)
        )
        await self.context.state.save({"next_seq": last + 1})
        self.log.info("feed.page", first_seq=first, last_seq=last, events=len(records), dead_letters=len(dead))

    async def _request(
        self, path: str, *, body: bytes | None = None, etag: str | None = None, passthrough: tuple[int, ...] = ()
    ) -> tuple[int, bytes | None, str | None]:
        """GET (POST of a JSON `body`) with auth and retries; (status, body, etag) for 200, 304 and `passthrough`."""
        attempt, refreshed = 0, False
        url = self.config.base_url + path
        while True:
            error = None
            headers = {"Authorization": f"Bearer {await self.tokens.token()}"}
            if etag:
                headers["If-None-Match"] = etag
            if body is not None:
                headers["Content-Type"] = "application/json"
            request = (
                self.http.get(url, headers=headers) if body is None else self.http.post(url, headers=headers, data=body)
            )
            try:
                async with request as response:
                    if response.status == 200:
                        return 200, await response.read(), response.headers.get("ETag")
                    if response.status == 304 or response.status in passthrough:
                        return response.status, None, response.headers.get("ETag")
                    status, retry_after = response.status, response.headers.get("Retry-After")
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, retry_after = None, None
                error = type(exc).__name__
            if status == 401 and not refreshed:
                self.tokens.invalidate()
                refreshed = True
                continue
            if status is not None and status != 429 and status < 500:
                raise FeedError(f"feed answered {status} for {path.split('?')[0]}")
            attempt += 1
            if status == 429:
                delay = _seconds(retry_after) or self._backoff(attempt)
                self.log.warning("feed.throttled", retry_after_s=delay, attempt=attempt)
            else:
                delay = self._backoff(attempt)
                self.log.warning("feed.backoff", status=status, error=error, delay_s=round(delay, 3), attempt=attempt)
            if await _wait(self.stopping, delay):
                raise _Stopping

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: uniform in [initial / 2, min(max, initial * 2^attempt)]."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2**attempt)
        return self._random.uniform(self.config.backoff_initial_s / 2, ceiling)


def _dead(reason: str, message: str) -> DeadLetter:
    return DeadLetter(reason=reason, message=message, stage="source")


def _document_id(entry) -> str | None:
    """The entry's hendelsesdokument id, None when it is missing or unusable in a URL path."""
    try:
        document_id = entry["hendelse"]["hendelsesdokument"]
    except (KeyError, TypeError):
        return None
    return document_id if isinstance(document_id, str) and document_id and "/" not in document_id else None


def _raw(entry) -> bytes:
    return orjson.dumps(entry)


def _entry_key(entry) -> bytes | None:
    try:
        return entry["hendelse"]["hendelsesdokument"].encode()
    except (KeyError, TypeError, AttributeError):
        return None


def _last_seq(entries: list, first: int) -> int:
    return max((e["sekvensnummer"] for e in entries if _has_seq(e)), default=first + len(entries) - 1)


def _has_seq(entry) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("sekvensnummer"), int)


def _seconds(retry_after: str | None) -> float | None:
    try:
        return max(float(retry_after), 0.0) if retry_after else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` unless the event is set first; True if it was set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
        return True
    except TimeoutError:
        return False
