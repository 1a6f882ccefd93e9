"""DeliveryKindConformance: the tests every delivery kind must pass (connectors.api.Sink).

Subclass it in a test module (class name starting with `Test`) and fill in the hooks:

    kind                 the kind's entry-point name in `samband.delivery_kinds` (the kit finds
                         the class there, so the test also proves the kind is registered)
    invalid_configs      [(raw delivery config, field the error must name)], each invalid
    secret_values        strings from invalid_configs that must never appear in an error
    environment(tmp)     async context manager: start the receiving side (a server, a folder,
                         a topic reader); yields `env`
    config(env)          a valid raw delivery config (what a subscription's `delivery` holds, less
                         `kind`, `retry_schedule` and `paused`)
    lends(env)           what the bus lends the sink (connectors.api.Context.extras) for `env`
    received(env)        what the receiving side holds now: [(idempotency key, raw bytes as the
                         subscriber got them)], one per arrival (a copy counts again)

The kit writes deliveries as the delivery stage hands them over (`delivery_record`): Death
events of synthetic persons for subscriber `SUBSCRIBER`, whose granted fields are `deathDate`.
Receipt is checked after the sink has stopped, so a kind may keep a batch open until then.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import structlog

from connectors.api import (
    ConfigError,
    ConnectorConfig,
    Context,
    DeadLetters,
    Output,
    Sink,
    SinkRecord,
    StateStore,
    Subscriber,
    delivery_kinds,
)

WAIT_S = 30.0
SUBSCRIBER = Subscriber("conformance-kit", {"Death": ("deathDate",)})
# The bus's own pseudonym of a person is for the bus alone: no subscriber may see it (only the
# subscription's own pseudonym, the event's `subject`). The delivery stage hands a sink none of it;
# the kit plants it in the record's key and value anyway, to check a kind sends nothing but the
# event and its idempotency key.
BUS_PSEUDONYM = "b0" * 16


def delivery_record(n: int, subscription: str = SUBSCRIBER.id) -> tuple[SinkRecord, dict]:
    """Delivery `n` as the delivery stage hands it to a sink: the record and its parsed value."""
    event = {
        "specversion": "1.0",
        "id": f"kit-event-{n:05d}",
        "source": "urn:samband:conformance-kit",
        "type": "no.samband.events.Death",
        "time": "2024-03-01T12:00:00.000+00:00",
        "subject": f"{n:032x}",  # the subscription's own pseudonym of the person
        "datacontenttype": "application/json",
        "changekind": "new",
        "data": {"deathDate": "2024-03-01"},
    }
    delivery = {
        "idempotency_key": f"kit-event-{n:05d}.{subscription}",
        "subscription": subscription,
        "person": BUS_PSEUDONYM,
        "event": event,
        "kind": "event",
    }
    key = f"{subscription}/{BUS_PSEUDONYM}".encode()  # a canary: a kind sends the event and its key only
    return SinkRecord(
        key, json.dumps(delivery).encode(), [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    ), delivery


class DeliveryKindConformance:
    kind: ClassVar[str]
    invalid_configs: ClassVar[list[tuple[dict, str]]] = []
    secret_values: ClassVar[tuple[str, ...]] = ()

    # --- hooks ----------------------------------------------------------------------------

    def environment(self, tmp_path) -> Any:
        raise NotImplementedError

    def config(self, env) -> dict:
        raise NotImplementedError

    def lends(self, env) -> dict:
        return {}

    async def received(self, env) -> list[tuple[str, bytes]]:
        raise NotImplementedError

    # --- helpers --------------------------------------------------------------------------

    @property
    def sink_class(self) -> type[Sink]:
        return delivery_kinds()[self.kind]

    def make(self, env) -> Sink:
        """The sink as the delivery stage makes it: one per subscription, with the bus's loans."""
        config = self.sink_class.parse_config(self.config(env))
        log = structlog.get_logger("conformance").bind(subscription=SUBSCRIBER.id)
        context = Context(SUBSCRIBER.id, Output(), DeadLetters(), StateStore(), log, self.lends(env), SUBSCRIBER)
        return self.sink_class(config, context)

    @asynccontextmanager
    async def started(self, env) -> AsyncIterator[Sink]:
        sink = self.make(env)
        await sink.start()
        try:
            yield sink
        finally:
            await sink.stop()

    async def wait_received(self, env, keys: Sequence[str]) -> list[tuple[str, bytes]]:
        """What arrived, once every key in `keys` has (WAIT_S at most)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                got = await self.received(env)
                if set(keys) <= {key for key, _ in got}:
                    return got
                await asyncio.sleep(0.05)  # poll interval inside the deadline

    async def write_all(self, sink: Sink, records: Sequence[SinkRecord]) -> list:
        """In batches of the kind's `max_batch`, `max_concurrency` writes at a time, as delivery does."""
        batches = [records[i : i + sink.max_batch] for i in range(0, len(records), sink.max_batch)]
        gate = asyncio.Semaphore(sink.max_concurrency)

        async def one(batch):
            async with gate:
                return await sink.write(batch)

        return [outcome for outcomes in await asyncio.gather(*(one(b) for b in batches)) for outcome in outcomes]

    # --- the contract ---------------------------------------------------------------------

    def test_is_registered_and_declares_what_delivery_needs(self, tmp_path):
        cls = self.sink_class
        assert issubclass(cls, Sink) and issubclass(cls.Config, ConnectorConfig)
        assert cls.Config.model_config.get("extra") == "forbid", "an unknown key must be an error, not ignored"
        assert isinstance(cls.max_batch, int) and cls.max_batch >= 1

    async def test_endpoint_is_json_and_stable(self, tmp_path):
        async with self.environment(tmp_path) as env:
            config = self.sink_class.parse_config(self.config(env))
            again = self.sink_class.parse_config(self.config(env))
            endpoint = json.dumps(self.sink_class.endpoint(config, SUBSCRIBER.id))
            assert endpoint == json.dumps(self.sink_class.endpoint(again, SUBSCRIBER.id))
            assert self.sink_class.refusal(config, SUBSCRIBER.id, self.lends(env)) is None
            assert self.make(env).max_concurrency >= 1

    def test_config_errors_name_the_field_and_hide_secrets(self):
        for raw, field in self.invalid_configs:
            try:
                self.sink_class.parse_config(raw)
            except ConfigError as exc:
                assert field in str(exc), f"the error should name {field}: {exc}"
                for secret in self.secret_values:
                    assert secret not in str(exc)
            else:
                raise AssertionError(f"config {sorted(raw)} should be invalid")

    async def test_verify_answers_on_a_sink_never_started(self, tmp_path):
        async with self.environment(tmp_path) as env:
            sink = self.make(env)
            try:
                outcome = await sink.verify(SUBSCRIBER.id)
            finally:
                await sink.stop()  # also on a sink that was never started
            assert outcome.status == "delivered", outcome

    async def test_delivers_every_record_with_its_idempotency_key_and_nothing_the_bus_keeps(self, tmp_path):
        async with self.environment(tmp_path) as env:
            pairs = [delivery_record(n) for n in range(25)]
            async with self.started(env) as sink:
                outcomes = await self.write_all(sink, [record for record, _ in pairs])
                lone, parsed = delivery_record(25)
                one = await sink.write_delivery(parsed, lone.headers)  # a head that goes alone
            assert [o.status for o in outcomes] == ["delivered"] * 25 and one.status == "delivered"
            keys = [delivery["idempotency_key"] for _, delivery in pairs] + [delivery_record(25)[1]["idempotency_key"]]
            got = await self.wait_received(env, keys)
            for _, raw in got:
                assert BUS_PSEUDONYM.encode() not in raw, "the bus's pseudonym of the person reached the subscriber"

    async def test_one_outcome_per_record_in_order_and_a_malformed_one_is_rejected(self, tmp_path):
        async with self.environment(tmp_path) as env:
            good, _ = delivery_record(1)
            malformed = SinkRecord(b"x", b"not a delivery 12345678901")
            other, _ = delivery_record(2)
            async with self.started(env) as sink:
                if sink.max_batch >= 3:
                    outcomes = await sink.write([good, malformed, other])
                else:  # one at a time, as delivery would hand them over
                    outcomes = [(await sink.write([record]))[0] for record in (good, malformed, other)]
            assert [o.status for o in outcomes] == ["delivered", "rejected", "delivered"], outcomes
            assert outcomes[1].reason and "12345678901" not in outcomes[1].message

    async def test_a_record_written_again_after_a_crash_still_arrives_with_the_same_key(self, tmp_path):
        async with self.environment(tmp_path) as env:
            record, delivery = delivery_record(7)
            async with self.started(env) as sink:
                assert (await sink.write([record]))[0].status == "delivered"
            async with self.started(env) as again:  # a new sink, as after a restart of the worker
                assert (await again.write([record]))[0].status == "delivered"
            got = await self.wait_received(env, [delivery["idempotency_key"]])
            assert {key for key, _ in got} == {delivery["idempotency_key"]}
