"""Delivery: from `samband-deliveries` to each subscriber, with retries, order, isolation (docs/delivery.md)."""
