"""One demo run: set up, let a compressed year flow through the bus, show it live, check, stop everything.

Order: broker (reused if running) -> receivers -> subscriptions (`<run>-subscriptions`) ->
worker -> bus topics exist -> feed source connector -> the year is published to the feed
simulator over the first half of `duration` -> live view until `duration` (or Ctrl-C) ->
stop the source and the worker -> read the bus's topics to their end -> checks -> summary.
Every run has its own app id, so an earlier run's topics and groups never interfere; its
topics are deleted at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import yaml
from rich.console import Console
from rich.live import Live

from agents.demo import systems
from agents.demo.extract import encoded, population_records
from agents.demo.feed import TOKEN, DemoFeed
from agents.demo.monitor import BusMonitor, bus_topic_names, wait_for_topics
from agents.demo.processes import Broker, Children
from agents.demo.receivers import FolderReceiver, PullReceiver, TopicReceiver, WebhookReceiver
from agents.demo.report import Report
from agents.demo.view import RateMeter, live_view
from agents.logging import configure_logging
from agents.subscriptions import store
from bus import clients
from bus.topics import (
    DEADLETTER,
    DELIVERIES,
    EVENTS,
    INGEST,
    ensure_table_topics,
    ensure_topics,
    layout,
    topic_names,
)
from connectors.webhook.secrets import new_secret
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.ingest_key import IngestKey
from schemas.registry import CatalogRegistry
from synthetic.folkeregister_simulator import run_simulator

PROTECTION_SCALE = 20.0  # more protected persons than in reality, so the demo has some to protect


@dataclass(frozen=True)
class Options:
    duration: float = 60.0
    population: int = 50_000
    seed: int = 0
    keep_running: bool = False
    dashboard_pictures: Path | None = None  # take the dashboard's pictures into this folder at the end


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DemoRun:
    def __init__(self, options: Options, broker: Broker, console: Console):
        self.options = options
        self.broker = broker
        self.console = console
        self.app_id = f"samband-demo-{uuid.uuid4().hex[:8]}"
        self.run_dir = Path(".samband") / "demo" / self.app_id
        self.outbound = (self.run_dir / "outbound").resolve()
        self.subscriptions = systems.load_subscriptions()
        self.outage_seconds = max(5.0, min(15.0, options.duration / 4))
        self.secrets = {s.id: new_secret() for s in self.subscriptions if s.delivery.kind == "webhook"}
        self.receivers: dict[str, WebhookReceiver | TopicReceiver | FolderReceiver | PullReceiver] = {}
        # Each pulling system's token: its tenant owns its subscription only (a tokens file of the run).
        self.pull_tokens = {s.id: secrets.token_urlsafe(24) for s in self.subscriptions if s.delivery.kind == "pull"}
        self.pseudonym_key = secrets.token_hex(32)  # this run's, also for the access report at the end
        # The windowed system's window opens this far into the run, while the year is still flowing.
        # (a whole second: a window's times are wall-clock times to the second)
        self.window_opens = datetime.now(UTC).replace(microsecond=0) + timedelta(
            seconds=round(max(10.0, options.duration * 0.4))
        )
        self.stop_requested = asyncio.Event()
        self.web_port = _free_port()
        self.dashboard_token = secrets.token_urlsafe(24)  # this run's only: the dashboard's operator token
        self.pictures_problem: str | None = None

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "SAMBAND_APP_ID": self.app_id,
            "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "SAMBAND_DATA_DIR": str(self.run_dir / "worker-data"),
            "SAMBAND_WEB_PORT": str(self.web_port),
            # One worker process: the dashboard and the report then see all of its latency and attempts.
            "SAMBAND_WORKER_PROCESSES": "1",
            "SAMBAND_API_TOKENS": f"{self.dashboard_token}=operations:read+dlq:replay",
            "SAMBAND_DASHBOARD_SAMPLE_S": "2",  # a minute's run makes a chart of 30 points
            "SAMBAND_PSEUDONYM_KEY": self.pseudonym_key,
            "SAMBAND_API_TOKENS_FILE": str((self.run_dir / "tokens.yaml").resolve()),
            "SAMBAND_LOG_FORMAT": "json",
            "SAMBAND_DLQ_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),  # keys of this run only
            "SAMBAND_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",  # the demo's receivers listen on loopback, over http
            "SAMBAND_SUBSCRIBER_TOPIC_PREFIX": systems.subscriber_topic_prefix(self.app_id),
            "SAMBAND_FILES_OUTBOUND_DIR": str(self.outbound),  # batch files for systems that read files
            # The demo's register year is 2024; the life-stage clock stands on the first day of the
            # next kindergarten and school year, so the year's children reach their stages in the run.
            "SAMBAND_LIFE_STAGES_SIMULATED_START": systems.LIFE_STAGE_DAY,
        }
        env.update({systems.secret_env(s): self.secrets[s.id] for s in self.subscriptions if s.id in self.secrets})
        return env

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop_requested.set)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_tokens()
        say = self.console.print
        say(
            f"[bold]kafka[/]    {self.broker.bootstrap} ({'started for this run' if self.broker.started_here else 'already running, reused'})"
        )
        feed = await asyncio.to_thread(DemoFeed, self.options.population, self.options.seed, PROTECTION_SCALE)
        protected = feed.protected_events()
        say(
            f"[bold]people[/]   {self.options.population:,} synthetic persons (seed {self.options.seed}); one year = "
            f"{len(feed.documents):,} events, {protected['fortrolig']:,} of fortrolig and "
            f"{protected['strengtFortrolig'] + protected['strengtFortroligUtland']:,} of strengt fortrolig persons"
        )
        self.env = self._env()
        children = Children(self.run_dir, self.env)
        monitor = BusMonitor(self.broker.bootstrap, self.app_id)
        try:
            await self._start_receivers()
            await self._apply_subscriptions()
            await self._create_bus_topics()
            async with run_simulator([], token=TOKEN) as simulator:
                worker = children.start("worker", "worker")
                say(f"[bold]bus[/]      worker pid {worker.process.pid}, app id {self.app_id}, logs in {self.run_dir}")
                say(
                    f"[bold]dashboard[/] http://127.0.0.1:{self.web_port}/dashboard "
                    f"(token for this run: {self.dashboard_token})"
                )
                own = [systems.kafka_topic(s, self.app_id) for s in self.subscriptions if s.delivery.kind == "kafka"]
                await wait_for_topics(
                    self.broker.bootstrap,
                    [*bus_topic_names(self.app_id).values(), *own],
                    180,
                    lambda: not children.dead(),
                )
                loaded = await self._load_extract(feed)
                say(
                    f"[bold]extract[/]  {loaded:,} children born in {systems.SCHOOL_COHORT} loaded from a register "
                    "extract (PopulationRecord): the bus learns their birth dates, for their school start"
                )
                config = self.run_dir / "feed.yaml"
                config.write_text(
                    yaml.safe_dump({"base_url": simulator.base_url, "token": TOKEN, "poll_interval_s": 0.5})
                )
                source = children.start(
                    "feed source",
                    "connectors",
                    "run",
                    "folkeregister",
                    "--config",
                    str(config),
                    "--instance",
                    "folkeregister-demo",
                )
                say(
                    f"[bold]source[/]   Folkeregister feed source pid {source.process.pid} reading {simulator.base_url}"
                )
                await monitor.start()
                for receiver in self.receivers.values():
                    if isinstance(receiver, TopicReceiver | FolderReceiver | PullReceiver):
                        await receiver.start()
                pacer = asyncio.create_task(feed.publish(simulator, self.options.duration / 2))
                try:
                    failed = await self._watch(feed, monitor, children)
                    if self.options.dashboard_pictures is not None and failed is None:
                        await self._take_pictures(self.options.dashboard_pictures)
                finally:
                    pacer.cancel()
                    await asyncio.gather(pacer, return_exceptions=True)
                    for receiver in self.receivers.values():
                        if isinstance(receiver, PullReceiver):
                            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                                await receiver.drain()  # what is waiting for it, while the worker still runs
                    self.console.print(
                        "stopping the feed source and the worker, then checking what each system got ..."
                    )
                    await asyncio.to_thread(children.stop_all)
                    for receiver in self.receivers.values():
                        if isinstance(receiver, FolderReceiver):
                            receiver.take_new()  # the batch the worker finished as it stopped
            report = Report(
                self.subscriptions,
                self.receivers,
                monitor,
                feed,
                self.outage_seconds,
                self.broker.bootstrap,
                self.app_id,
                self.run_dir,
                {systems.WINDOWED: self.window_opens},
            )
            await report.gather()
            code = report.print(self.console, failed)
            code = await self._access_report() or code
            return code or (1 if self.pictures_problem else 0)
        finally:
            children.stop_all()
            await monitor.stop()
            for receiver in self.receivers.values():
                await receiver.stop()
            await self._delete_topics()

    async def _load_extract(self, feed: DemoFeed) -> int:
        """The children who start school in the run's life-stage year, from a register extract, into ingest."""
        records = population_records(feed.simulation, systems.SCHOOL_COHORT)
        keyed = encoded(records, Codec(CatalogRegistry(catalog())), IngestKey(self.pseudonym_key.encode()))
        producer = clients.durable_producer(self.broker.bootstrap)
        await producer.start()
        try:
            topic = topic_names(self.app_id).ingest
            await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in keyed])
        finally:
            await producer.stop()
        return len(records)

    def _write_tokens(self) -> None:
        """The tokens file of the run: each pulling system reads its own subscription, nothing else."""
        tokens = {
            sub_id: {
                "token": token,
                "owner": next(s.system.owner for s in self.subscriptions if s.id == sub_id),
                "subscriptions": {"ids": [sub_id]},
                "scopes": ["subscriptions:read"],
            }
            for sub_id, token in self.pull_tokens.items()
        }
        path = self.run_dir / "tokens.yaml"
        path.write_text(yaml.safe_dump(tokens), "utf-8")
        path.chmod(0o600)

    async def _access_report(self) -> int:
        """A child's access report (GDPR article 15), as `samband person report` makes it, from the run's
        topics: which systems got which events about the child. The terminal shows counts and system
        names; the page for the child is written to the run's folder."""
        stage = next(
            (e for e in self.receivers["oslo-barnehage"].recording.events if e.event_type == "KindergartenRight"), None
        )
        number = (stage.data.get("envelope") or {}).get("person") if stage else None
        if not number:
            self.console.print("[bold yellow]Access report: no child with a KindergartenRight to report on.[/]")
            return 1
        page = self.run_dir / "person-report.html"
        command = [sys.executable, "-m", "agents.cli", "person", "report", "-", "--json", "--html", str(page)]
        done = await asyncio.to_thread(
            subprocess.run, command, input=number + "\n", env={**os.environ, **self.env}, capture_output=True, text=True
        )
        if done.returncode != 0:
            self.console.print(f"[bold red]Access report failed[/]: {done.stderr.strip()[-300:]}")
            return 1
        received = json.loads(done.stdout)["received"]
        systems_named = sorted({r["subscription"] for r in received})
        self.console.print(
            f"Access report (GDPR art. 15) for one child with a kindergarten right, by `samband person report`: "
            f"{len(received)} events about the child reached {len(systems_named)} systems "
            f"({', '.join(systems_named)}); the page for the child: {page}"
        )
        return 0

    async def _take_pictures(self, folder: Path) -> None:
        from agents.demo.pictures import PicturesError, take_pictures

        url = f"http://127.0.0.1:{self.web_port}"
        try:
            taken = await take_pictures(url, self.dashboard_token, await self._retried_event(url), folder)
        except PicturesError as exc:
            self.pictures_problem = str(exc)
            self.console.print(f"[bold red]pictures not taken[/]: {exc}")
            return
        self.console.print("[bold]pictures[/] " + ", ".join(str(p) for p in taken))

    async def _retried_event(self, url: str) -> str | None:
        """One of the first events the misbehaving system received that its outage made the bus retry."""
        recording = self.receivers[systems.MISBEHAVING].recording
        headers = {"Authorization": f"Bearer {self.dashboard_token}"}
        async with aiohttp.ClientSession(url, headers=headers) as http:
            for received in recording.events[:20]:
                async with http.get(f"/api/trace/{received.event_id}") as response:
                    trace = await response.json()
                if any(d["attempts"] > 1 for d in trace.get("deliveries", [])):
                    return received.event_id
        return recording.events[0].event_id if recording.events else None

    async def _start_receivers(self) -> None:
        for sub in self.subscriptions:
            if sub.delivery.kind == "webhook":
                outage = self.outage_seconds if sub.id == systems.MISBEHAVING else 0.0
                receiver = WebhookReceiver(sub.id, self.secrets[sub.id], outage)
                await receiver.start()
            elif sub.delivery.kind == "files":
                receiver = FolderReceiver(sub.id, self.outbound / sub.id)
            elif sub.delivery.kind == "pull":
                receiver = PullReceiver(sub.id, f"http://127.0.0.1:{self.web_port}", self.pull_tokens[sub.id])
            else:
                receiver = TopicReceiver(
                    sub.id, self.broker.bootstrap, systems.kafka_topic(sub, self.app_id), sub.fields
                )
            self.receivers[sub.id] = receiver

    async def _apply_subscriptions(self) -> None:
        topic = topic_names(self.app_id).subscriptions
        subs = [systems.for_this_run(s, getattr(self.receivers[s.id], "url", None)) for s in self.subscriptions]
        subs = [systems.with_window(s, self.window_opens) if s.id == systems.WINDOWED else s for s in subs]
        await store.ensure_topic(self.broker.bootstrap, topic)
        await store.write(self.broker.bootstrap, topic, [(s.id, s.to_json()) for s in subs])
        self.console.print(
            f"[bold]systems[/]  {len(subs)} subscriptions applied from {systems.SUBSCRIPTIONS_DIR.name}/: "
            + ", ".join(s.id for s in subs)
        )

    async def _create_bus_topics(self) -> None:
        """The topics the live view follows, made from the topic table before the worker starts."""
        await ensure_table_topics(self.broker.bootstrap, self.app_id, [INGEST, EVENTS, DEADLETTER, DELIVERIES])
        # The windowed system's own topic too: the bus makes it only when its window first opens,
        # and its receiver, reading from the start, would meet a topic that appears mid-run.
        windowed = next(s for s in self.subscriptions if s.id == systems.WINDOWED)
        await ensure_topics(
            self.broker.bootstrap, {systems.kafka_topic(windowed, self.app_id): {}}, layout().partitions
        )

    async def _watch(self, feed: DemoFeed, monitor: BusMonitor, children: Children) -> str | None:
        """The live view until the duration is over (or Ctrl-C); the name of a process that died, if one did."""
        rows = [systems.row(s, self.outage_seconds, self.window_opens) for s in self.subscriptions]
        recordings = {sub_id: r.recording for sub_id, r in self.receivers.items()}
        meter, started = RateMeter(), time.monotonic()

        def render():
            flow = monitor.flow
            counters = {
                "in": flow.ingested,
                **{r.id: len(flow.systems[r.id].routed & recordings[r.id].event_ids) for r in rows},
            }
            return live_view(
                time.monotonic() - started,
                self.options.duration,
                feed.published,
                len(feed.documents),
                flow,
                rows,
                recordings,
                meter.sample(counters),
            )

        with Live(render(), console=self.console, refresh_per_second=4, transient=False) as live:
            while not self.stop_requested.is_set():
                if dead := children.dead():
                    return dead[0].name
                if time.monotonic() - started >= self.options.duration and not self.options.keep_running:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_requested.wait(), 0.5)
                live.update(render())
            live.update(render())
        return None

    async def _delete_topics(self) -> None:
        admin = clients.admin(self.broker.bootstrap)
        await admin.start()
        try:
            prefixes = (f"{self.app_id}-", systems.subscriber_topic_prefix(self.app_id))
            mine = [t for t in await admin.list_topics() if t.startswith(prefixes)]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()


def run_demo(options: Options, console: Console | None = None) -> int:
    console = console or Console()
    configure_logging("warning")  # the demo's own process (feed simulator, receivers): warnings only, redacted
    broker = Broker.ensure()
    try:
        return asyncio.run(DemoRun(options, broker, console).run())
    finally:
        stopped = broker.stop_if_started_here()
        console.print(
            "stopped everything the demo started" + (" (the broker too)" if stopped else "; the broker keeps running")
        )
