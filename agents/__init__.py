"""The Faust application of Samband: stream processors, tables, the `samband` CLI and web endpoints."""
