"""Where the bus may send (issue 13, findings 6 and 9): https to public addresses, or what the operator
allow-lists; an endpoint is verified only by echoing the handshake's challenge; a subscription's
retry schedule and timeouts have bounds."""

from __future__ import annotations

import asyncio
import time

import pytest
from delivery_bus import running_bus
from pydantic import ValidationError
from webhook_receiver import Receiver

from agents.subscriptions.model import Subscription

BASE = {
    "id": "bergen-skole",
    "system": {"name": "S", "owner": "O", "contact": "c@x.example"},
    "legal_basis": "§ 1",
    "public_body": True,
    "kommuner": ["4601"],
    "event_types": ["Death"],
    "fields": {"Death": ["deathDate"]},
}
HOOK = {"kind": "webhook", "secret_ref": "file:bergen-skole"}


async def _ready(bus, timeout: float = 90.0) -> None:
    """The worker has started all its stages (stopping one still starting can hang its shutdown)."""
    import aiohttp

    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{bus.registry_url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert asyncio.get_running_loop().time() < deadline, bus.worker.log_tail()
            await asyncio.sleep(0.2)  # poll interval inside the deadline


async def _logged(bus, text: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while text not in bus.worker.log_path.read_text():
        assert asyncio.get_running_loop().time() < deadline, f"{text!r} not logged:\n{bus.worker.log_tail()}"
        assert bus.worker.process.poll() is None, bus.worker.log_tail()
        await asyncio.sleep(0.1)  # poll interval inside the deadline


async def test_a_webhook_on_loopback_is_never_called_without_the_allow_list(kafka_bootstrap, tmp_path):
    async with running_bus(kafka_bootstrap, tmp_path, SAMBAND_WEBHOOK_ALLOW_NETWORKS="") as bus:
        await _ready(bus)
        receiver = Receiver(bus.secret)
        await receiver.start()
        port = receiver.url.split(":")[2].split("/")[0]
        try:
            # Written around the API: a literal address that is not public is refused when the
            # worker reads the subscription; a name is resolved when connecting, then refused.
            await bus.subscribe("ssrf-literal", f"https://127.0.0.1:{port}/hook", retry_schedule=[1])
            await bus.subscribe("ssrf-metadata", "https://169.254.169.254/latest/meta-data", retry_schedule=[1])
            await bus.subscribe("ssrf-name", f"https://localhost:{port}/hook", retry_schedule=[1])
            for sub in ("ssrf-literal", "ssrf-metadata"):
                await _logged(bus, f'"subscription": "{sub}", "offset": ')  # subscription_invalid_on_topic
            await _logged(bus, '"subscription": "ssrf-name", "reason": "delivery.address_refused"')
        finally:
            await receiver.stop()
    assert receiver.received == []  # not even the handshake reached it


async def test_an_endpoint_that_answers_2xx_without_echoing_the_challenge_is_not_verified(kafka_bootstrap, tmp_path):
    async with running_bus(kafka_bootstrap, tmp_path) as bus:
        await _ready(bus)
        careless = Receiver(bus.secret)
        careless.echo_challenge = False  # answers 200 to anything, as a server the tenant does not run might
        await careless.start()
        try:
            await bus.subscribe("careless", careless.url, retry_schedule=[1])
            await _logged(bus, '"subscription": "careless", "reason": "delivery.challenge_not_echoed"')
            assert careless.delivered  # it did answer 2xx: that alone no longer verifies it
        finally:
            await careless.stop()


@pytest.mark.parametrize(
    ("delivery", "field"),
    [
        ({"url": "http://skole.example/hook"}, "plain http"),
        ({"url": "https://10.1.2.3/hook"}, "not public"),
        ({"url": "https://169.254.169.254/hook"}, "not public"),
        ({"url": "https://[::1]/hook"}, "not public"),
        # IPv4 carried in IPv6 (hostile review): NAT64 to the metadata address, IPv4-compatible, 6to4 loopback
        ({"url": "https://[64:ff9b::a9fe:a9fe]/hook"}, "not public"),
        ({"url": "https://[::7f00:1]/hook"}, "not public"),
        ({"url": "https://[2002:7f00:1::]/hook"}, "not public"),
        ({"url": "https://[::ffff:127.0.0.1%25]/hook"}, "zone"),
        ({"url": "https://skole.example/hook", "retry_schedule": [0]}, "retry_schedule"),
        ({"url": "https://skole.example/hook", "retry_schedule": [float("nan")]}, "retry_schedule"),
        ({"url": "https://skole.example/hook", "retry_schedule": [1] * 21}, "retry_schedule"),
        ({"url": "https://skole.example/hook", "read_timeout": 120}, "read_timeout"),
        ({"url": "https://skole.example/hook", "connect_timeout": 61}, "connect_timeout"),
    ],
)
def test_a_subscription_asking_for_an_internal_address_or_unbounded_retries_is_refused(monkeypatch, delivery, field):
    from agents.config import get_settings

    monkeypatch.setenv("SAMBAND_WEBHOOK_ALLOW_NETWORKS", "")
    get_settings.cache_clear()
    try:
        with pytest.raises(ValidationError, match=field):
            Subscription.model_validate({**BASE, "delivery": {**HOOK, **delivery}})
        Subscription.model_validate(
            {**BASE, "delivery": {**HOOK, "url": "https://skole.example/hook", "retry_schedule": [1] * 20}}
        )
    finally:
        get_settings.cache_clear()


def test_a_retry_sooner_than_the_least_wait_is_refused_and_the_least_wait_is_a_setting(monkeypatch):
    from agents.config import get_settings

    delivery = {**HOOK, "url": "https://skole.example/hook", "retry_schedule": [0.5, 30]}
    monkeypatch.delenv("SAMBAND_RETRY_MIN_SECONDS", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(ValidationError, match=r"each wait must be at least 1 s \(SAMBAND_RETRY_MIN_SECONDS\)"):
            Subscription.model_validate({**BASE, "delivery": delivery})
        monkeypatch.setenv("SAMBAND_RETRY_MIN_SECONDS", "0.5")
        get_settings.cache_clear()
        assert Subscription.model_validate({**BASE, "delivery": delivery}).delivery.retry_schedule == [0.5, 30]
    finally:
        get_settings.cache_clear()


async def test_an_answer_is_read_up_to_64_kib_not_to_its_end(monkeypatch):
    """Finding 9: a subscriber that streams an endless answer once held the attempt until its timeout."""
    from aiohttp import web

    from connectors.webhook.config import WebhookConfig
    from connectors.webhook.network import AllowList
    from connectors.webhook.secrets import new_secret
    from connectors.webhook.sender import WebhookSender

    release = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        await response.write(b"x" * 100 * 1024)  # more than is read, and the rest never comes
        await release.wait()
        return response

    app = web.Application()
    app.router.add_post("/hook", endless)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    monkeypatch.setenv("SAMBAND_WEBHOOK_SECRET_ENDLESS", new_secret())
    sender = WebhookSender(
        WebhookConfig(
            url=f"http://127.0.0.1:{port}/hook", secret_ref="env:SAMBAND_WEBHOOK_SECRET_ENDLESS", read_timeout=5.0
        ),
        AllowList.parse("127.0.0.0/8"),
    )
    try:
        started = asyncio.get_running_loop().time()
        outcome = await sender.send(
            {
                "specversion": "1.0",
                "id": "e1",
                "source": "s",
                "type": "t",
                "datacontenttype": "application/json",
                "data": {},
            },
            "e1.endless",
        )
        assert outcome.status == "delivered"
        assert asyncio.get_running_loop().time() - started < 5.0  # not held until the read timeout
    finally:
        release.set()
        await sender.close()
        await runner.cleanup()


async def test_a_deleted_subscription_is_not_called_again_a_second_after_the_delete(kafka_bootstrap, tmp_path):
    """Neither its handshake nor a delivery being retried goes on after the DELETE answered."""
    import aiohttp
    from delivery_fixtures import delivery
    from webhook_receiver import VALIDATION_TYPE, Reply

    token = "outbound-operator-token"
    async with running_bus(
        kafka_bootstrap,
        tmp_path,
        SAMBAND_API_TOKENS=f"{token}=subscriptions:read+subscriptions:write+subscriptions:operator",
    ) as bus:
        await _ready(bus)
        # One refuses the handshake, one every event: the bus keeps trying both at their schedule (1 s).
        receivers = {
            "stubborn": Receiver(
                bus.secret, lambda _n, event: Reply(503) if event["type"] == VALIDATION_TYPE else Reply()
            ),
            "failing": Receiver(
                bus.secret, lambda _n, event: Reply() if event["type"] == VALIDATION_TYPE else Reply(503)
            ),
        }
        auth = {"Authorization": f"Bearer {token}"}
        try:
            async with aiohttp.ClientSession(base_url=bus.registry_url, headers=auth) as http:
                for sub_id, receiver in receivers.items():
                    await receiver.start()
                    (bus.secrets_dir / sub_id).write_text(bus.secret)
                    hook = {**HOOK, "secret_ref": f"file:{sub_id}", "url": receiver.url, "retry_schedule": [1] * 20}
                    async with http.post("/subscriptions", json={**BASE, "id": sub_id, "delivery": hook}) as response:
                        assert response.status == 201, await response.text()
                await bus.wait_for(receivers["failing"], receivers["failing"].verified, 60, "verified")
                await bus.send([delivery("failing", "a" * 32, "retried-event")])
                for sub_id, receiver in receivers.items():
                    await bus.wait_for(receiver, lambda r=receiver: len(r.received) >= 3, 60, f"{sub_id} tried again")
                deleted_at = {}
                for sub_id in receivers:
                    async with http.delete(f"/subscriptions/{sub_id}") as response:
                        assert response.status == 204, await response.text()
                    deleted_at[sub_id] = time.time()
            for sub_id, receiver in receivers.items():
                late = lambda r=receiver, at=deleted_at[sub_id]: any(x.at > at + 1.0 for x in r.received)  # noqa: E731
                with pytest.raises(AssertionError, match="not called after the delete"):
                    # Three of its 1 s steps: a handshake or retry still running would call within them.
                    await receiver.wait_for(late, 3.0, "called after the delete")
        finally:
            for receiver in receivers.values():
                await receiver.stop()
