"""The connector conformance kit: every connector, built-in or third-party, must pass it.

In your connector's tests::

    # conftest.py (the top-level one)
    pytest_plugins = ["connectors.testing.plugin"]

    # test_conformance.py
    from connectors.testing import SourceConformance

    class TestMySourceConformance(SourceConformance):
        connector = MySource
        ...  # the hooks SourceConformance documents

The kit needs a real Kafka broker: KAFKA_BOOTSTRAP_SERVERS / SAMBAND_KAFKA_BOOTSTRAP_SERVERS,
else the `kafka_bootstrap` fixture when the project defines one, else the local broker.
"""

from connectors.testing.source_kit import SourceConformance

__all__ = ["SourceConformance"]
