"""File exchange for legacy systems: an inbound drop folder (CSV / JSON lines) and outbound batch files."""
