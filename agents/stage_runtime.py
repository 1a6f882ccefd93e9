"""What the stages of one worker share: the settings they run on, the bus's topic names, the one
subscriptions follower, and how their batch consumers are set up.

    runtime = StageRuntime.of(settings)
    ingest.build(settings, runtime), routing.build(settings, runtime), delivery.build(settings, runtime)

Nothing here is a module global: two runtimes in one process are two independent pipelines
(tests/routing/test_two_pipelines.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mode import Service

from agents import metrics
from agents.config import Settings, bootstrap_servers
from agents.subscriptions.store import SubscriptionFollower
from bus.batches import BatchService
from bus.topics import DELIVERIES, EVENTS, INGEST, Topic, TopicNames, layout, topic_names

# stage -> the suffix of its consumer group (`<app id>-router`) and the topic that group reads: for
# the stages themselves and for what reports on them (`samband lag` and `status`, the dashboard).
STAGES: dict[str, tuple[str, Topic]] = {
    "ingest": ("ingest", INGEST),
    "route": ("router", EVENTS),
    "deliver": ("delivery", DELIVERIES),
}


def stage_group(app_id: str, stage: str) -> str:
    return f"{app_id}-{STAGES[stage][0]}"


def stage_input(group: str) -> str | None:
    """The topic a stage's group reads (`<app id>-router`: `<app id>-events`); None for another group."""
    for suffix, topic in STAGES.values():
        if group.endswith(f"-{suffix}"):
            return topic.name(group.removesuffix(f"-{suffix}"))
    return None


@dataclass
class StageRuntime:
    settings: Settings
    bootstrap: str
    topics: TopicNames
    subscriptions: SubscriptionFollower  # one per worker: the router, delivery and the HTTP API listen to it
    stages: list[BatchService] = field(default_factory=list)  # the worker's stages, for /readyz and the lag gauge

    @classmethod
    def of(cls, settings: Settings) -> StageRuntime:
        bootstrap = bootstrap_servers(settings)
        topics = topic_names(settings.app_id)
        return cls(settings, bootstrap, topics, SubscriptionFollower(bootstrap, topics.subscriptions))

    def configs(self, *topics: Topic) -> dict[str, dict[str, str]]:
        """The configs of these table topics, by their name in this app (for a stage's source and outputs)."""
        return {topic.name(self.settings.app_id): topic.configs(self._retention_ms(topic)) for topic in topics}

    def _retention_ms(self, topic: Topic) -> int | None:
        """The retention of a topic whose retention is a setting (made by more than one stage)."""
        return int(self.settings.events_retention_days * 86_400_000) if topic is EVENTS else None

    def batch_settings(self) -> dict[str, Any]:
        """What every stage's batch consumer (bus/batches.py) takes from the settings."""
        return {
            "bootstrap": self.bootstrap,
            "partitions": layout().partitions,
            "batch_size": self.settings.batch_size,
            "within": self.settings.batch_within_seconds,
            "session_timeout": self.settings.broker_session_timeout,
            "request_timeout": self.settings.broker_request_timeout,
            "member_name": self.settings.worker_name or None,
            "metrics": metrics,
        }


class FollowSubscriptions(Service):
    """Runs the worker's subscriptions follower; started before the stages, stopped after them."""

    def __init__(self, follower: SubscriptionFollower, **kwargs: Any):
        super().__init__(**kwargs)
        self.follower = follower

    @Service.task
    async def _follow(self) -> None:
        await self.follower.run()
