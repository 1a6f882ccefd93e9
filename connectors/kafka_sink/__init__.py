"""Kafka sink: projected events as Confluent wire-format Avro on a subscriber's own topic (docs/delivery.md)."""
