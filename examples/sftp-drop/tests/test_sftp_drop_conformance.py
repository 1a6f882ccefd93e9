"""The SFTP drop kind passes the conformance kit's delivery-kind part against a real SFTP server."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import ClassVar

import pytest
from sftp_server import sftp_server

from connectors.testing.sink_kit import SUBSCRIBER, DeliveryKindConformance
from connectors.webhook.network import AllowList

PASSWORD_ENV = "SAMBAND_SFTP_PASSWORD_" + SUBSCRIBER.id.upper().replace("-", "_")


class TestSftpDropKind(DeliveryKindConformance):
    kind = "sftp"
    invalid_configs: ClassVar[list[tuple[dict, str]]] = [
        ({"host": "h", "username": "u", "password_ref": "env:X", "host_key": "not a key"}, "host_key"),
        ({"host": "h", "username": "u", "password_ref": "env:X", "host_key": "ssh-ed25519 AAAA", "pw": "s3cret-value"}, "pw"),
    ]  # fmt: skip
    secret_values = ("s3cret-value",)

    @asynccontextmanager
    async def environment(self, tmp_path):
        async with sftp_server(tmp_path / "sftp") as server:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv(PASSWORD_ENV, server.password)
                yield server

    def config(self, server):
        return {
            "host": server.host,
            "port": server.port,
            "username": server.username,
            "password_ref": f"env:{PASSWORD_ENV}",
            "host_key": server.host_key,
            "directory": "inbox",
        }

    def lends(self, server):
        return {"webhook_allow": AllowList.parse("127.0.0.1")}

    async def received(self, server):
        import json

        return [
            (json.loads(line)["idempotency_key"], line.encode())
            for path in server.received()
            for line in path.read_text().splitlines()
        ]


async def test_a_host_the_bus_may_not_reach_and_a_borrowed_password_are_refused():
    from samband_sftp_drop import SftpDropSink

    config = SftpDropSink.parse_config(
        {"host": "10.0.0.7", "username": "u", "password_ref": f"env:{PASSWORD_ENV}", "host_key": "ssh-ed25519 AAAA"}
    )
    assert "host" in (SftpDropSink.refusal(config, SUBSCRIBER.id, {}) or "")
    assert "password_ref" in (SftpDropSink.refusal(config, "someone-else", None) or "")
