"""Samband's event catalog: Avro schemas, codec and domain validation.

This package has no Kafka code; connectors and agents build on it.
"""
