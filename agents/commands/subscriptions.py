"""`samband subscriptions apply DIR | list | show ID | pause ID | resume ID | delete ID | renumber | announce-reform`.

They live in the compacted `<app id>-subscriptions` topic; running workers pick changes up
within a second. `apply` validates every file first and writes nothing if any is invalid; it
prints its plan (created, changed, unchanged and, with `--prune`, deleted: those on the bus
but in no file), writes only what differs, and with `--dry-run` writes nothing.
Every write is an operator's: it is audit-logged (`samband audit`) under the OS user's name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from agents.config import bootstrap_servers, get_settings
from agents.routing import backfill, reference
from agents.subscriptions import renumber, store
from agents.subscriptions.audit import AuditLog, os_user
from agents.subscriptions.delivery_target import AS_WRITTEN
from agents.subscriptions.files import load_dir
from agents.subscriptions.model import Subscription
from bus import clients
from bus.reading import partition_count
from bus.topics import topic_names
from schemas.kommuner import reform_days, renumbering_record


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("subscriptions", help="who receives which life events: apply, list, show, delete")
    commands = parser.add_subparsers(dest="subscriptions_command", metavar="SUBCOMMAND", required=True)
    apply = commands.add_parser("apply", help="validate every *.yaml in DIR, then create or replace them all")
    apply.add_argument("directory", type=Path)
    apply.add_argument("--prune", action="store_true", help="also delete the subscriptions that are in no file of DIR")
    apply.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    apply.set_defaults(handler=apply_dir)
    listing = commands.add_parser("list", help="every subscription: id, system, kommuner, event types")
    listing.add_argument("--json", action="store_true", help="every subscription in full, as a JSON array")
    listing.set_defaults(handler=list_all)
    show = commands.add_parser("show", help="one subscription as JSON")
    show.add_argument("id")
    show.set_defaults(handler=show_one)
    for name, verb in (
        ("pause", "pause a subscription's deliveries; its events are kept, in order"),
        ("resume", "resume a paused subscription: what was kept is delivered, in order"),
    ):
        command = commands.add_parser(name, help=verb)
        command.add_argument("id")
        command.set_defaults(handler=set_paused, paused=name == "pause")
    delete = commands.add_parser("delete", help="delete a subscription (deliveries to it stop within seconds)")
    delete.add_argument("id")
    delete.set_defaults(handler=delete_one)
    renumbering = commands.add_parser(
        "renumber",
        help="move the subscriptions scoped to kommunenumre a reform retired to today's codes",
        description="After a reform day (kommuner renumbered, merged or split: docs/reform-day.md), each "
        "subscription scoped to a retired code follows its kommune's code of today, all in one audited "
        "write. A split code is left as it is, for the operator to choose.",
    )
    renumbering.add_argument("--plan", action="store_true", help="print what would change, write nothing")
    renumbering.set_defaults(handler=renumber_all)
    announcing = commands.add_parser(
        "announce-reform",
        help="send a reform's kommune renumbering (KommuneRenumbering) to the subscriptions to it",
        description="The reform of DAY, from the kommune data this bus carries (SSB classification 131), as "
        "one KommuneRenumbering event to each subscription to that type that is national or scoped to a "
        "kommune the reform retired or gave a code to; audit-logged. Its id is made from the reform's data: "
        "announcing again gives each subscriber the same idempotency key. docs/reform-day.md",
    )
    announcing.add_argument(
        "day", nargs="?", type=_day, metavar="DAY", help="the reform's day (YYYY-MM-DD); default: the latest one"
    )
    announcing.add_argument("--plan", action="store_true", help="print who would get it, send nothing")
    announcing.add_argument(
        "--subscription", metavar="ID", help="send it to this subscription alone (one that joined after the reform)"
    )
    announcing.set_defaults(handler=announce_reform)
    backfilling = commands.add_parser(
        "backfill",
        help="send a subscription the retained events it missed, from a date",
        description="The workers' routers read the events topic again from DATE and route every event for "
        "this subscription alone, under its entitlements and each person's protection grade of now; each "
        "delivery says `backfill: true`. Live traffic goes first. How far back it can reach is the events "
        "topic's retention (SAMBAND_EVENTS_RETENTION_DAYS). docs/backfill.md",
    )
    backfilling.add_argument("id")
    backfilling.add_argument("--since", type=_day, metavar="DATE", help="the first day to send again (YYYY-MM-DD)")
    backfilling.add_argument("--cancel", action="store_true", help="stop the subscription's backfill")
    backfilling.add_argument(
        "--no-wait", action="store_true", help="ask for it and return (`samband status` shows how far it has come)"
    )
    backfilling.set_defaults(handler=backfill_one)


def _where() -> tuple[str, str]:
    return bootstrap_servers(), topic_names(get_settings().app_id).subscriptions


async def _audit(actions: list[tuple[str, str]], details: dict[str, str] | None = None) -> None:
    """Audit-log (action, subscription id) pairs written by this command (`details`: by id, what changed)."""
    log = AuditLog(bootstrap_servers(), topic_names(get_settings().app_id).audit)
    user = os_user()
    await log.record_all(
        [
            {
                "name": user,
                "owner": "samband CLI",
                "action": action,
                "subscription": sub_id,
                "outcome": "ok",
                "via": "cli",
                **({"detail": details[sub_id]} if details and sub_id in details else {}),
            }
            for action, sub_id in actions
        ]
    )


def apply_dir(args) -> int:
    if not args.directory.is_dir():
        print(f"samband: {args.directory} is not a directory", file=sys.stderr)
        return 2
    subs, errors = load_dir(args.directory)
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        print(f"samband: nothing applied: {len(errors)} problem(s) in {args.directory}", file=sys.stderr)
        return 1
    bootstrap, topic = _where()

    async def plan_and_write() -> dict[str, list[str]]:
        await store.ensure_topic(bootstrap, topic)
        current = await store.read_all(bootstrap, topic)
        plan = _plan(current, subs, args.prune)
        if not args.dry_run:
            changes = [(s.id, s.to_json()) for s in subs if s.id in plan["created"] + plan["changed"]]
            await store.write(bootstrap, topic, changes + [(sub_id, None) for sub_id in plan["deleted"]])
            await _audit(
                [
                    (action, sub_id)
                    for key, action in (("created", "create"), ("changed", "replace"), ("deleted", "delete"))
                    for sub_id in plan[key]
                ]
            )
        return plan

    plan = asyncio.run(plan_and_write())
    for action, ids in plan.items():
        if ids:
            print(f"{action} {len(ids)}: {', '.join(ids)}")
    verb = "would apply" if args.dry_run else "applied"
    print(
        f"{verb} {len(subs)} subscription(s) from {args.directory}"
        + ("" if args.prune else "; not in any file and kept (use --prune to delete): " + str(len(plan["kept"])))
    )
    return 0


def _plan(current: dict[str, bytes], subs, prune: bool) -> dict[str, list[str]]:
    """What applying `subs` changes: created, changed, unchanged, and deleted (with prune) or kept."""
    plan: dict[str, list[str]] = {"created": [], "changed": [], "unchanged": [], "deleted": [], "kept": []}
    for sub in subs:
        before = current.get(sub.id)
        if before is None:
            plan["created"].append(sub.id)
        elif json.loads(before) == json.loads(sub.to_json()):
            plan["unchanged"].append(sub.id)
        else:
            plan["changed"].append(sub.id)
    in_files = {sub.id for sub in subs}
    plan["deleted" if prune else "kept"] = sorted(set(current) - in_files)
    return plan


def list_all(args) -> int:
    current = asyncio.run(store.read_all(*_where()))
    if args.json:
        print(json.dumps([json.loads(value) for _, value in sorted(current.items())], indent=2, ensure_ascii=False))
        return 0
    print(f"{'id':<40} {'system':<32} {'kommuner':<10} event types")
    for sub_id, value in sorted(current.items()):
        sub = json.loads(value)
        kommuner = sub["kommuner"] if sub["kommuner"] == "all" else str(len(sub["kommuner"]))
        print(f"{sub_id:<40} {sub['system']['name'][:32]:<32} {kommuner:<10} {', '.join(sub['event_types'])}")
    return 0


def show_one(args) -> int:
    value = asyncio.run(store.read_all(*_where())).get(args.id)
    if value is None:
        print(f"samband: no subscription {args.id}", file=sys.stderr)
        return 1
    print(json.dumps(json.loads(value), indent=2, ensure_ascii=False))
    return 0


def set_paused(args) -> int:
    """Rewrite the subscription with `delivery.paused` set; the delivery stage holds or releases its events."""
    bootstrap, topic = _where()
    value = asyncio.run(store.read_all(bootstrap, topic)).get(args.id)
    if value is None:
        print(f"samband: no subscription {args.id}", file=sys.stderr)
        return 1
    sub = json.loads(value)
    if sub["delivery"].get("paused", False) == args.paused:
        print(f"{args.id} is already {'paused' if args.paused else 'active'}")
        return 0
    sub["delivery"]["paused"] = args.paused
    asyncio.run(store.write(bootstrap, topic, [(args.id, Subscription.model_validate(sub).to_json())]))
    asyncio.run(_audit([("pause" if args.paused else "resume", args.id)]))
    print(
        f"paused {args.id}: its events are kept until `samband subscriptions resume {args.id}`"
        if args.paused
        else f"resumed {args.id}: the events kept while it was paused go out first, in order"
    )
    return 0


def delete_one(args) -> int:
    bootstrap, topic = _where()
    if args.id not in asyncio.run(store.read_all(bootstrap, topic)):
        print(f"samband: no subscription {args.id}", file=sys.stderr)
        return 1
    asyncio.run(store.write(bootstrap, topic, [(args.id, None)]))
    asyncio.run(_audit([("delete", args.id)]))
    print(f"deleted {args.id}")
    return 0


def _valid(read: dict[str, bytes]) -> list[Subscription]:
    """The subscriptions read from the bus, as written (what depends on this process's settings, a
    folder or an allow-list only the worker has, is not checked). One that is not valid, or whose
    id is not its key, is skipped and said so, as the worker skips it."""
    found = []
    for sub_id, value in sorted(read.items()):
        try:
            sub = Subscription.model_validate_json(value, context=AS_WRITTEN)
        except ValidationError as exc:
            print(f"samband: {sub_id} is not a valid subscription, left out ({exc.error_count()} problem(s))")
            continue
        if sub.id != sub_id:
            print(f"samband: {sub_id} holds a subscription with another id, left out")
            continue
        found.append(sub)
    return found


def _detail(p: renumber.Rescoped) -> str:
    widened = f"; now also covers {', '.join(p.widened)}" if p.widened else ""
    return "; ".join(p.steps) + widened


def renumber_all(args) -> int:
    bootstrap, topic = _where()

    async def plan_and_write() -> list[renumber.Rescoped]:
        await store.ensure_topic(bootstrap, topic)
        read = await store.read_all(bootstrap, topic)
        planned = renumber.plan(_valid(read))
        changed = [p for p in planned if p.changed]
        if changed and not args.plan:
            # Written only if unchanged since the plan was made: a subscription paused, narrowed or
            # deleted meanwhile (through the API) is not put back as it was.
            now = await store.read_all(bootstrap, topic)
            moved = [p for p in changed if now.get(p.subscription.id) != read[p.subscription.id]]
            for p in moved:
                print(f"samband: {p.subscription.id} changed while the plan was made: left as it is; run again")
                changed.remove(p)
                p.kommuner = list(p.subscription.kommuner)
            # One write of every subscription, then one audit write: the reform is one operation.
            await store.write(bootstrap, topic, [(p.subscription.id, p.updated().to_json()) for p in changed])
            await _audit(
                [("renumber", p.subscription.id) for p in changed],
                {p.subscription.id: _detail(p) for p in changed},
            )
        return planned

    planned = asyncio.run(plan_and_write())
    for p in planned:
        print(f"{p.subscription.id}:")
        for step in p.steps:
            print(f"  {step}")
        if p.widened:
            print(f"  now also covers, merged into the same kommune: {', '.join(p.widened)}")
        for split in p.split:
            print(f"  {split}; left as it is: choose its kommuner by hand")
    if not planned:
        print("no subscription is scoped to a kommunenummer a reform retired")
        return 0
    changed = sum(p.changed for p in planned)
    held = sum(bool(p.split) for p in planned)
    verb = "would renumber" if args.plan else "renumbered"
    print(f"{verb} {changed} subscription(s)" + (f"; {held} with a split kommune to change by hand" if held else ""))
    if changed:
        print(
            "subscriptions kept as files (`samband subscriptions apply`): change the files too, or apply puts the old codes back"
        )
    return 0


def announce_reform(args) -> int:
    day = args.day or reform_days()[-1]
    try:
        record = renumbering_record(day)
    except ValueError as exc:
        print(f"samband: {exc}", file=sys.stderr)
        return 2
    bootstrap, topic = _where()
    deliveries_topic = topic_names(get_settings().app_id).deliveries

    async def plan_and_send() -> reference.Announcement | None:
        await store.ensure_topic(bootstrap, topic)
        planned = reference.renumbering_announcement(record, _valid(await store.read_all(bootstrap, topic)))
        if args.subscription is not None:
            planned = planned.only(args.subscription)
        if args.plan or not planned.recipients:
            return planned
        if not await partition_count(bootstrap, deliveries_topic):
            return None  # a write would have the broker make it, with its own partition count
        producer = clients.durable_producer(bootstrap)
        await producer.start()
        try:
            sent = [await producer.send(deliveries_topic, key=d.key, value=d.value) for d in planned.deliveries]
            outcomes = await asyncio.gather(*sent, return_exceptions=True)
        finally:
            await producer.stop()
        # What the broker acknowledged is audit-logged, even when the rest failed.
        acknowledged = [
            d.subscription
            for d, o in zip(planned.deliveries, outcomes, strict=True)
            if not isinstance(o, BaseException)
        ]
        detail = f"KommuneRenumbering {day.isoformat()}, event {planned.event_id}"
        await _audit([("announce", sub_id) for sub_id in acknowledged], dict.fromkeys(acknowledged, detail))
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            raise failed
        return planned

    planned = asyncio.run(plan_and_send())
    if planned is None:
        print(f"samband: the topic {deliveries_topic} does not exist yet: start a worker first", file=sys.stderr)
        return 1
    print(
        f"KommuneRenumbering {day.isoformat()}: {len(record['changes'])} kommunenumre retired (event {planned.event_id})"
    )
    for sub_id in planned.recipients:
        print(f"  {sub_id}")
    if not planned.recipients and args.subscription is not None:
        print(
            f"samband: {args.subscription} does not get it: no such subscription, not to KommuneRenumbering, "
            "or not scoped to a kommune of the reform",
            file=sys.stderr,
        )
        return 1
    if not planned.recipients:
        print("no subscription to KommuneRenumbering is national or scoped to a kommune of the reform: nothing sent")
        return 0
    verb = "would send it to" if args.plan else "sent it to"
    print(f"{verb} {len(planned.recipients)} subscription(s)")
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def backfill_one(args) -> int:
    settings = get_settings()
    bootstrap, topic = _where()
    names = topic_names(settings.app_id)
    if args.cancel == (args.since is not None):
        print("samband: give either --since DATE or --cancel", file=sys.stderr)
        return 2
    if args.cancel:  # also of a subscription deleted meanwhile
        running = args.id in asyncio.run(backfill.read_requests(bootstrap, names.backfills))
        asyncio.run(backfill.write_request(bootstrap, names.backfills, args.id, None))
        asyncio.run(_audit([("backfill-cancel", args.id)]))
        print(
            f"cancelled the backfill of {args.id}: the routers stop within a second (what they had written "
            "already is delivered)"
            if running
            else f"{args.id} had no backfill to cancel"
        )
        return 0
    value = asyncio.run(store.read_all(bootstrap, topic)).get(args.id)
    if value is None:
        print(f"samband: no subscription {args.id}", file=sys.stderr)
        return 1
    try:
        request = backfill.BackfillRequest.new(Subscription.model_validate_json(value), args.since, os_user())
    except ValueError as exc:
        print(f"samband: {exc}", file=sys.stderr)
        return 2
    asyncio.run(backfill.write_request(bootstrap, names.backfills, args.id, request.to_json()))
    asyncio.run(_audit([("backfill", args.id)], {args.id: f"since {args.since.isoformat()}"}))
    oldest = datetime.now(UTC).date() - timedelta(days=settings.events_retention_days)
    print(
        f"asked for a backfill of {args.id} since {args.since.isoformat()} ({request.id}); the events topic keeps "
        f"{settings.events_retention_days:g} days (SAMBAND_EVENTS_RETENTION_DAYS)"
        + (f": it reaches back to about {oldest.isoformat()}, not further" if args.since < oldest else "")
    )
    if args.no_wait:
        return 0
    return _watch(bootstrap, names, request)


NO_ROUTER_HINT_S = 30  # with no router begun by then, the watch says what may be wrong


def _watch(bootstrap: str, names, request: backfill.BackfillRequest) -> int:
    """A progress bar until every partition's router has finished (Ctrl-C stops the watching only)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    asked, hinted = time.monotonic(), False
    try:
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task("waiting for the routers", total=None)
            while True:
                found = asyncio.run(backfill.summaries(bootstrap, names))
                mine = next((s for s in found if s.request.id == request.id), None)
                if mine is None:
                    print("samband: the backfill was cancelled or replaced", file=sys.stderr)
                    return 1
                value = asyncio.run(store.read_all(bootstrap, names.subscriptions)).get(request.subscription)
                if (
                    value is None
                    or backfill.fingerprint(Subscription.model_validate_json(value)) != request.fingerprint
                ):
                    print(
                        f"samband: {request.subscription} was changed or deleted: its backfill stopped; ask again",
                        file=sys.stderr,
                    )
                    return 1
                if mine.begun:
                    # The total grows until every partition's router has begun: the bar says so.
                    description = f"{mine.finished}/{mine.partitions} partitions done"
                    bar.update(task, description=description, completed=mine.routed, total=mine.total)
                elif not hinted and time.monotonic() - asked > NO_ROUTER_HINT_S:
                    hinted = True
                    bar.console.print(f"no router has begun it after {NO_ROUTER_HINT_S} s: is a worker running?")
                if mine.done:
                    bar.update(task, completed=mine.total)
                    break
                time.sleep(1.0)  # polling the routers' progress for a person watching, not a test's wait
    except KeyboardInterrupt:
        print("stopped watching; the backfill goes on in the workers (`samband status` shows it)")
        return 130
    print(f"backfill of {mine.request.subscription} done: {mine.routed:,} events read again")
    return 0
