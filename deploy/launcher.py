"""Local Kafka for development and tests: one KRaft node (broker and controller in one JVM), or a
cluster of several such nodes (`Cluster`, `samband kafka up --brokers 3`).

The broker's jars come from Maven Central through `deploy/kafka/pom.xml` and are kept in a
per-user cache, so only the first start downloads anything. Pid file, log and data live under
one state directory (a cluster: one per node, `node-<n>/`, and `cluster.json` beside them). When
`KAFKA_BOOTSTRAP_SERVERS` is set, that cluster is used and nothing is started.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from deploy import secure

POM = Path(__file__).parent / "kafka" / "pom.xml"
LOG4J_CONFIG = Path(__file__).parent / "kafka" / "log4j.properties"
MAIN_CLASS = "kafka.Kafka"
CLUSTER_FILE = "cluster.json"  # in the state directory of a cluster: its node count and cluster id


class LauncherError(Exception):
    """The broker could not be fetched, started or stopped; the message says what to do."""


def kafka_version() -> str:
    """The Kafka version pinned in the pom (the one place it is written)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    return ET.parse(POM).getroot().findtext("m:properties/m:kafka.version", namespaces=ns)


def external_bootstrap_servers() -> str | None:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise LauncherError(f"{name}: expected a whole number, got {raw!r}") from None
    if not 1 <= value <= 65535:
        raise LauncherError(f"{name}: expected a port between 1 and 65535, got {value}")
    return value


@dataclass(frozen=True)
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    state_dir: Path = _xdg("XDG_STATE_HOME", ".local/state") / "samband" / "kafka"
    jar_cache: Path = _xdg("XDG_CACHE_HOME", ".cache") / "samband" / "kafka-jars"
    start_timeout: float = 90.0
    stop_timeout: float = 30.0
    # One node of a cluster (Cluster.node): its id, every controller (`id@host:port,...`), the
    # replication of the broker's own topics, and the JVM's heap.
    node_id: int = 1
    voters: str = ""
    replication: int = 1
    heap: str = "1g"
    # A secure set-up (`up --secure`, deploy/secure.py): its certificates, keys and passwords.
    secure_dir: Path | None = None
    # The address a secure node listens on when it is not `host`: in a container, every interface
    # ("0.0.0.0"), while clients are told `host` (the published port).
    bind: str = ""

    @classmethod
    def from_env(cls) -> BrokerConfig:
        """Settings from SAMBAND_KAFKA_HOST, _PORT, _CONTROLLER_PORT, _STATE_DIR, _JAR_CACHE."""
        defaults = cls()
        port = _env_int("SAMBAND_KAFKA_PORT", defaults.port)
        state_dir = Path(os.environ.get("SAMBAND_KAFKA_STATE_DIR") or defaults.state_dir)
        secure_dir = state_dir / "secure"
        return cls(
            host=os.environ.get("SAMBAND_KAFKA_HOST") or defaults.host,
            port=port,
            controller_port=_env_int("SAMBAND_KAFKA_CONTROLLER_PORT", port + 1),
            state_dir=state_dir,
            jar_cache=Path(os.environ.get("SAMBAND_KAFKA_JAR_CACHE") or defaults.jar_cache),
            secure_dir=secure_dir if secure_dir.is_dir() else None,  # made secure once, it stays secure
        )

    def made_secure(self) -> BrokerConfig:
        return replace(self, secure_dir=self.state_dir / "secure")

    @property
    def internal_port(self) -> int:
        """A secure node's listener between brokers, and for clients with a certificate (mTLS)."""
        return self.controller_port + 1

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.controller_port, *([self.internal_port] if self.secure_dir else []))

    @property
    def internal_bootstrap(self) -> str:
        """Where the launcher itself reaches the node: the client port, or on a secure node the
        INTERNAL listener, as the brokers' own principal."""
        return f"{self.host}:{self.internal_port}" if self.secure_dir else self.bootstrap_servers

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "broker.log"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def jar_dir(self) -> Path:
        return self.jar_cache / kafka_version()


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap_servers: str
    external: bool = False

    def describe(self) -> str:
        if self.external:
            return f"using the existing cluster at {self.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS); nothing started"
        if self.running:
            return f"broker running: pid {self.pid}, bootstrap {self.bootstrap_servers}"
        return f"broker not running (would listen on {self.bootstrap_servers})"


def _require(tool: str, install_hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise LauncherError(f"{tool} not found: install {install_hint}")
    return path


def ensure_jars(config: BrokerConfig) -> Path:
    """The broker's jars, resolved with Maven into the per-user cache on first use only."""
    jar_dir = config.jar_dir
    if (jar_dir / ".complete").exists():
        return jar_dir
    mvn = _require("mvn", "Maven (e.g. `apt-get install maven`) to fetch the Kafka jars")
    jar_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=jar_dir.parent))
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise LauncherError(f"Maven could not resolve the Kafka {kafka_version()} jars:\n{tail}")
    (staging / ".complete").touch()
    shutil.rmtree(jar_dir, ignore_errors=True)
    staging.rename(jar_dir)  # atomic: a half-filled cache is never taken for a complete one
    return jar_dir


def _pid_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return MAIN_CLASS.encode() in cmdline.split(b"\0")


def _read_pid(config: BrokerConfig) -> int | None:
    try:
        return int(config.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _running_pid(config: BrokerConfig) -> int | None:
    """Pid of our broker, or None; a stale pid file is removed."""
    pid = _read_pid(config)
    if pid is not None and _pid_alive(pid):
        return pid
    config.pid_file.unlink(missing_ok=True)
    return None


def status(config: BrokerConfig) -> BrokerStatus:
    if external := external_bootstrap_servers():
        return BrokerStatus(True, None, external, external=True)
    pid = _running_pid(config)
    return BrokerStatus(pid is not None, pid, config.bootstrap_servers)


def log_tail(config: BrokerConfig, lines: int = 30, *, without_stack_frames: bool = False) -> str:
    try:
        with config.log_file.open(errors="replace") as log:
            kept = (line for line in log if not (without_stack_frames and line.lstrip().startswith("at ")))
            return "".join(deque(kept, maxlen=lines))
    except FileNotFoundError:
        return "(no broker log yet)\n"


def _listeners(config: BrokerConfig) -> list[str]:
    if config.secure_dir is not None:
        material = secure.Material(config.secure_dir)
        return secure.server_properties(
            material, config.host, config.port, config.controller_port, config.internal_port, config.bind
        )
    return [
        f"listeners=PLAINTEXT://{config.host}:{config.port},CONTROLLER://{config.host}:{config.controller_port}",
        f"advertised.listeners=PLAINTEXT://{config.host}:{config.port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    ]


def _server_properties(config: BrokerConfig) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={config.node_id}",
            f"controller.quorum.voters={config.voters or f'1@{config.host}:{config.controller_port}'}",
            *_listeners(config),
            f"log.dirs={config.data_dir}",
            "num.partitions=4",
            # Topics made without the bus (auto-created, a test's own) get every replica the cluster can
            # give, three at most. The bus sets replication and min.insync.replicas on each of its own
            # topics (bus/topics.py Layout); the broker's min.insync.replicas stays 1 for the others.
            f"default.replication.factor={config.replication}",
            f"offsets.topic.replication.factor={config.replication}",
            f"transaction.state.log.replication.factor={config.replication}",
            f"transaction.state.log.min.isr={2 if config.replication >= 3 else 1}",
            # Local: no reason to wait for more group members to join.
            "group.initial.rebalance.delay.ms=0",
            # A secure set-up is made like production: a topic exists only when the bus made it.
            f"auto.create.topics.enable={'false' if config.secure_dir else 'true'}",
            "delete.topic.enable=true",
            "",
        ]
    )


def _java_command(config: BrokerConfig, jar_dir: Path, main: str, *args: str) -> list[str]:
    java = _require("java", "Java 17 (e.g. `apt-get install openjdk-17-jre-headless`) to run the broker")
    return [
        java,
        "-Xms128m",
        f"-Xmx{config.heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={config.state_dir}",
        "-cp",
        f"{jar_dir}/*",
        main,
        *args,
    ]


def _new_cluster_id() -> str:
    # Kafka's Uuid text form: URL-safe base64 of 16 bytes, without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _format_storage(config: BrokerConfig, jar_dir: Path, properties: Path, cluster_id: str | None = None) -> None:
    command = _java_command(
        config,
        jar_dir,
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={cluster_id or _new_cluster_id()}",
        f"--config={properties}",
    )
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise LauncherError(f"formatting the broker's storage failed:\n{result.stdout}{result.stderr}")


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


async def _answers_metadata(bootstrap_servers: str, brokers: int = 1, secure_dir: Path | None = None) -> bool:
    """True when a broker at the address answers a metadata request listing at least `brokers` brokers
    (a secure node is asked on its INTERNAL listener, with the brokers' own certificate)."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaError
    from aiokafka.helpers import create_ssl_context

    options: dict = {}
    if secure_dir is not None:
        context = create_ssl_context(
            cafile=str(secure_dir / "ca.pem"),
            certfile=str(secure_dir / "broker.pem"),
            keyfile=str(secure_dir / "broker.key"),
        )
        options = {"security_protocol": "SSL", "ssl_context": context}
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=3000, **options)
    try:
        await client.bootstrap()
        return len(client.cluster.brokers()) >= brokers
    except (KafkaError, OSError):
        return False
    finally:
        await client.close()


def wait_until_ready(
    bootstrap_servers: str,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    brokers: int = 1,
    secure_dir: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    client_log = logging.getLogger("aiokafka")
    was_disabled, client_log.disabled = client_log.disabled, True  # refused connects are expected while it boots
    try:
        while time.monotonic() < deadline:
            if not alive():
                raise LauncherError("the broker exited during start")
            if asyncio.run(_answers_metadata(bootstrap_servers, brokers, secure_dir)):
                return
            time.sleep(0.25)
    finally:
        client_log.disabled = was_disabled
    raise LauncherError(f"the broker at {bootstrap_servers} did not answer a metadata request within {timeout:.0f} s")


def _start_node(node: BrokerConfig, jar_dir: Path, cluster_id: str | None = None) -> subprocess.Popen:
    """Start one node's JVM on its state (formatted first, with `cluster_id` for a cluster's node)."""
    node.state_dir.mkdir(parents=True, exist_ok=True)
    properties = node.state_dir / "server.properties"
    properties.write_text(_server_properties(node))
    if not (node.data_dir / "meta.properties").exists():
        _format_storage(node, jar_dir, properties, cluster_id)
    with node.log_file.open("ab") as log:
        process = subprocess.Popen(
            _java_command(node, jar_dir, MAIN_CLASS, str(properties)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal must not kill the broker mid-write
        )
    node.pid_file.write_text(f"{process.pid}\n")
    return process


def secured(config: BrokerConfig) -> BrokerConfig:
    """The config of a secure set-up in the config's state directory, its certificates and passwords
    made on first use (deploy/secure.py). A state started without --secure stays as it is."""
    if config.secure_dir is not None:
        return config
    if any(config.state_dir.glob("**/meta.properties")):
        raise LauncherError(
            f"{config.state_dir} holds a broker started without --secure: `samband kafka down` it and "
            "choose another SAMBAND_KAFKA_STATE_DIR for the secure one"
        )
    made = config.made_secure()
    assert made.secure_dir is not None
    # The brokers' data on disk is readable without any ACL: only the owner may enter the state folder.
    config.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.state_dir, 0o700)
    staging = made.secure_dir.with_name(".secure-staging")
    shutil.rmtree(staging, ignore_errors=True)
    secure.Material(staging).create([config.host])
    staging.rename(made.secure_dir)  # a half-made set-up is never taken for a whole one
    return made


# Compose's `kafka-secure` service (deploy/compose.yaml, profile `secure`) mounts the secure folder here
# and keeps its data in the image's data folder.
CONTAINER_SECURE_DIR = Path("/etc/samband-secure")
CONTAINER_PROPERTIES = "container-server.properties"  # in the secure folder
CONTAINER_CLUSTER_ID_FILE = "container-cluster-id"


def container_files(config: BrokerConfig) -> BrokerConfig:
    """The files of a secure broker run by compose instead of the launcher: the secure set-up's
    certificates and passwords (made as for `up --secure`, kept after), and beside them the
    container's server.properties (the same as the launcher's, its paths those of the mount,
    listening on every interface of the container) and its cluster id. Returns the secured config."""
    made = secured(config)
    assert made.secure_dir is not None
    in_container = replace(
        made, bind="0.0.0.0", secure_dir=CONTAINER_SECURE_DIR, state_dir=Path("/var/lib/kafka")
    )  # data: /var/lib/kafka/data, the image's data volume
    (made.secure_dir / CONTAINER_PROPERTIES).write_text(_server_properties(in_container))
    cluster_id = made.secure_dir / CONTAINER_CLUSTER_ID_FILE
    if not cluster_id.exists():
        cluster_id.write_text(_new_cluster_id() + "\n")
    return made


def up(config: BrokerConfig) -> BrokerStatus:
    """Start the broker and return once it answers; a no-op when it already runs."""
    if external_bootstrap_servers():
        return status(config)
    if pid := _running_pid(config):
        wait_until_ready(config.internal_bootstrap, config.start_timeout, lambda: _pid_alive(pid), 1, config.secure_dir)
        return BrokerStatus(True, pid, config.bootstrap_servers)
    for port in config.ports:
        if _port_taken(config.host, port):
            raise LauncherError(
                f"port {port} on {config.host} is in use by another process; "
                "stop it or choose other ports with SAMBAND_KAFKA_PORT / SAMBAND_KAFKA_CONTROLLER_PORT"
            )
    process = _start_node(config, ensure_jars(config))
    try:
        # Our own child: poll() is exact even before the JVM has replaced the forked process image.
        wait_until_ready(
            config.internal_bootstrap, config.start_timeout, lambda: process.poll() is None, 1, config.secure_dir
        )
    except LauncherError as exc:
        _stop_process(process.pid, config.stop_timeout)
        config.pid_file.unlink(missing_ok=True)
        tail = log_tail(config, 15, without_stack_frames=True)
        raise LauncherError(f"{exc}. Last lines of {config.log_file} (stack frames left out):\n{tail}") from None
    return BrokerStatus(True, process.pid, config.bootstrap_servers)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Reap it if it is our child, so it does not linger as a zombie.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def _stop_process(pid: int, timeout: float) -> None:
    """SIGTERM (the broker then shuts down cleanly), SIGKILL after the timeout."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, wait):
            return
    raise LauncherError(f"broker pid {pid} survived SIGKILL")


def kill(config: BrokerConfig) -> bool:
    """kill -9 the broker, as a crash would (the fault runs); True when one was running. `up` starts
    it again on the same state, which the broker then recovers."""
    if external_bootstrap_servers():
        return False
    pid = _running_pid(config)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10.0):
        raise LauncherError(f"broker pid {pid} survived SIGKILL")
    config.pid_file.unlink(missing_ok=True)
    return True


def down(config: BrokerConfig) -> bool:
    """Stop the broker; True when one was running. Leaves no Java process behind."""
    if external_bootstrap_servers():
        return False
    pid = _running_pid(config)
    if pid is None:
        return False
    _stop_process(pid, config.stop_timeout)
    config.pid_file.unlink(missing_ok=True)
    return True


# --- a cluster of nodes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """`brokers` KRaft nodes, each broker and controller: node n listens on `base.port + 2(n-1)` and
    its controller on the port after it (a secure cluster: `base.port + 3(n-1)`, the controller,
    then the INTERNAL listener), with state in `base.state_dir/node-<n>`. The broker's own
    topics, and new topics by default, are replicated 3 times (or on every node, when fewer)."""

    base: BrokerConfig
    brokers: int

    def node(self, n: int) -> BrokerConfig:
        if not 1 <= n <= self.brokers:
            raise LauncherError(f"node {n}: the cluster has nodes 1 to {self.brokers}")
        step = 3 if self.base.secure_dir else 2
        port = self.base.port + step * (n - 1)
        voters = ",".join(f"{i}@{self.base.host}:{self.base.port + step * (i - 1) + 1}" for i in self.nodes)
        return replace(
            self.base,
            port=port,
            controller_port=port + 1,
            state_dir=self.base.state_dir / f"node-{n}",
            node_id=n,
            voters=voters,
            replication=min(3, self.brokers),
            heap="512m",  # three of them beside the suite on a 2-core machine
        )

    @property
    def nodes(self) -> range:
        return range(1, self.brokers + 1)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(self.node(n).bootstrap_servers for n in self.nodes)

    @property
    def internal_bootstrap(self) -> str:
        return ",".join(self.node(n).internal_bootstrap for n in self.nodes)

    @property
    def marker(self) -> Path:
        return self.base.state_dir / CLUSTER_FILE


def cluster_of(config: BrokerConfig) -> Cluster | None:
    """The cluster whose state is in the config's state directory, if one was started there."""
    try:
        return Cluster(config, int(json.loads((config.state_dir / CLUSTER_FILE).read_text())["brokers"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def up_cluster(cluster: Cluster) -> list[BrokerStatus]:
    """Start every node that is not running; return once the cluster lists all of them."""
    if external_bootstrap_servers():
        raise LauncherError("KAFKA_BOOTSTRAP_SERVERS is set: that cluster is used, and none is started")
    kept = cluster_of(cluster.base)
    if kept is not None and kept != cluster:
        raise LauncherError(
            f"{cluster.base.state_dir} holds a cluster of {kept.brokers} nodes: "
            "`samband kafka down` it first, or choose another SAMBAND_KAFKA_STATE_DIR"
        )
    if cluster.brokers > 1 and _running_pid(cluster.base) is not None:
        raise LauncherError(f"a single broker runs on {cluster.base.state_dir}: `samband kafka down` it first")
    jar_dir = ensure_jars(cluster.base)
    cluster.base.state_dir.mkdir(parents=True, exist_ok=True)
    if kept is None:
        cluster.marker.write_text(json.dumps({"brokers": cluster.brokers, "cluster_id": _new_cluster_id()}))
    cluster_id = json.loads(cluster.marker.read_text())["cluster_id"]
    started: list[subprocess.Popen] = []
    for n in cluster.nodes:
        node = cluster.node(n)
        if _running_pid(node) is not None:
            continue
        for port in node.ports:
            if _port_taken(node.host, port):
                raise LauncherError(f"port {port} on {node.host} is in use: choose another SAMBAND_KAFKA_PORT")
        started.append(_start_node(node, jar_dir, cluster_id))
    try:  # a quorum needs a majority of the controllers: all start, then all are waited for
        wait_until_ready(
            cluster.internal_bootstrap,
            cluster.base.start_timeout,
            lambda: all(process.poll() is None for process in started),
            brokers=cluster.brokers,
            secure_dir=cluster.base.secure_dir,
        )
    except LauncherError as exc:
        down_cluster(cluster)
        raise LauncherError(f"{exc}; the nodes' logs are in {cluster.base.state_dir}/node-*/broker.log") from None
    return status_cluster(cluster)


def start_node(cluster: Cluster, n: int) -> BrokerStatus:
    """Start one node again (after `kill_node`), on its state; return once the cluster lists it."""
    node = cluster.node(n)
    if _running_pid(node) is None:
        cluster_id = json.loads(cluster.marker.read_text())["cluster_id"]
        process = _start_node(node, ensure_jars(node), cluster_id)
        wait_until_ready(
            cluster.internal_bootstrap,
            node.start_timeout,
            lambda: process.poll() is None,
            brokers=cluster.brokers,
            secure_dir=node.secure_dir,
        )
    return status(node)


def kill_node(cluster: Cluster, n: int) -> bool:
    """kill -9 one node, as a crash would; True when it was running."""
    return kill(cluster.node(n))


def stop_node(cluster: Cluster, n: int) -> bool:
    """Stop one node gracefully (its leaderships move first), as a rolling restart does; True when it was running."""
    return down(cluster.node(n))


def status_cluster(cluster: Cluster) -> list[BrokerStatus]:
    return [status(cluster.node(n)) for n in cluster.nodes]


def down_cluster(cluster: Cluster) -> int:
    """Stop every node; the number that were running. The cluster's state stays for the next `up`."""
    return sum(down(cluster.node(n)) for n in cluster.nodes)
