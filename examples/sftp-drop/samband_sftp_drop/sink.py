"""Each batch of deliveries as one JSON-lines file in a folder on the subscriber's SFTP server.

    delivery:
      kind: sftp
      host: sftp.kommune.example
      username: samband
      password_ref: env:SAMBAND_SFTP_PASSWORD_ALTA_BIBLIOTEK   # only the subscription's own
      host_key: ssh-ed25519 AAAA...                             # the server's key: no trust on first use
      directory: inbox

A batch is written to a hidden temp file and renamed to `<UTC time>-<hash of its lines>.jsonl`,
so the reader never sees half a file, and reading the files in name order reads each person's
events in order (a person's next event is sent only after the last one's file is in place).
Each line is `{"idempotency_key": ..., "event": <CloudEvent>}`, the event as it leaves the bus;
a batch written again after a crash is a second file with the same keys: readers dedupe by them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncssh
import orjson
from pydantic import Field

from connectors.api import ConnectorConfig, Outcome, Sink, SinkRecord
from connectors.webhook.network import AllowList


class SftpDropConfig(ConnectorConfig):
    host: str = Field(pattern=r"^[A-Za-z0-9.:-]{1,253}$")
    port: int = Field(22, ge=1, le=65535)
    username: str = Field(min_length=1, max_length=64)
    password_ref: str  # env:SAMBAND_SFTP_PASSWORD_<ID>: a reference, never the password
    host_key: str = Field(pattern=r"^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/=]+")
    directory: str = Field(".", pattern=r"^[A-Za-z0-9._/-]{1,200}$")
    max_concurrency: int = Field(1, ge=1, le=4)
    timeout: float = Field(30.0, gt=0, le=120)


def own_password_ref(subscription: str) -> str:
    return "env:SAMBAND_SFTP_PASSWORD_" + subscription.upper().replace("-", "_")


class SftpDropSink(Sink):
    Config = SftpDropConfig
    description = "Batches of deliveries as JSON-lines files on the subscriber's SFTP server"
    config: SftpDropConfig
    max_batch = 200

    @classmethod
    def endpoint(cls, config: ConnectorConfig, subscription: str) -> object:
        assert isinstance(config, SftpDropConfig)  # where files go; a new timeout needs no new check
        return [config.host, config.port, config.username, config.password_ref, config.host_key, config.directory]

    @classmethod
    def refusal(cls, config: ConnectorConfig, subscription: str, bus: Mapping[str, Any] | None) -> str | None:
        assert isinstance(config, SftpDropConfig)
        if config.password_ref != own_password_ref(subscription):
            return f"password_ref: only the subscription's own secret may be named: {own_password_ref(subscription)}"
        if bus is not None:
            refused = _address_refusal(bus, config.host, _literal(config.host))
            if refused:
                return f"host: {refused}"
        return None

    async def start(self) -> None:
        self._connection: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()

    async def stop(self) -> None:
        connection = getattr(self, "_connection", None)
        if connection is not None:
            connection.close()
            with contextlib.suppress(OSError, asyncssh.Error):
                await connection.wait_closed()

    async def verify(self, subscription: str) -> Outcome:
        """The folder exists and takes a file: a probe is written and removed."""
        try:
            async with (
                asyncio.timeout(self.config.timeout),
                await self._connect() as connection,
                connection.start_sftp_client() as sftp,
            ):
                probe = f"{self.config.directory}/.samband-verify-{secrets.token_hex(6)}"
                async with sftp.open(probe, "wb") as file:
                    await file.write(b"")
                await sftp.remove(probe)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            return Outcome.retry("sftp.unavailable", type(exc).__name__)
        return Outcome.delivered()

    async def write(self, batch: Sequence[SinkRecord]) -> list[Outcome]:
        lines, outcomes = [], []
        for record in batch:
            line = _line(record.value)
            outcomes.append(Outcome.delivered() if line else Outcome.rejected("delivery.malformed", "not a delivery"))
            if line:
                lines.append(line)
        if not lines:
            return outcomes
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{hashlib.sha256(b''.join(lines)).hexdigest()[:16]}.jsonl"
        try:
            async with asyncio.timeout(self.config.timeout):
                async with self._connecting:
                    if self._connection is None:
                        self._connection = await self._connect()
                async with self._connection.start_sftp_client() as sftp:
                    temp = f"{self.config.directory}/.{name}.{secrets.token_hex(4)}.tmp"
                    async with sftp.open(temp, "wb") as file:
                        await file.write(b"".join(lines))
                        await file.fsync()
                    await sftp.posix_rename(temp, f"{self.config.directory}/{name}")  # atomic
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            await self.stop()  # the next batch connects anew; no socket is left behind
            self._connection = None
            failed = Outcome.retry("sftp.unavailable", type(exc).__name__)
            return [failed if outcome.status == "delivered" else outcome for outcome in outcomes]
        return outcomes

    async def _connect(self) -> asyncssh.SSHClientConnection:
        """To an address the bus allows (checked on every address the name resolves to, now), with the
        subscription's own password and only the configured host key."""
        password = os.environ.get(self.config.password_ref.removeprefix("env:"))
        if not password:
            raise OSError("the subscription's SFTP password is not available")
        infos = await asyncio.get_running_loop().getaddrinfo(
            self.config.host, self.config.port, type=socket.SOCK_STREAM
        )
        address = infos[0][4][0]
        for info in infos:
            if _address_refusal(self.context.extras, self.config.host, ipaddress.ip_address(info[4][0])):
                raise OSError("the SFTP host resolves to an address the bus may not reach")
        return await asyncssh.connect(
            address,
            self.config.port,
            username=self.config.username,
            password=password,
            known_hosts=([asyncssh.import_public_key(self.config.host_key)], [], []),
            client_keys=None,
            agent_path=None,
        )


def _address_refusal(bus: Mapping[str, Any], host: str, address) -> str | None:
    # SSH is encrypted, as https is: what remains is where it may connect (the webhooks' allow-list).
    return bus.get("webhook_allow", AllowList()).refusal("https", host, address)


def _literal(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _line(value: bytes) -> bytes | None:
    """Only the idempotency key and the event: nothing else of the record leaves."""
    try:
        delivery = orjson.loads(value)
        key, event = delivery["idempotency_key"], delivery["event"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(key, str) or not isinstance(event, dict):
        return None
    return orjson.dumps({"idempotency_key": key, "event": event}) + b"\n"
