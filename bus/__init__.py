"""The bus's Kafka runtime: the one room for everything that talks to Kafka.

- `clients`: every consumer, producer and admin client, with the connection settings in one place;
- `topics`: the table of every topic the bus owns, their names, and `ensure_topics`;
- `reading`: read a topic up to its current end;
- `batches`: the batch service every stage runs on (consume, handle, write, commit), with
  `record_batches` (the producer's record batches) and `state` (changelog state per partition);
- `assignor`: the co-partitioned assignor that gives a worker the same partitions in every stage;
- `inspector`: topics, offsets and consumer-group lag, for the CLI and the worker's health;
- `malformed`: a malformed record on an internal topic is skipped and counted, never a crash.

It depends on `schemas` at most, never on `connectors` or `agents` (docs/architecture.md).
"""
