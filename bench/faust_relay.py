"""The naive Faust baseline of bench_routing.py: a stream agent relaying each message from
`<app id>-example-in` to `<app id>-example-out`, one `await topic.send()` per event.

What the stages would cost on Faust streams; the bus itself runs no stream agent (docs/architecture.md).
"""

from __future__ import annotations

import structlog
from faust.worker import Worker

from agents.app import create_app
from agents.config import get_settings

app = create_app(get_settings())

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


if __name__ == "__main__":
    Worker(app, loglevel="warning", redirect_stdouts=False).execute_from_commandline()
