"""Ingest, routing and address protection: pure logic here, thin Faust agents beside it."""
