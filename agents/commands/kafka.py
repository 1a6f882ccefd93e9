"""`samband kafka up | down | status | logs | kill | stop | start | env | add-subscriber |
remove-subscriber`: the local development broker, or a local cluster of several nodes
(`up --brokers 3`), plain or secure (`up --secure`; deploy/launcher.py, deploy/secure.py)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

from agents.cli import UsageError
from agents.config import get_settings
from deploy import launcher, secure


def _cluster() -> launcher.Cluster | None:
    return launcher.cluster_of(launcher.BrokerConfig.from_env())


def _up(args: argparse.Namespace) -> int:
    config = launcher.BrokerConfig.from_env()
    started = time.monotonic()
    if args.secure:
        config = launcher.secured(config)
    existing = launcher.cluster_of(config)
    if args.brokers > 1 or existing is not None:
        if existing is not None and args.brokers not in (1, existing.brokers):
            raise UsageError(f"a cluster of {existing.brokers} nodes is kept in {config.state_dir}; `down` it first")
        cluster = existing or launcher.Cluster(config, args.brokers)
        states = launcher.up_cluster(cluster)
        _grant_roles(config, cluster.internal_bootstrap)
        print(
            f"up in {time.monotonic() - started:.1f} s: {cluster.brokers} nodes, bootstrap {cluster.bootstrap_servers}"
        )
        for n, state in zip(cluster.nodes, states, strict=True):
            print(f"  node {n}: {state.describe()}")
        return 0
    before = launcher.status(config)
    state = launcher.up(config)
    _grant_roles(config, config.internal_bootstrap)
    if before.running:
        print(f"already up: {state.describe()}")
    else:
        print(f"started in {time.monotonic() - started:.1f} s: {state.describe()}")
    return 0


def _grant_roles(config: launcher.BrokerConfig, internal_bootstrap: str, again: bool = False) -> None:
    """On a secure set-up's first start (or `again`): the worker's, connectors' and operator's
    users and ACLs, for this app id (SAMBAND_APP_ID) and subscriber topic prefix."""
    if config.secure_dir is None or (secure.Material(config.secure_dir).grants_file.exists() and not again):
        return
    settings = get_settings()
    secure.grant_roles(
        secure.Material(config.secure_dir), internal_bootstrap, settings.app_id, settings.subscriber_topic_prefix
    )


def _secure_files(args: argparse.Namespace) -> int:
    config = launcher.BrokerConfig.from_env()
    if launcher.cluster_of(config) is not None:
        raise UsageError(f"{config.state_dir} holds a cluster: choose another SAMBAND_KAFKA_STATE_DIR for compose's")
    made = launcher.container_files(config)
    state = f"SAMBAND_KAFKA_STATE_DIR={config.state_dir} "  # what the later commands need to find the files
    print(
        f"made in {made.secure_dir}: a CA, the broker's certificate, the principals' passwords and certificates, "
        "and the container's server.properties. Start the broker with\n"
        f"  SAMBAND_UID=$(id -u) SAMBAND_KAFKA_SECURE_FILES={made.secure_dir} SAMBAND_KAFKA_PORT={made.port} "
        f"SAMBAND_KAFKA_INTERNAL_PORT={made.internal_port} docker compose -f deploy/compose.yaml --profile secure "
        "up -d kafka-secure\n"
        f"then make its users and ACLs:\n  {state}samband kafka grant\n"
        f'and sign in:\n  eval "$({state}samband kafka env worker)"'
    )
    return 0


def _grant(args: argparse.Namespace) -> int:
    _, config, cluster = _secure_material()
    place = cluster or config
    launcher.wait_until_ready(place.internal_bootstrap, config.start_timeout, secure_dir=config.secure_dir)
    _grant_roles(config, place.internal_bootstrap, again=True)
    print(f"users and ACLs made for {', '.join(secure.ROLES)} (app id {get_settings().app_id})")
    return 0


def _secure_material() -> tuple[secure.Material, launcher.BrokerConfig, launcher.Cluster | None]:
    config = launcher.BrokerConfig.from_env()
    if config.secure_dir is None or launcher.external_bootstrap_servers():
        raise UsageError("no secure set-up is kept here: start one with `samband kafka up --secure`")
    return secure.Material(config.secure_dir), config, launcher.cluster_of(config)


def _env(args: argparse.Namespace) -> int:
    material, config, cluster = _secure_material()
    if not material.password_file(args.principal).exists():
        raise UsageError(
            f"no principal {args.principal!r}: the roles are {', '.join(secure.ROLES)}, and Kafka subscribers "
            "get theirs with `samband kafka add-subscriber ID`"
        )
    place = cluster or config
    settings = secure.client_settings(
        material,
        args.principal,
        place.bootstrap_servers,
        mtls_bootstrap=place.internal_bootstrap if args.mtls else "",
    )
    print("\n".join(f"export {name}={value}" for name, value in settings.items()))
    return 0


def _add_subscriber(args: argparse.Namespace) -> int:
    material, config, cluster = _secure_material()
    principal = secure.add_subscriber(material, (cluster or config).internal_bootstrap, args.subscription_id)
    print(f"principal {principal}: reads its own topic only; its settings: `samband kafka env {principal}`")
    return 0


def _remove_subscriber(args: argparse.Namespace) -> int:
    material, config, cluster = _secure_material()
    principal = secure.remove_subscriber(material, (cluster or config).internal_bootstrap, args.subscription_id)
    print(f"principal {principal} revoked: its ACLs, SCRAM user, credentials and topic are gone")
    return 0


def _down(args: argparse.Namespace) -> int:
    config = launcher.BrokerConfig.from_env()
    if launcher.external_bootstrap_servers():
        print("KAFKA_BOOTSTRAP_SERVERS is set: that cluster is not ours to stop")
    elif (cluster := launcher.cluster_of(config)) is not None:
        print(f"{launcher.down_cluster(cluster)} of {cluster.brokers} nodes stopped")
    elif launcher.down(config):
        print("broker stopped")
    else:
        print("broker was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster = _cluster()
    if cluster is not None and not launcher.external_bootstrap_servers():
        states = launcher.status_cluster(cluster)
        if args.json:
            print(json.dumps({"brokers": cluster.brokers, "nodes": [asdict(s) for s in states]}))
        else:
            for n, state in zip(cluster.nodes, states, strict=True):
                print(f"node {n}: {state.describe()}")
        return 0 if all(s.running for s in states) else 1
    state = launcher.status(launcher.BrokerConfig.from_env())
    print(json.dumps(asdict(state)) if args.json else state.describe())
    return 0 if state.running else 1


def _node(args: argparse.Namespace) -> launcher.BrokerConfig:
    cluster = _cluster()
    if args.node is None:
        return cluster.node(1) if cluster is not None else launcher.BrokerConfig.from_env()
    if cluster is None:
        raise UsageError("--node is for a cluster (`samband kafka up --brokers 3`); none is kept here")
    return cluster.node(args.node)


def _logs(args: argparse.Namespace) -> int:
    print(launcher.log_tail(_node(args), args.lines), end="")
    return 0


def _one_node(args: argparse.Namespace) -> launcher.Cluster:
    cluster = _cluster()
    if cluster is None or launcher.external_bootstrap_servers():
        raise UsageError("kill, stop and start act on one node of a local cluster (`samband kafka up --brokers 3`)")
    cluster.node(args.node)  # a number outside the cluster is refused here, in its own words
    return cluster


def _kill(args: argparse.Namespace) -> int:
    cluster = _one_node(args)
    print(f"node {args.node} killed" if launcher.kill_node(cluster, args.node) else f"node {args.node} was not running")
    return 0


def _stop(args: argparse.Namespace) -> int:
    cluster = _one_node(args)
    print(
        f"node {args.node} stopped" if launcher.stop_node(cluster, args.node) else f"node {args.node} was not running"
    )
    return 0


def _start(args: argparse.Namespace) -> int:
    cluster = _one_node(args)
    print(f"node {args.node}: {launcher.start_node(cluster, args.node).describe()}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    kafka = subparsers.add_parser(
        "kafka",
        help="start, stop and inspect the local Kafka broker or cluster",
        description="The local KRaft broker, or a cluster of several nodes (`up --brokers 3`), plain or "
        "secure (`up --secure`: TLS, SCRAM users, ACLs; docs/deploy.md). Settings: SAMBAND_KAFKA_HOST, "
        "SAMBAND_KAFKA_PORT (a cluster's node n listens on it + 2(n-1), its controller on the port after; "
        "secure: + 3(n-1), then the controller and the INTERNAL listener), SAMBAND_KAFKA_CONTROLLER_PORT, "
        "SAMBAND_KAFKA_STATE_DIR, SAMBAND_KAFKA_JAR_CACHE. With KAFKA_BOOTSTRAP_SERVERS set, that cluster is "
        "used and nothing is started.",
    )
    actions = kafka.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start the broker or cluster (no-op when running); returns once it answers")
    up.add_argument("--brokers", type=int, default=1, choices=range(1, 10), metavar="N", help="nodes (default 1)")
    up.add_argument(
        "--secure",
        action="store_true",
        help="TLS, SASL SCRAM-SHA-512 and ACLs: a CA and certificates, users for the worker, connectors and "
        "a read-only operator, kept in the state folder (docs/deploy.md, Security); it stays secure after",
    )
    up.set_defaults(handler=_up)
    actions.add_parser("down", help="stop the broker or every node, gracefully, forcibly after a timeout").set_defaults(
        handler=_down
    )
    status = actions.add_parser("status", help="is the broker (every node) running (exit 1 when not)")
    status.add_argument("--json", action="store_true", help="running, pid, bootstrap_servers, external")
    status.set_defaults(handler=_status)
    logs = actions.add_parser("logs", help="the last lines of the broker log (a cluster: of one node)")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("--node", type=int, help="which node of a cluster (default 1)")
    logs.set_defaults(handler=_logs)
    kill = actions.add_parser("kill", help="kill -9 one node of a cluster, as a crash would (fault tests)")
    kill.add_argument("--node", type=int, required=True)
    kill.set_defaults(handler=_kill)
    stop = actions.add_parser("stop", help="stop one node of a cluster gracefully (a rolling restart's step)")
    stop.add_argument("--node", type=int, required=True, help="its number, 1 to the cluster's size")
    stop.set_defaults(handler=_stop)
    start = actions.add_parser("start", help="start one node of a cluster again, on its state")
    start.add_argument("--node", type=int, required=True)
    start.set_defaults(handler=_start)
    files = actions.add_parser(
        "secure-files",
        help="the files of a secure broker that compose runs (`--profile secure`): certificates, passwords, "
        "server.properties",
        description="Makes what `up --secure` makes in the state folder (a CA, the broker's certificate, a password "
        "and a client certificate per principal) and the server.properties of compose's `kafka-secure` service, "
        "which mounts that folder. Prints the compose command; then run `samband kafka grant`.",
    )
    files.set_defaults(handler=_secure_files)
    grant = actions.add_parser(
        "grant",
        help="make the SCRAM users and ACLs of the worker, connector and operator on the secure broker "
        "(after `secure-files` and compose; `up --secure` does it itself)",
    )
    grant.set_defaults(handler=_grant)
    env = actions.add_parser(
        "env", help="the SAMBAND_KAFKA_* settings with which a principal reaches the secure set-up (shell exports)"
    )
    env.add_argument("principal", help="worker, connector, operator, or a subscriber's subscriber-<id>")
    env.add_argument("--mtls", action="store_true", help="its client certificate instead of its password")
    env.set_defaults(handler=_env)
    add = actions.add_parser(
        "add-subscriber",
        help="a principal for one Kafka subscriber of the local secure set-up: it may read its own topic",
        description="Makes the SCRAM user and certificate `subscriber-<id>` on the local secure set-up "
        "(`up --secure`), with read access to its topic (SAMBAND_SUBSCRIBER_TOPIC_PREFIX + id) and consumer "
        "groups named `<its topic>.<anything>`. New credentials each time. On a real cluster the platform makes "
        "users (docs/deploy.md).",
    )
    add.add_argument("subscription_id", help="the Kafka subscription's id (lower-case letters, digits, '-')")
    add.set_defaults(handler=_add_subscriber)
    remove = actions.add_parser(
        "remove-subscriber", help="revoke a Kafka subscriber's principal: ACLs, SCRAM user, credentials, topic"
    )
    remove.add_argument("subscription_id", help="delete the subscription first, or the worker makes its topic again")
    remove.set_defaults(handler=_remove_subscriber)
