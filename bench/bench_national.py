"""National scale, end to end: a register extract of the whole population, a reform day, a backfill
beside live traffic, all the way from the register to the subscribers (issue 17, item 5).

    .venv/bin/python bench/bench_national.py [--scale 1.0] [--processes N] [--live-rate 20]
        [--live-seconds 3600] [--reform-share 1.0] [--reform-timeout S] [--timeout S] [--out DIR] [--keep]

Uses the broker at SAMBAND_KAFKA_BOOTSTRAP_SERVERS / KAFKA_BOOTSTRAP_SERVERS, else the local one
(`samband kafka up`); needs the `test` extra (matplotlib). At least 1,000 persons whatever the
scale. `--reform-share`: the share of the reform's renumbered kommuner whose address events the
feed holds (0.1 for a quicker run whose backfill still reads the whole extract).
`--reform-timeout`: the reform day is reported as far as it came by then (a national run on a
small machine); `--timeout`: the backfill's limit. The run's topics and files are removed
at the end unless `--keep`. `--scale 1.0` is Norway: 5.5 M persons, the 2024 reform's address events
(about 1.9 M of the synthetic population; the register sent about 2.1 M), 18,000 subscriptions.
A smaller scale shrinks the population, never the subscriptions.

The register (synthetic population and the Folkeregister feed simulator) and the subscribers'
receivers run in processes of their own; `samband worker` (every core unless `--processes`) and
the feed source connector (`samband connectors run folkeregister`) are started as an operator
starts them. The subscriptions: each of the 357 kommuner has 50 systems; 10 of them take the
kommune's Move events (one as single webhook requests, nine in CloudEvents batches), the other 40
other event types; 150 national ones, two of them on Move (one Kafka, one batch files). So a
reform event reaches 12 systems (a strengt fortrolig person's only the 2 national ones).

Phases, one after the other:
1. **Extract**: a PopulationRecord of every resident goes to the ingest topic, as a register
   extract is loaded: the router learns every person (grade, birth date).
2. **Reform day**: the feed holds the 2024 reform's address events
   (`endringIBostedsadresseVedKommuneregulering`, one per resident of a renumbered kommune) when
   the source starts; done when every entitled subscriber has every event (the receivers count
   distinct idempotency keys; the Kafka subscriber's topic; the batch files' lines).
   Target: 2.1 M events in < 30 minutes.
3. **Backfill beside live traffic**: a new national Move subscription (batched webhook) asks for
   a backfill from the start of the events topic while the feed grows by `--live-rate` events/s.
   Live latency: from the event's append to the feed to its arrival at a subscriber.
   Target: 5.5 M events backfilled in < 15 minutes, live p99 < 1 s meanwhile.
Then the baseline in the same invocation: raw aiokafka consume -> produce (record batches, as the
stages write) of the ingest topic's records to a topic of its own.

Printed: records/s per stage and phase, each from the first to the last record the stage wrote
(its output topic's timestamps; the webhooks' by the second they arrived; the extract's routing,
which writes no deliveries, to its group's commit of the last record), so a stage is paced by
the ones before it; the reform day's route row counts deliveries (12 an event), the others
events; × raw aiokafka is against one process's passthrough while the worker has several.
Then: whether every webhook subscription got exactly the events it is entitled to, live
latency p50/p99 (of the deliveries that arrived) by stretch, each worker process's event-loop
lag through the backfill (agents/loop_lag.py), peak RSS per process, bytes per record per
topic (key and value, uncompressed, over the first records), dead letters; and a plot of the
stages' lag over time (PNG, `--out`). Everything is synthetic.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import multiprocessing
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
from aiohttp import ClientSession, web
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_routing import _sub as _subscription  # noqa: E402
from bench_routing import delete_topics, free_ports, produce, raw_batched_passthrough  # noqa: E402

from agents.config import bootstrap_servers  # noqa: E402
from agents.demo.extract import population_record  # noqa: E402
from agents.processes import process_count  # noqa: E402
from agents.routing.backfill import BackfillRequest, summaries  # noqa: E402
from agents.stage_runtime import stage_input  # noqa: E402
from agents.subscriptions.model import Subscription  # noqa: E402
from bus.inspector import BrokerUnreachable, KafkaInspector  # noqa: E402
from bus.reading import read_topic  # noqa: E402
from bus.topics import BACKFILLS, INGEST, SUBSCRIPTIONS, ensure_table_topics, ensure_topics, layout, topic_names  # noqa: E402
from connectors.dead_letters import DeadLetter  # noqa: E402
from connectors.webhook.secrets import new_secret  # noqa: E402
from schemas.catalog import catalog  # noqa: E402
from schemas.codec import Codec  # noqa: E402
from schemas.kommuner import kommuner, renumberings  # noqa: E402
from schemas.pseudonym import pseudonym  # noqa: E402
from schemas.registry import CatalogRegistry  # noqa: E402
from synthetic.population import RESIDENT  # noqa: E402

NATIONAL_PERSONS = 5_500_000
REFORM_DAY = date(2024, 1, 1)
SEED = 2024
TOKEN = "bench-national-token"
PSEUDONYM_KEY = "bench-pseudonym-key-of-at-least-32-bytes"
STRICT = ("strengtFortrolig", "strengtFortroligUtland")
PARTITIONS = layout().partitions  # the bus's own (SAMBAND_PARTITIONS, default 12), as a national bus runs
KOMMUNE_SYSTEMS, MOVE_SYSTEMS, NATIONAL_SYSTEMS = 50, 10, 150
KAFKA_MOVE, FILES_MOVE, LATE_MOVE = "national-move-kafka", "national-move-files", "national-move-late"
OTHER_TYPES = ["Birth", "Death", "NameChange", "CivilStatusChange", "Emigration", "Immigration"]
MOVE_FIELDS = ["envelope.person", "movedDate", "newAddress", "scope"]
RECEIVER_PROCESSES = 4
SAMPLE_S = 2.0  # the lag plot's resolution
IDEMPOTENCY = re.compile(rb'"idempotency_key": ?"([^"]+)"')  # in a delivery record's JSON
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BATCH = {"max_events": 100, "max_wait_ms": 50}


def previous_codes(share: float = 1.0) -> dict[str, str]:
    """Today's kommunenummer -> the one it had before 1 January 2024, for each kommune the reform renumbered
    (or `share` of them, spread over the list)."""
    found = {}
    for old, change in renumberings().items():
        if change.valid_from == REFORM_DAY:
            found.update(dict.fromkeys(change.new, old))
    codes = sorted(found)
    return {code: found[code] for i, code in enumerate(codes) if int(i * share) != int((i + 1) * share)}


# ---------------------------------------------------------------- subscriptions


def _webhook(receivers: list[str], sub_id: str, batched: bool) -> dict:
    receiver = receivers[zlib.crc32(sub_id.encode()) % len(receivers)]
    delivery = {"kind": "webhook", "url": f"{receiver}/w/{sub_id}", "secret_ref": f"file:{sub_id}"}
    return {**delivery, "batch": BATCH} if batched else delivery


def subscriptions(receivers: list[str]) -> list[Subscription]:
    """18,000: 50 systems in each kommune (10 on its Moves), 150 national (2 on Move)."""
    other_fields = {t: [f.path for f in catalog().fields(t) if f.classification == "ordinary"][:3] for t in OTHER_TYPES}
    subs = []
    for code in sorted(kommuner()):
        for j in range(KOMMUNE_SYSTEMS):
            sub_id = f"k{code}-{j:02d}"
            if j < MOVE_SYSTEMS:
                subs.append(_subscription(sub_id, [code], "Move", MOVE_FIELDS, _webhook(receivers, sub_id, j > 0)))
            else:
                event_type = OTHER_TYPES[j % len(OTHER_TYPES)]
                subs.append(_subscription(sub_id, [code], event_type, other_fields[event_type],
                                          _webhook(receivers, sub_id, True)))  # fmt: skip
    subs.append(_subscription(KAFKA_MOVE, "all", "Move", MOVE_FIELDS, {"kind": "kafka"}))
    subs.append(_subscription(FILES_MOVE, "all", "Move", MOVE_FIELDS, {"kind": "files", "max_age_s": 2}))
    for n in range(NATIONAL_SYSTEMS - 2):
        sub_id, event_type = f"national-{n:03d}", OTHER_TYPES[n % len(OTHER_TYPES)]
        subs.append(
            _subscription(sub_id, "all", event_type, other_fields[event_type], _webhook(receivers, sub_id, True))
        )
    return subs


def late_subscription(receivers: list[str]) -> Subscription:
    return _subscription(LATE_MOVE, "all", "Move", MOVE_FIELDS, _webhook(receivers, LATE_MOVE, True))


# ---------------------------------------------------------------- the register (its own process)


def register(persons: int, bootstrap: str, ingest_topic: str, live_events: int, live_rate: float, reform_share: float,
             commands, answers):  # fmt: skip
    """The synthetic register: loads its extract into the ingest topic, then serves its feed."""
    asyncio.run(_register(persons, bootstrap, ingest_topic, live_events, live_rate, reform_share, commands, answers))


async def _register(persons, bootstrap, ingest_topic, live_events, live_rate, reform_share, commands, answers) -> None:
    from confluent_kafka import Producer

    from synthetic import Simulation, SyntheticConfig
    from synthetic.folkeregister_simulator import run_simulator

    simulation = Simulation(SyntheticConfig(persons=persons, seed=SEED))
    answers.put(("ready",))
    if await asyncio.to_thread(commands.get) != "extract":
        return
    codec, key = Codec(CatalogRegistry(catalog())), PSEUDONYM_KEY.encode()
    schema_id = codec.current_id("PopulationRecord")
    # murmur2 partitions as every producer of the bus does (the Java client's and aiokafka's default)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "partitioner": "murmur2_random", "linger.ms": 20, "batch.size": 1 << 20})  # fmt: skip
    p, sent = simulation.population, 0
    for row in np.flatnonzero(p.status[: p.size] == RESIDENT).tolist():
        record = population_record(simulation, row, "urn:no:samband:bench:uttrekk")
        value, person_key = codec.encode(record, schema_id), pseudonym(record["envelope"]["person"], key).encode()
        while True:
            try:
                producer.produce(ingest_topic, value, person_key)
                break
            except BufferError:
                producer.poll(0.05)  # the client's queue is full: let it send
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
    if producer.flush(300) != 0:
        raise RuntimeError("the extract was not all acknowledged")
    answers.put(("extract", sent))

    strict: Counter = Counter()
    entitled: Counter = Counter()  # kommune -> its events its own systems may get (not a strengt fortrolig person's)

    def reform():
        for document in simulation.renumbering_events(previous_codes(reform_share), REFORM_DAY):
            strict[document.adressebeskyttelse in STRICT] += 1
            if document.adressebeskyttelse not in STRICT:
                entitled[document.opplysninger["kommunenummer"]] += 1
            yield document

    async with run_simulator(reform(), token=TOKEN) as simulator:
        live = list(itertools.islice(simulation.events(years=None), live_events))
        answers.put(("feed", simulator.base_url, strict[False], strict[True], [d.hendelsesdokument for d in live],
                     dict(entitled)))  # fmt: skip
        if await asyncio.to_thread(commands.get) != "live":
            return  # stopped before the live traffic
        appended: dict[str, float] = {}
        stopping = asyncio.ensure_future(asyncio.to_thread(commands.get))
        started, done = time.monotonic(), 0
        while not stopping.done() and done < len(live):
            due = min(len(live), int((time.monotonic() - started) * live_rate) + 1)
            if due > done:
                simulator.append(live[done:due])
                at = time.time()
                appended.update((d.hendelsesdokument, at) for d in live[done:due])
                done = due
            await asyncio.wait([stopping], timeout=0.05)  # the feed's pace, or the bench's stop
        await stopping
        answers.put(("appended", appended))
        await asyncio.to_thread(commands.get)  # "stop"


# ---------------------------------------------------------------- the subscribers (their own process)


def receivers(secret: str, watch: list[str], ready, stop_event) -> None:
    asyncio.run(_receivers(secret, set(watch), ready, stop_event))


async def _receivers(secret: str, watch: set[str], ready, stop_event) -> None:
    """The receivers of a share of the webhook subscriptions, on one local server: checks each request's Standard
    Webhooks signature, answers handshakes, counts distinct idempotency keys, and keeps the
    arrival time of each delivery of a watched (live) event."""
    verifier = Webhook(secret)  # the third-party library, as the demo's receivers check (agents/demo/receivers.py)
    seen: set[int] = set()
    stats = {"events": 0, "duplicates": 0, "requests": 0, "bad_signatures": 0, "backfill": 0, "single": 0}
    per_second: Counter = Counter()
    per_subscription: Counter = Counter()  # distinct events
    arrivals: list[tuple[str, float]] = []  # (idempotency key, when) of each live delivery

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        stats["requests"] += 1
        try:
            payload = verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            stats["bad_signatures"] += 1
            return web.Response(status=401)
        batch = request.content_type == "application/cloudevents-batch+json"
        events = payload if batch else [payload]
        if request.headers.get("webhook-id", "").startswith("validation."):  # the handshake: echo its challenge
            return web.json_response({"challenge": events[0]["data"]["challenge"]})
        now = time.time()
        for event in events:
            idempotency = event.get("idempotencykey") or request.headers["webhook-id"]
            digest = hash(idempotency)
            if digest in seen:
                stats["duplicates"] += 1
                continue
            seen.add(digest)
            stats["events"] += 1
            per_subscription[request.match_info["subscription"]] += 1
            stats["single"] += not batch
            stats["backfill"] += event.get("backfill") == "true"
            per_second[int(now)] += 1
            event_id = idempotency.rsplit(".", 1)[0]
            if event_id in watch:
                arrivals.append((idempotency, now))
        return web.Response(status=204)

    async def report(_request: web.Request) -> web.Response:
        return web.json_response(
            {**stats, "per_second": per_second, "per_subscription": per_subscription, "arrivals": arrivals}
        )

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/w/{subscription}", handle)
    app.router.add_get("/stats", report)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    ready.put(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")
    await asyncio.to_thread(stop_event.wait)
    await runner.cleanup()


# ---------------------------------------------------------------- the bench


@dataclass
class Reform:
    events: int
    seconds: float  # from the source's start to the last delivery (or to the phase's time limit)
    webhooks: dict  # the receivers' counts
    file_lines: int
    complete: bool
    expected: int
    kafka_records: int
    wrong: list[str]  # webhook subscriptions whose distinct events are not the number they are entitled to

    @property
    def delivered(self) -> int:
        """To webhooks, the Kafka subscriber and the files."""
        return self.webhooks["events"] + self.kafka_records + self.file_lines


@dataclass
class Samples:
    """The lag of each stage's group every SAMPLE_S seconds, and when each phase began."""

    started: float = field(default_factory=time.time)
    rows: list[dict] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)

    def phase(self, name: str) -> None:
        self.phases.append((name, time.time()))


def rss_peaks(pids: dict[str, int]) -> dict[str, float]:
    """Peak RSS (VmHWM) of each process, MiB; a worker's processes each by name."""
    peaks = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[name] = int(line.split()[1]) / 1024
    return peaks


def worker_pids(worker: subprocess.Popen) -> dict[str, int]:
    """The worker's processes: one, or a supervisor and its N (`--processes`)."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    if not children:
        return {"worker": worker.pid}
    return {"worker supervisor": worker.pid, **{f"worker process {i}": int(pid) for i, pid in enumerate(children)}}


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.bootstrap = bootstrap_servers()
        self.app_id = f"bench-national-{uuid.uuid4().hex[:6]}"
        self.topics = topic_names(self.app_id)
        self.work = Path(tempfile.mkdtemp(prefix="bench-national-"))
        self.persons = max(1000, round(NATIONAL_PERSONS * args.scale))
        self.samples = Samples()
        self.secret = new_secret()
        self.rates: list[tuple[str, str, int, float]] = []  # phase, stage, records, seconds
        self.backfill: tuple[int, int, float] | None = None  # events read, delivered, seconds
        self.live: list[float] = []  # latency of each live delivery, s
        self.live_late: list[float] = []  # the same, of those to the subscription being backfilled
        self.live_stages: dict[str, list[float]] = {}  # the same, in the stretches between the stages
        self.children: dict[str, subprocess.Popen] = {}
        self.web_port = 0  # set before the worker starts
        self.lag_in_backfill: list[dict[float, float]] = []  # per worker process (`loop_lags`), through the backfill
        self.topics_made: set[str] = set()  # topics seen to exist (`made`)

    # -- processes

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "SAMBAND_APP_ID": self.app_id,
            "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SAMBAND_DATA_DIR": str(self.work / "data"),
            "SAMBAND_WEB_PORT": str(self.web_port),
            "SAMBAND_LOG_LEVEL": "warning",
            "SAMBAND_LOG_FORMAT": "json",
            "SAMBAND_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "SAMBAND_DLQ_KEY": base64.b64encode(bytes(32)).decode(),
            "SAMBAND_SECRETS_DIR": str(self.work / "secrets"),
            "SAMBAND_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
            "SAMBAND_FILES_OUTBOUND_DIR": str(self.work / "outbound"),
            "SAMBAND_SUBSCRIBER_TOPIC_PREFIX": f"{self.app_id}.subscriber.",
        }
        if self.args.processes:
            env["SAMBAND_WORKER_PROCESSES"] = str(self.args.processes)
        else:
            env.pop("SAMBAND_WORKER_PROCESSES", None)  # the default: every core
        return env

    def start(self, name: str, *arguments: str) -> subprocess.Popen:
        log = (self.work / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "agents.cli", *arguments], env=self.env(), cwd=self.work,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        self.children[name] = proc
        return proc

    def check_children(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                tail = (self.work / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    async def answer(self, want: str, timeout: float = 3600) -> tuple:
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(queue.Empty):
                    got = await asyncio.to_thread(self.answers.get, True, 1.0)
                    if got[0] != want:
                        raise RuntimeError(f"the register answered {got[0]}, not {want}")
                    return got
                if not self.register.is_alive():
                    raise RuntimeError(f"the register process exited with {self.register.exitcode}")
                self.check_children()

    # -- measuring

    async def ends(self, topic: str) -> dict[TopicPartition, int]:
        """End offsets of a topic of the run (each has the bus's PARTITIONS); 0 for one not made yet."""
        async with KafkaInspector(self.bootstrap) as kafka:
            if not await self.made(kafka, topic):
                return {TopicPartition(topic, p): 0 for p in range(PARTITIONS)}
            offsets = await kafka.offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return {TopicPartition(o.topic, o.partition): o.end for o in offsets}

    async def span(self, topic: str, starts: dict, ends: dict) -> tuple[int, float, float]:
        """Records between the offsets, and the first one's and the last one's timestamps (seconds)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        first, last, count = [], [], 0
        try:
            for tp, end in ends.items():
                start = starts.get(tp, 0)
                if end <= start:
                    continue
                count += end - start
                consumer.assign([tp])
                for offset, into in ((start, first), (max(start, end - 20), last)):
                    consumer.seek(tp, offset)
                    records = (await consumer.getmany(tp, timeout_ms=5000, max_records=50)).get(tp, [])
                    kept = [r for r in records if offset <= r.offset < end]
                    if kept:
                        into.append(kept[0].timestamp if into is first else kept[-1].timestamp)
        finally:
            await consumer.stop()
        if not (first and last):
            return count, float("nan"), float("nan")
        return count, min(first) / 1000, max(last) / 1000

    async def record_sizes(self, topic: str, sample: int = 2000) -> float:
        """Mean bytes of key + value over the first records of each partition."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        sizes = []
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(20):
                    while len(sizes) < sample:
                        for records in (await consumer.getmany(timeout_ms=1000, max_records=sample)).values():
                            sizes += [len(r.key or b"") + len(r.value or b"") for r in records]
        finally:
            await consumer.stop()
        return sum(sizes) / len(sizes) if sizes else float("nan")

    def wrong_counts(self, subs: list[Subscription], received: dict[str, int]) -> list[str]:
        """Each kommune's Move systems are entitled to its events but a strengt fortrolig person's;
        no other webhook subscription to any event of the reform day."""
        wrong = []
        for sub in subs:
            if sub.delivery.kind != "webhook":
                continue
            code = sub.kommuner[0] if sub.kommuner != "all" and sub.event_types == ["Move"] else None
            if received.get(sub.id, 0) != (self.entitled.get(code, 0) if code else 0):
                wrong.append(sub.id)
        return wrong

    async def receiver_stats(self) -> dict:
        """The receivers' counts, summed; their per-second counts and arrivals together."""
        total: dict = {"per_second": Counter(), "per_subscription": Counter(), "arrivals": []}
        async with ClientSession() as http:
            for url in self.receiver_urls:
                async with http.get(f"{url}/stats") as response:
                    for name, value in (await response.json()).items():
                        if name == "per_second":
                            total[name].update({int(second): n for second, n in value.items()})
                        elif name == "per_subscription":
                            total[name].update(value)
                        elif name == "arrivals":
                            total[name] += value
                        else:
                            total[name] = total.get(name, 0) + value
        return total

    def files_lines(self) -> int:
        folder = self.work / "outbound" / FILES_MOVE
        return sum(sum(1 for _ in path.open("rb")) for path in folder.glob("*.jsonl")) if folder.exists() else 0

    async def sample(self) -> None:
        """Every SAMPLE_S: each stage group's lag."""
        async with KafkaInspector(self.bootstrap) as kafka:
            while True:
                row = {"t": time.time() - self.samples.started}
                for stage, group in (("ingest", "ingest"), ("route", "router"), ("deliver", "delivery")):
                    with contextlib.suppress(Exception):
                        if (lags := await self.group_lag(kafka, group)) is not None:
                            row[stage] = sum(lag.lag for lag in lags)
                self.samples.rows.append(row)
                await asyncio.sleep(SAMPLE_S)  # the plot's resolution

    async def until(self, what: str, check, timeout: float) -> float:
        """Wait until `check()` is true (polled every second); returns the time it became so."""
        async with asyncio.timeout(timeout):
            while not await check():
                self.check_children()
                await asyncio.sleep(1.0)  # polling progress counters
        peaks = rss_peaks(worker_pids(self.children["worker"])) if "worker" in self.children else {}
        rss = f"; worker peak RSS so far {', '.join(f'{mib:,.0f}' for mib in peaks.values())} MiB" if peaks else ""
        print(f"  {what}: {time.time() - self.samples.started:,.0f} s into the run{rss}", flush=True)
        return time.time()

    async def made(self, kafka: KafkaInspector, topic: str) -> bool:
        """Whether `topic` exists yet (the worker makes its stages' topics as it starts). A missing
        topic's offsets are never asked: the broker would make it, with its default partition count."""
        if topic not in self.topics_made and any(tp.topic == topic for tp in await kafka.topic_partitions(topic)):
            self.topics_made.add(topic)
        return topic in self.topics_made

    async def group_lag(self, kafka: KafkaInspector, group: str) -> list | None:
        """The stage group's lag on every partition of its input (one it has not committed on yet
        counts from the start); None before the input topic exists."""
        source = stage_input(f"{self.app_id}-{group}")
        assert source is not None, group
        if not await self.made(kafka, source):
            return None
        return await kafka.group_lag(f"{self.app_id}-{group}", [TopicPartition(source, p) for p in range(PARTITIONS)])

    async def group_done(self, group: str) -> bool:
        """Whether the stage's group has committed to the end of every partition of its input."""
        try:
            async with KafkaInspector(self.bootstrap) as kafka:
                lags = await self.group_lag(kafka, group)
        except BrokerUnreachable:  # a broker busy with the extract may not answer within 10 s: ask again
            return False
        return lags is not None and all(lag.lag == 0 for lag in lags)

    # -- the run

    async def run(self) -> None:
        import matplotlib  # noqa: F401  # the plot's, missing: said now, not after an hour's run

        try:
            await self.measure()
        finally:
            if not self.args.keep:
                await delete_topics(self.bootstrap, self.app_id)
                shutil.rmtree(self.work, ignore_errors=True)

    async def measure(self) -> None:
        args = self.args
        print(f"bench-national: scale {args.scale:g}, {self.persons:,} persons, app id {self.app_id}, work {self.work}")
        context = multiprocessing.get_context("spawn")
        self.commands, self.answers = context.Queue(), context.Queue()
        live_events = max(100, int(args.live_rate * args.live_seconds))
        self.register = context.Process(target=register, daemon=True, args=(
            self.persons, self.bootstrap, self.topics.ingest, live_events, args.live_rate, args.reform_share,
            self.commands, self.answers))  # fmt: skip
        self.register.start()
        # What the bench writes to before the worker starts; the worker makes the rest, with its settings.
        await ensure_table_topics(self.bootstrap, self.app_id, [INGEST, SUBSCRIPTIONS, BACKFILLS])
        await ensure_topics(self.bootstrap, {f"{self.app_id}.subscriber.{KAFKA_MOVE}": {}}, PARTITIONS)
        await self.answer("ready")
        # 1. the extract
        self.samples.phase("extract")
        ingest_before = await self.ends(self.topics.ingest)
        self.commands.put("extract")
        (_, extracted) = await self.answer("extract")
        print(f"  extract: {extracted:,} PopulationRecords in the ingest topic", flush=True)
        secrets_dir = self.work / "secrets"
        secrets_dir.mkdir()
        (_, base_url, reform_plain, reform_strict, live_ids, self.entitled) = await self.answer("feed")
        # Several receiver processes: the worker keeps a connection to each subscription's endpoint,
        # and 18,000 connections to one process would pass its limit of open files.
        ready, self.stop_receivers = context.Queue(), context.Event()
        self.receiver_processes = [
            context.Process(target=receivers, args=(self.secret, live_ids, ready, self.stop_receivers), daemon=True)
            for _ in range(RECEIVER_PROCESSES)
        ]
        for process in self.receiver_processes:
            process.start()
        self.receiver_urls = [await asyncio.to_thread(ready.get, True, 120) for _ in self.receiver_processes]
        subs = subscriptions(self.receiver_urls)
        self.subscription_count = len(subs)
        for sub in [*subs, late_subscription(self.receiver_urls)]:
            if sub.delivery.kind == "webhook":
                (secrets_dir / sub.id).write_text(self.secret)
        await produce(self.bootstrap, self.topics.subscriptions, [(s.id.encode(), s.to_json()) for s in subs])
        self.web_port = free_ports(process_count(args.processes, PARTITIONS) + 1)
        sampler = asyncio.ensure_future(self.sample())
        events_before = await self.ends(self.topics.events)
        # The worker starts on a full ingest topic: the extract is the backlog it starts with.
        worker = self.start("worker", "worker", "--loglevel", "warning")
        try:
            await self.until("extract ingested", lambda: self.group_done("ingest"), 3600)
            routed = await self.until("extract routed", lambda: self.group_done("router"), 3600)
            events_after = await self.ends(self.topics.events)
            count, first, last = await self.span(self.topics.events, events_before, events_after)
            self.rates.append(("extract", "ingest (validate, canonical events)", count, last - first))
            # The router writes no deliveries for a PopulationRecord (person state only): timed to its
            # committed end, which the samples see within a second.
            self.rates.append(("extract", "route (person state only)", count, routed - first))
            # 2. the reform day
            self.samples.phase("reform day")
            reform = reform_plain + reform_strict
            expected_webhook = reform_plain * MOVE_SYSTEMS
            print(f"  reform day: {reform:,} address events in the feed ({reform_strict:,} of strengt fortrolig "
                  f"persons); {expected_webhook + 2 * reform:,} deliveries expected", flush=True)  # fmt: skip
            ingest_before, events_before = await self.ends(self.topics.ingest), events_after
            deliveries_before = await self.ends(self.topics.deliveries)
            kafka_topic = f"{self.app_id}.subscriber.{KAFKA_MOVE}"
            config = self.work / "feed.yaml"
            config.write_text(f"base_url: {base_url}\ntoken: {TOKEN}\npoll_interval_s: 0.2\n")
            reform_started = time.time()
            self.start("source", "connectors", "run", "folkeregister", "--config", str(config), "--instance", "bench")

            async def reform_delivered() -> bool:
                stats = await self.receiver_stats()
                kafka_records = sum((await self.ends(kafka_topic)).values())
                return stats["events"] >= expected_webhook and kafka_records >= reform and self.files_lines() >= reform

            try:
                reform_done: float | None = await self.until(
                    "reform day delivered", reform_delivered, args.reform_timeout
                )
            except TimeoutError:  # measured as far as it came, and said so
                reform_done = None
                print(f"  reform day: not delivered within {args.reform_timeout:,.0f} s; measured so far", flush=True)
            stats = await self.receiver_stats()
            self.reform = Reform(reform, (reform_done or time.time()) - reform_started, stats, self.files_lines(),
                                 reform_done is not None, expected_webhook + 2 * reform,
                                 sum((await self.ends(kafka_topic)).values()),
                                 self.wrong_counts(subs, stats["per_subscription"]))  # fmt: skip
            self.ingested = extracted
            for name, topic, before in (("feed source", self.topics.ingest, ingest_before),
                                        ("ingest", self.topics.events, events_before),
                                        ("route", self.topics.deliveries, deliveries_before)):  # fmt: skip
                count, first, last = await self.span(topic, before, await self.ends(topic))
                self.rates.append(("reform day", name, count, last - first))
                self.ingested += count if name == "feed source" else 0
            count, first, last = await self.span(kafka_topic, {}, await self.ends(kafka_topic))
            self.rates.append(("reform day", f"deliver to Kafka ({KAFKA_MOVE})", count, last - first))
            seconds_with_events = sorted(int(s) for s in stats["per_second"]) or [0]
            self.rates.append(("reform day", "deliver to webhooks", stats["events"],
                               seconds_with_events[-1] - seconds_with_events[0] + 1))  # fmt: skip
            if reform_done is not None:
                await self.backfill_beside_live(reform)
            self.peaks = rss_peaks({**worker_pids(worker), "feed source": self.children["source"].pid,
                                    "register (simulator)": self.register.pid,
                                    **{f"receivers {i}": p.pid for i, p in enumerate(self.receiver_processes)}})  # fmt: skip
        finally:
            sampler.cancel()
            for proc in self.children.values():
                proc.terminate()
            for proc in self.children.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(60)
                if proc.poll() is None:
                    proc.kill()
            self.commands.put("stop")
            self.stop_receivers.set()
        self.sizes = {t: await self.record_sizes(t) for t in
                      (self.topics.ingest, self.topics.events, self.topics.deliveries, self.topics.router_persons,
                       self.topics.router_records)}  # fmt: skip
        self.counts = {t: sum((await self.ends(t)).values()) for t in self.sizes}
        self.deadletters: Counter = Counter()  # reason -> dead letters
        async for record in read_topic(self.bootstrap, self.topics.deadletter, timeout=30.0):
            self.deadletters[DeadLetter.from_headers(record.headers).reason] += 1
        await self.baseline()
        self.report()
        self.plot()

    async def backfill_beside_live(self, reform: int) -> None:
        """Phase 3: a new national Move subscription's backfill while the feed grows at --live-rate."""
        self.samples.phase("backfill + live")
        late = late_subscription(self.receiver_urls)
        await produce(self.bootstrap, self.topics.subscriptions, [(late.id.encode(), late.to_json())])
        scanned = sum((await self.ends(self.topics.events)).values())
        marks = {
            topic: await self.ends(topic)
            for topic in (self.topics.ingest, self.topics.ingest_seen_ids, self.topics.deliveries)
        }
        lag_before = await self.loop_lags()
        self.commands.put("live")
        live_started = time.time()
        request = BackfillRequest.new(late, date(2000, 1, 1), "bench-national")
        await produce(self.bootstrap, self.topics.backfills, [(late.id.encode(), request.to_json())])
        backfill_started = time.time()

        async def backfilled() -> bool:
            return any(s.done for s in await summaries(self.bootstrap, self.topics)) and (
                (await self.receiver_stats())["backfill"] >= reform
            )

        backfill_done = await self.until("backfill delivered", backfilled, self.args.timeout)
        self.lag_in_backfill = [
            {bound: count - before.get(bound, 0) for bound, count in after.items()}
            for before, after in zip(lag_before, await self.loop_lags(), strict=True)
        ]
        self.commands.put("stop-live")
        (_, appended) = await self.answer("appended")
        self.backfill = (scanned, (await self.receiver_stats())["backfill"], backfill_done - backfill_started)
        await self.until("live traffic routed", lambda: self.group_done("router"), 600)
        await self.until("live traffic delivered", lambda: self.group_done("delivery"), 600)
        stats = await self.receiver_stats()
        arrivals = [(key, at) for key, at in stats["arrivals"] if key.rsplit(".", 1)[0] in appended]
        self.live = sorted(at - appended[key.rsplit(".", 1)[0]] for key, at in arrivals)
        self.live_late = sorted(
            at - appended[key.rsplit(".", 1)[0]] for key, at in arrivals if key.endswith(f".{LATE_MOVE}")
        )
        self.live_stages = await self.stage_latencies(marks, appended, arrivals)
        self.live_window = (live_started, time.time(), len(appended))

    async def loop_lags(self) -> list[dict[float, float]]:
        """Each worker process's `samband_event_loop_lag_seconds` so far (agents/loop_lag.py), in the order
        of their ports (process i serves on the web port + i): bucket bound -> wake-ups that came at most
        that late (+inf: all). A process that does not answer gives an empty one (a diagnostic only)."""
        found: list[dict[float, float]] = []
        async with ClientSession() as session:
            for index in range(process_count(self.args.processes, PARTITIONS)):
                try:
                    async with session.get(f"http://127.0.0.1:{self.web_port + index}/metrics") as response:
                        text = await response.text()
                except OSError as exc:  # (aiohttp's connection errors are OSErrors)
                    print(f"  worker process {index}'s /metrics not read: {type(exc).__name__}", flush=True)
                    text = ""
                found.append({
                    float(sample.labels["le"]): sample.value
                    for family in text_string_to_metric_families(text) if family.name == "samband_event_loop_lag_seconds"
                    for sample in family.samples if sample.name.endswith("_bucket")
                })  # fmt: skip
        return found

    async def stage_latencies(self, marks: dict, appended: dict[str, float], arrivals: list) -> dict[str, list[float]]:
        """Where the live deliveries' time went, from the topics' record timestamps (written since
        `marks`): the feed to the source's write (the ingest topic's record timestamp: the register's
        feed, polled, and the source's page cycle), that write to ingest's first sight of the event
        (`-ingest-seen-ids`: the broker, ingest's fetch and queue), ingest to the router's delivery record
        (`-deliveries`: the events topic and the router's queue), and that record to the subscriber."""
        written: dict[str, float] = {}
        async for record in read_topic(self.bootstrap, self.topics.ingest, timeout=300,
                                       from_offsets={tp.partition: o for tp, o in marks[self.topics.ingest].items()}):  # fmt: skip
            for found in UUID.findall(record.value or b""):  # the register's document id, in the encoded event
                if (event_id := found.decode()) in appended and event_id not in written:
                    written[event_id] = record.timestamp / 1000
        seen: dict[str, float] = {}
        async for record in read_topic(self.bootstrap, self.topics.ingest_seen_ids, timeout=300,
                                       from_offsets={tp.partition: o for tp, o in marks[self.topics.ingest_seen_ids].items()}):  # fmt: skip
            event_id = record.key.decode()
            if event_id in appended and event_id not in seen:
                seen[event_id] = record.timestamp / 1000
        wanted = {key for key, _ in arrivals}
        routed: dict[str, float] = {}
        async for record in read_topic(self.bootstrap, self.topics.deliveries, timeout=300,
                                       from_offsets={tp.partition: o for tp, o in marks[self.topics.deliveries].items()}):  # fmt: skip
            found = IDEMPOTENCY.search(record.value or b"")
            if found is not None and (key := found.group(1).decode()) in wanted and key not in routed:
                routed[key] = record.timestamp / 1000
        stages: dict[str, list[float]] = {
            "feed -> ingest": [], "feed -> source's write": [], "source's write -> ingest": [],
            "ingest -> routed": [], "routed -> subscriber": [],
        }  # fmt: skip
        for key, at in arrivals:
            event_id = key.rsplit(".", 1)[0]
            if event_id in seen and key in routed:
                stages["feed -> ingest"].append(seen[event_id] - appended[event_id])
                if event_id in written:
                    stages["feed -> source's write"].append(written[event_id] - appended[event_id])
                    stages["source's write -> ingest"].append(seen[event_id] - written[event_id])
                stages["ingest -> routed"].append(routed[key] - seen[event_id])
                stages["routed -> subscriber"].append(at - routed[key])
        return {name: sorted(values) for name, values in stages.items()}

    async def baseline(self) -> None:
        """Raw aiokafka, the stages' way of writing, over the same records: the ingest topic to a topic of its own."""
        sink = f"{self.app_id}-baseline"
        await ensure_topics(self.bootstrap, {sink: {}}, PARTITIONS)
        n = self.ingested
        seconds = await raw_batched_passthrough(self.bootstrap, self.topics.ingest, sink, n, partitions=PARTITIONS)
        self.rates.append(("baseline", "raw aiokafka consume -> produce", n, seconds))

    # -- the report

    def report(self) -> None:
        baseline = next(n / s for phase, _, n, s in self.rates if phase == "baseline")
        print(f"\n## National bench, scale {self.args.scale:g}: {self.persons:,} persons, {self.subscription_count:,} subscriptions, "
              f"{datetime.now(UTC):%Y-%m-%d}\n")  # fmt: skip
        print("| phase | stage | records | seconds | records/s | × raw aiokafka |")
        print("|---|---|---:|---:|---:|---:|")
        for phase, stage, n, seconds in self.rates:
            print(f"| {phase} | {stage} | {n:,} | {seconds:,.1f} | {n / seconds:,.0f} | {n / seconds / baseline:.2f} |")
        r = self.reform
        stats = r.webhooks
        if r.complete:
            print(f"\nReform day: {r.events:,} events routed and delivered to every entitled subscriber in "
                  f"{r.seconds / 60:.1f} min ({r.events / r.seconds:,.0f} events/s); at that rate 2.1 M take "
                  f"{2_100_000 / (r.events / r.seconds) / 60:.0f} min (target < 30).", end=" ")  # fmt: skip
        else:
            rate = r.delivered / r.seconds
            print(f"\nReform day NOT COMPLETE: {r.delivered:,} of {r.expected:,} deliveries "
                  f"({100 * r.delivered / r.expected:.1f} %) of {r.events:,} events in the --reform-timeout of "
                  f"{r.seconds / 60:.1f} min, {rate:,.0f} deliveries/s; at that rate all would take "
                  f"{r.expected / rate / 60:,.0f} min, 2.1 M events {r.expected / r.events * 2_100_000 / rate / 60:,.0f} "
                  "min (target < 30).", end=" ")  # fmt: skip
        exact = (
            f"{len(r.wrong)} subscriptions with other than their entitled count"
            f"{' (' + ', '.join(r.wrong[:5]) + ')' if r.wrong else ''}; "
            if r.complete
            else ""  # counted only once every event is in
        )
        print(f"Webhooks: {stats['events']:,} events in {stats['requests']:,} requests ({stats['single']:,} single), "
              f"{stats['duplicates']:,} duplicates, {stats['bad_signatures']} bad signatures, {exact}"
              f"Kafka: {r.kafka_records:,} records and files: {r.file_lines:,} lines, of {r.events:,} events.")  # fmt: skip
        if self.backfill is None:
            print("\nBackfill: not run (the reform day did not finish).")
        else:
            scanned, delivered, seconds = self.backfill
            print(f"\nBackfill: {scanned:,} events on the events topic read for one new subscription, {delivered:,} "
                  f"delivered (its Moves), in {seconds / 60:.1f} min: {scanned / seconds:,.0f} events/s read; at that "
                  f"rate 5.5 M events take {5_500_000 / (scanned / seconds) / 60:.1f} min (target < 15).")  # fmt: skip
        if self.live:
            p50, p99 = (self.live[min(len(self.live) - 1, int(len(self.live) * q))] for q in (0.5, 0.99))
            start, end, appended = self.live_window
            print(f"Live traffic meanwhile: {appended:,} register events at {self.args.live_rate:g}/s over "
                  f"{end - start:,.0f} s, {len(self.live):,} deliveries; latency from the feed to the subscriber "
                  f"p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms (target < 1 s).")  # fmt: skip
            for stage, values in [("to the subscription being backfilled", self.live_late), *self.live_stages.items()]:
                if values:
                    p50, p99 = (values[min(len(values) - 1, int(len(values) * q))] for q in (0.5, 0.99))
                    print(f"  {stage}: p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms ({len(values):,} deliveries)")
        for index, buckets in enumerate(self.lag_in_backfill):  # in port order (`loop_lags`)
            total = buckets.get(float("inf"), 0)
            if total <= 0:
                continue
            p99 = min(bound for bound, n in buckets.items() if n >= 0.99 * total)
            late = ", ".join(f"> {bound:g} s: {total - buckets[bound]:,.0f}" for bound in (0.1, 0.5, 1.0))
            bound = f"<= {p99:g}" if p99 < float("inf") else "> 10"
            print(f"  worker process {index}'s event-loop lag through the backfill: p99 {bound} s; "
                  f"of {total:,.0f} wake-ups, late {late}")  # fmt: skip
        print("\n| process | peak RSS, MiB |\n|---|---:|")
        for name, mib in self.peaks.items():
            print(f"| {name} | {mib:,.0f} |")
        print("\n| topic | records | bytes per record (key + value) |\n|---|---:|---:|")
        for topic, size in self.sizes.items():
            print(f"| {topic.removeprefix(self.app_id + '-')} | {self.counts[topic]:,} | {size:,.0f} |")
        reasons = ", ".join(f"{reason}: {n:,}" for reason, n in self.deadletters.most_common())
        # event.unknown_type: the register's made-up event types (synthetic's unusual_type_share), as it should be
        print(f"\nDead letters: {sum(self.deadletters.values()):,}{f' ({reasons})' if reasons else ''}.")

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot

        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        figure, axes = pyplot.subplots(figsize=(10, 4.5))
        rows = self.samples.rows
        for stage in ("ingest", "route", "deliver"):
            points = [(r["t"] / 60, r[stage]) for r in rows if stage in r]
            if points:
                axes.plot(*zip(*points, strict=True), label=f"{stage} lag (records)")
        for name, at in self.samples.phases:
            axes.axvline((at - self.samples.started) / 60, color="grey", linestyle=":")
            axes.annotate(name, ((at - self.samples.started) / 60, 0), rotation=90, fontsize=8, va="bottom")
        axes.set_xlabel("minutes")
        axes.set_ylabel("records behind")
        axes.set_title(f"Samband, national bench, scale {self.args.scale:g} ({self.persons:,} persons)")
        axes.legend()
        path = out / f"national-lag-scale-{self.args.scale:g}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        print(f"\nLag over time: {path}")


def share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share: give a number above 0 and at most 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0: 5.5 M persons")
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: every core)")
    parser.add_argument("--live-rate", type=float, default=20.0, help="live register events/s during the backfill")
    parser.add_argument("--live-seconds", type=float, default=3600.0, help="live events prepared: rate x this")
    parser.add_argument(
        "--timeout", type=float, default=7200.0, help="seconds the backfill may take (then the run fails)"
    )
    parser.add_argument("--reform-share", type=share, default=1.0,
                        help="share of the reform's renumbered kommuner in the feed (0 < share <= 1)")  # fmt: skip
    parser.add_argument("--reform-timeout", type=float, default=7200.0,
                        help="seconds the reform day may take: then it is reported as far as it came")  # fmt: skip
    parser.add_argument("--out", default=".", help="folder of the lag plot (docs/ for docs/national-scale.md's)")
    parser.add_argument("--keep", action="store_true", help="keep the run's topics and files")
    asyncio.run(Bench(parser.parse_args()).run())


if __name__ == "__main__":
    main()
