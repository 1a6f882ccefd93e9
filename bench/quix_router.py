"""The Quix Streams contender of bench_routing.py: the router's job as a user would build it on Quix
Streams (librdkafka, RocksDB state), run by bench_routing.py in a virtualenv of its own (Quix
Streams pins an older confluent-kafka than the bus's).

    quix-venv/bin/python bench/quix_router.py BOOTSTRAP SOURCE SINK SUBSCRIPTIONS_JSON STATE_DIR

The same work per event as the router's: decode the canonical event (the bus's codec), read the
person's state (Quix's state is per message key, the person's pseudonym), route it with the bus's
`Router` under 18,000 subscriptions, write each delivery to SINK, and keep the person's new state
and the event's routing record (who got it) in the state. At-least-once, as the bus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from quixstreams import Application
from quixstreams.models.serializers import Serializer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.routing.index import RoutingIndex  # noqa: E402
from agents.routing.router import PersonState, Router  # noqa: E402
from agents.subscriptions.model import Subscription  # noqa: E402
from schemas.catalog import catalog  # noqa: E402
from schemas.codec import Codec  # noqa: E402
from schemas.registry import CatalogRegistry  # noqa: E402


class SecondOfPair(Serializer):
    """A (key, value) pair's value, as bytes: the key goes to `to_topic(key=...)`."""

    def __call__(self, value, ctx):
        return value[1]


def main(bootstrap: str, source: str, sink: str, subscriptions_file: str, state_dir: str) -> None:
    index = RoutingIndex()
    for raw in json.loads(Path(subscriptions_file).read_text()):  # each one's own JSON
        index.put(Subscription.from_json(raw))
    router, codec = Router(index), Codec(CatalogRegistry(catalog()))

    def route(value: bytes, key: bytes, _timestamp: int, _headers, state) -> list[tuple[bytes, bytes]]:
        record = codec.decode(value)
        envelope = record["envelope"]
        stored = state.get("person")
        person_state = PersonState() if stored is None else PersonState.from_json(stored)
        result = router.route(envelope["type"].rpartition(".")[2], record, key.decode(), person_state, None)
        if result.state is not person_state:
            state.set("person", result.state.to_json().decode())  # Quix's state stores JSON values
        state.set("routed:" + envelope["id"], list(result.recipients))
        return [(d.key, d.value) for d in result.deliveries]

    app = Application(
        broker_address=bootstrap,
        consumer_group=f"{source}-quix",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        processing_guarantee="at-least-once",
        loglevel="WARNING",
    )
    events = app.topic(source, key_deserializer="bytes", value_deserializer="bytes")
    deliveries = app.topic(sink, key_serializer="bytes", value_serializer=SecondOfPair())
    frame = app.dataframe(events)
    frame = frame.apply(route, stateful=True, expand=True, metadata=True)
    frame.to_topic(deliveries, key=lambda pair: pair[0])
    app.run()


if __name__ == "__main__":
    main(*sys.argv[1:6])
