"""The conformance kit: every connector and delivery kind, built-in or third-party, must pass it.

A source, in your connector's tests::

    # conftest.py (the top-level one)
    pytest_plugins = ["connectors.testing.plugin"]

    # test_conformance.py
    from connectors.testing import SourceConformance

    class TestMySourceConformance(SourceConformance):
        connector = MySource
        ...  # the hooks SourceConformance documents

The source kit needs a real Kafka broker: KAFKA_BOOTSTRAP_SERVERS / SAMBAND_KAFKA_BOOTSTRAP_SERVERS,
else the `kafka_bootstrap` fixture when the project defines one, else the local broker.

A delivery kind: `class TestMyKind(DeliveryKindConformance)` with `kind = "<entry-point name>"`
and the hooks `DeliveryKindConformance` documents (connectors/testing/sink_kit.py). It needs no
broker, only the kind's receiving side (a server, a folder).
"""

from connectors.testing.sink_kit import DeliveryKindConformance
from connectors.testing.source_kit import SourceConformance

__all__ = ["DeliveryKindConformance", "SourceConformance"]
