"""HTTP ingest: municipal systems POST CloudEvents to `/events` (see docs/connectors.md)."""
