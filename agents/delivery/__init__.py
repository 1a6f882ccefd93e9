"""The delivery stage: from `samband-deliveries` to each subscriber, with retries, order and
isolation (docs/delivery.md).

`build(settings, runtime)` makes the stage's service (stage.py).
"""

from agents.delivery.stage import build

__all__ = ["build"]
