"""The Faust app that hosts a worker (docs/architecture.md, "Faust's role"), configured from Settings."""

from __future__ import annotations

import gc
from pathlib import Path

import faust
import structlog

from agents.config import Settings, bootstrap_servers
from bus.batches import leave_on_stop, process_member_name
from bus.clients import Security
from bus.topics import TABLE, check_table_topics, ensure_topics, layout


def create_app(settings: Settings) -> faust.App:
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in bootstrap_servers(settings).split(",")],
        store="memory://",
        datadir=settings.data_dir,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # Faust listens on 0.0.0.0 unless told; web_host only names it
        web_port=settings.web_port,
        # Faust's own /router/ and /table/ pages would show table keys and partitions to anyone.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_in_thread=False,
        autodiscover=False,
        topic_partitions=layout().partitions,
        # The worker's own logging is configured by agents.logging; Faust must not redirect stdout.
        worker_redirect_stdouts=False,
        # How long the group waits for a worker that stopped answering (killed, partitioned)
        # before its partitions move to another worker.
        broker_session_timeout=settings.broker_session_timeout,
        # A named worker comes back as the same member of Faust's group too (bus/batches.py): else
        # its restart waits there for its dead member's session to time out before the stages start.
        consumer_group_instance_id=process_member_name(settings.worker_name) if settings.worker_name else None,
        broker_credentials=_credentials(Security.from_env()),
    )


def leave_faust_group_on_stop(app: faust.App) -> None:
    """A named worker's Faust consumer leaves its group when the worker stops, as the stages' do
    (bus/batches.py `leave_on_stop`): the alert watch's leadership moves at once."""
    if not app.conf.consumer_group_instance_id:
        return
    consumer = getattr(getattr(app.consumer, "_thread", None), "_consumer", None)
    if consumer is None:  # (a Faust whose consumer is built otherwise: its group waits for the session)
        structlog.get_logger(__name__).warning("worker.cannot_leave_faust_group_on_stop")
        return
    leave_on_stop(consumer)


def _credentials(security: Security) -> faust.types.auth.CredentialsT | None:
    """The cluster's security (bus/clients.py) for Faust's own clients; None for PLAINTEXT."""
    if security.sasl:
        return faust.SASLCredentials(
            username=security.username,
            password=security.password(),
            mechanism=security.mechanism,
            ssl_context=security.ssl_context(),
        )
    if security.tls:
        return faust.SSLCredentials(security.ssl_context())
    return None


def leader_topic(app_id: str) -> str:
    """The topic Faust elects the leader worker on (the alert watch runs there)."""
    return f"{app_id}-__assignor-__leader"


async def prepare_topics(bootstrap: str, app_id: str) -> None:
    """Before a worker starts: check the bus topics that exist, and make Faust's leader topic with
    the bus's replication (Faust would make it with one replica)."""
    await check_table_topics(bootstrap, app_id, list(TABLE))
    await ensure_topics(bootstrap, {leader_topic(app_id): {}}, 1, check=True)


# A young collection once 50,000 more tracked objects (containers) were made than freed, not
# Python's 700. At 700 the objects of a delivery, alive for the milliseconds of its request,
# outlived two young collections and went to the old generation, and the full collections that
# brought on took 42 % of a worker process's CPU on a reform day; at 50,000, 2 % (bench_national
# --scale 0.1, 2026-12-07, sampled with py-spy --native; docs/national-scale.md).
YOUNG_COLLECTION_THRESHOLD = 50_000


def prepare_collector() -> None:
    """Everything alive now (start-up's modules and app, a loaded subscription index) lives as
    long as the process: frozen, it is no longer walked by every full collection, which otherwise
    paused the loop 50-90 ms (the delivery p99). Called once a service has loaded what it keeps.
    From then on, young collections are rarer (YOUNG_COLLECTION_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
