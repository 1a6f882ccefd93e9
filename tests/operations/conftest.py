"""The operations tests' bus: one whole worker per test module (tests/operations/ops_bus.py)."""

from __future__ import annotations

from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from ops_bus import operations_bus
from support import free_port


@pytest.fixture(scope="module")
async def ops_bus(kafka_bootstrap, tmp_path_factory):
    async with operations_bus(kafka_bootstrap, tmp_path_factory.mktemp("ops-bus")) as bus:
        yield bus


class MailBox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_server():
    mailbox = MailBox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()
