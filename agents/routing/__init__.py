"""The router stage: `samband-events` in, one `samband-deliveries` record per entitled subscription out.

`build(settings, runtime)` makes the stage's service (stage.py); router.py is the pure routing
logic (subscriptions, predicates, projection, protection), index.py its subscription index.
"""

from agents.routing.stage import build

__all__ = ["build"]
