"""Webhook sink: signed CloudEvents over HTTP POST (see docs/delivery.md)."""
