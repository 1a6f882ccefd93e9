"""`samband trace EVENT_ID`: which systems got this event, when, after how many attempts.

    samband trace EVENT_ID [--json]

Follows one event from Kafka alone (agents/event_trace.py): ingested, routed to which
subscriptions, each delivery with its attempts, dead letters. Prints ids, times, counts and
reason codes, never the event's data. Exit 0 when the event was found, 1 when the bus has no
trace of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from agents.config import bootstrap_servers, get_settings


def _trace(args: argparse.Namespace) -> int:
    from agents.event_trace import format_trace, trace_event

    trace = asyncio.run(trace_event(bootstrap_servers(), get_settings().app_id, args.event_id))
    print(json.dumps(trace.as_json(), indent=2) if args.json else format_trace(trace))
    return 0 if trace.found else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="follow one event: ingested, routed, delivered, retried, dead-lettered",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("event_id", help="the event's id (CloudEvents id / envelope id)")
    parser.add_argument("--json", action="store_true", help="JSON for scripts")
    parser.set_defaults(handler=_trace)
