"""The demo's closing report: what each system got, the leak check (`samband privacy scan` over the
run's topics and logs), and whether every event a system was entitled to reached it, stated
plainly, including what is still pending and why."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

from rich.console import Console

from agents.commands.privacy import run_scan
from agents.config import get_settings
from agents.demo import systems
from agents.demo.checks import delivery_gaps
from agents.demo.feed import DemoFeed
from agents.demo.monitor import BusMonitor, read_to_end
from agents.demo.view import summary_table
from agents.stage_runtime import stage_group, stage_input
from agents.subscriptions.windows import NORWAY
from bus.inspector import KafkaInspector
from schemas.life_stages import life_stages

SOURCE_STAGE = "source"


def refused_subscriptions(worker_log: Path) -> dict[str, str]:
    """Subscriptions whose delivery settings the delivery stage refused, with its (personal-data-free) error."""
    refused = {}
    for line in worker_log.read_text(errors="replace").splitlines() if worker_log.exists() else []:
        if '"delivery.subscription_invalid"' in line:
            entry = json.loads(line)
            refused[entry["subscription"]] = entry.get("error", "")
    return refused


class Report:
    def __init__(
        self,
        subscriptions,
        receivers,
        monitor: BusMonitor,
        feed: DemoFeed,
        outage_seconds: float,
        bootstrap: str,
        app_id: str,
        run_dir: Path,
        windows: dict[str, datetime],
    ):
        self.subscriptions = subscriptions
        self.recordings = {sub_id: r.recording for sub_id, r in receivers.items()}
        self.monitor = monitor
        self.feed = feed
        self.outage_seconds = outage_seconds
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.run_dir = run_dir
        self.windows = windows  # subscription -> when its delivery window opened
        self.kinds = {s.id: s.delivery.kind for s in subscriptions}
        self.unread: dict[str, int] = {}
        self.monitor_complete = True
        self.logs: list[Path] = []
        self.findings, self.scanned_topics = [], []

    async def gather(self) -> None:
        """After the bus stopped: read its topics to the end and how much each stage left unread."""
        try:
            await read_to_end(self.monitor, timeout=30)
        except TimeoutError:
            self.monitor_complete = False
        async with KafkaInspector(self.bootstrap) as kafka:
            partitions = await kafka.topic_partitions(self.app_id)
            for group in (stage_group(self.app_id, "ingest"), stage_group(self.app_id, "route")):
                topic = stage_input(group)
                for row in await kafka.group_lag(group, [tp for tp in partitions if tp.topic == topic]):
                    self.unread[row.topic] = self.unread.get(row.topic, 0) + row.lag
        self.refused = refused_subscriptions(self.run_dir / "worker.log")
        self.logs = sorted(self.run_dir.glob("*.log"))
        self.findings, self.scanned_topics = await run_scan(
            self.bootstrap, self.app_id, get_settings().subscriber_topic_prefix, self.logs
        )

    def print(self, console: Console, failed_process: str | None) -> int:
        flow, feed = self.monitor.flow, self.feed
        received = [e for r in self.recordings.values() for e in r.events]
        gaps = delivery_gaps(
            {s.id: flow.systems[s.id].routed for s in self.subscriptions},
            {s_id: r.event_ids for s_id, r in self.recordings.items()},
            {s.id: flow.systems[s.id].dead_lettered for s in self.subscriptions},
        )
        findings = self.findings
        per_system = Counter(f.subscription for f in findings if f.subscription)
        rows = [systems.row(s, self.outage_seconds, self.windows.get(s.id)) for s in self.subscriptions]
        console.print(summary_table(rows, gaps, flow, self.recordings, per_system))

        problems: list[str] = []
        if failed_process:
            problems.append(f"the {failed_process} process exited during the run (its log is in {self.run_dir})")
        if not self.monitor_complete:
            problems.append("the bus's topics could not be read to their end within 30 s: counts may be short")
        protected = feed.protected_events()
        scanned = f"{len(self.scanned_topics)} topics of the run and {len(self.logs)} log files"
        if findings:
            kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(Counter(f.kind for f in findings).items()))
            console.print(
                f"[bold red]LEAK CHECK FAILED[/]: samband privacy scan found {len(findings):,} finding(s) in {scanned}: {kinds}"
            )
            for finding in findings[:20]:
                console.print(f"  {finding}", markup=False, highlight=False)
            problems.append("leaks")
        elif not received:
            console.print("[bold yellow]Leak check: nothing to check[/]: no system received any event.")
            problems.append("nothing received")
        else:
            console.print(
                f"[bold green]Leak check: 0 findings.[/] samband privacy scan read {scanned}; "
                f"{len(received):,} events received by {len(rows)} systems: no identity number outside a granted "
                "field, no field outside a subscription's grant, no address of the "
                f"{protected['fortrolig']:,} fortrolig events to a private operator, no address or kommune of the "
                f"{protected['strengtFortrolig'] + protected['strengtFortroligUtland']:,} strengt fortrolig events to anyone."
            )

        read_from_feed = flow.ingested + flow.dead_letters.get(SOURCE_STAGE, 0)
        behind = []
        if feed.published < len(feed.documents):
            behind.append(
                f"{len(feed.documents) - feed.published:,} of the year's events were not yet published to the feed"
            )
        if read_from_feed < feed.published:
            behind.append(f"{feed.published - read_from_feed:,} published events were not yet read by the feed source")
        for topic, lag in sorted(self.unread.items()):
            if lag:
                stage = "validated" if topic.endswith("-ingest") else "routed"
                behind.append(f"{lag:,} events on {topic} were not yet {stage}")
        entitled = sum(g.routed for g in gaps.values())
        delivered = sum(g.delivered for g in gaps.values())
        undelivered = {sub: g for sub, g in gaps.items() if g.pending or g.dead_lettered or g.unexpected}
        if not undelivered and not behind:
            console.print(
                f"[bold green]Delivery: every event a system was entitled to was delivered[/] "
                f"({delivered:,} of {entitled:,}; the misbehaving system caught up after "
                f"{flow.systems[systems.MISBEHAVING].failed_attempts:,} retried attempts)."
            )
        else:
            console.print(f"[bold yellow]Delivery: {delivered:,} of {entitled:,} entitled events delivered so far.[/]")
            for sub, gap in undelivered.items():
                why = (
                    f": the delivery stage refused its delivery settings ({self.refused[sub]})"
                    if sub in self.refused
                    else ""
                )
                console.print(
                    f"  {sub}: {gap.pending:,} pending, {gap.dead_lettered:,} dead-lettered, "
                    f"{gap.unexpected:,} received without being routed to it{why}"
                )
            for line in behind:
                console.print(f"  the bus had not finished: {line} (a longer --duration lets it finish)")
            problems.append("undelivered")
        for sub, opens in self.windows.items():
            first = self.recordings[sub].first_at
            local = f"{opens.astimezone(NORWAY):%H:%M:%S}"
            if first is None:
                console.print(f"Delivery window: {sub}'s window opened at {local} (Oslo); nothing arrived.")
            elif first < opens.timestamp():
                console.print(f"[bold red]Delivery window: {sub} got an event before its window opened at {local}.[/]")
                problems.append("delivered outside a window")
            else:
                console.print(
                    f"Delivery window: {sub} takes deliveries from {local} (Oslo); the bus held its events until "
                    f"then, in order, and the first arrived {first - opens.timestamp():.1f} s after the window opened."
                )
        for sub, kind in self.kinds.items():
            if kind == "pull":
                counts = self.recordings[sub].counts
                console.print(
                    f"Pull: {sub} fetched its {len(self.recordings[sub].events):,} events itself in "
                    f"{counts.requests:,} requests ({counts.refused:,} answered 429: asked again too soon)."
                )
        stages = Counter((e.subscription, e.event_type) for e in received if e.event_type in life_stages())
        if stages:
            got = ", ".join(f"{sub} {n:,} {stage}" for (sub, stage), n in sorted(stages.items()))
            console.print(
                f"Life stages, derived by the bus (its life-stage clock stood at {systems.LIFE_STAGE_DAY[:10]}): {got}."
            )
        dead = ", ".join(f"{stage} {n:,}" for stage, n in sorted(flow.dead_letters.items())) or "none"
        console.print(f"Dead letters by stage: {dead} (unknown or invalid register events are dead letters by design).")
        for problem in problems[:1] if failed_process else []:
            console.print(f"[bold red]{problem}[/]")
        return 0 if not problems else 1
