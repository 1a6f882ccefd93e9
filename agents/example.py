"""The example agent: relays each message from `<app id>-example-in` to `<app id>-example-out`.

It stands in for the real pipeline until the routing agents exist, and shows the shape of one.
"""

from __future__ import annotations

import structlog

from agents.app import app

log = structlog.get_logger(__name__)

example_in = app.topic(
    f"{app.conf.id}-example-in", key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw"
)
example_out = app.topic(
    f"{app.conf.id}-example-out", key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw"
)


@app.agent(example_in)
async def relay(stream):
    async for event in stream.events():
        await example_out.send(key=event.key, value=event.value)
        log.debug("relayed", topic=event.message.topic, partition=event.message.partition, offset=event.message.offset)
        yield event.message.offset
