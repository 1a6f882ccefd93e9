"""A secure local broker or cluster (`samband kafka up --secure`): TLS everywhere, SASL SCRAM-SHA-512
users and ACLs for each principal, as a production cluster would have them (docs/deploy.md, "Security").

Everything lives in `<state dir>/secure/` (mode 0700): a certificate authority made here, the
brokers' certificate, and for each principal a password file and a client certificate (CN = the
principal's name). Each node has three listeners:

    SASL_SSL   port       clients: SCRAM-SHA-512 user name and password, over TLS
    CONTROLLER port + 1   the KRaft quorum: TLS, the brokers' certificate required
    INTERNAL   port + 2   between brokers, and clients with a certificate (mTLS): TLS, certificate required

The principal of a client certificate is its CN (`CN=worker` is `User:worker`), so one principal
has the same ACLs whichever way it signs in. The brokers' certificate (`samband-broker`) is the
only super user; the launcher uses it to make users and ACLs. Nothing is granted that a
principal's role does not need, and an unknown principal is refused everything.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

BROKER_PRINCIPAL = "samband-broker"
ROLES = ("worker", "connector", "operator")  # the principals every secure set-up has
SUBSCRIBER_USER_PREFIX = "subscriber-"  # + subscription id: a Kafka subscriber's principal
SUBSCRIPTION_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")  # as agents/subscriptions/model.py has it
# What the read-only operator may read: nothing in them names a person or their data.
OPERATOR_READS = ("deadletter", "delivery-outcomes", "delivery-ledger", "delivery-status", "alerts", "audit",
                  "backfills", "router-backfill")  # fmt: skip


class SecureSetupError(Exception):
    """Certificates, users or ACLs could not be made; the message says what to do."""


@dataclass(frozen=True)
class Material:
    """The files of a secure set-up, in one folder."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def broker_keystore(self) -> Path:
        """The brokers' private key and certificate in one PEM file, as Kafka's PEM keystore takes them."""
        return self.folder / "broker-keystore.pem"

    def password_file(self, principal: str) -> Path:
        return self.folder / "users" / f"{principal}.password"

    def certificate(self, principal: str) -> Path:
        return self.folder / "users" / f"{principal}.pem"

    def key(self, principal: str) -> Path:
        return self.folder / "users" / f"{principal}.key"

    @property
    def grants_file(self) -> Path:
        """The app id and subscriber topic prefix the ACLs were made for."""
        return self.folder / "grants.json"

    def exists(self) -> bool:
        return self.broker_keystore.exists() and self.ca.exists()

    def create(self, hosts: list[str]) -> None:
        """A CA, the brokers' certificate (valid for `hosts`), and a client certificate and password per role."""
        (self.folder / "users").mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        ca_key = self.folder / "ca.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=samband-local-ca",
                 "-keyout", str(ca_key), "-out", str(self.ca))  # fmt: skip
        names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
        broker_key, broker_cert = self.folder / "broker.key", self.folder / "broker.pem"
        self._sign(BROKER_PRINCIPAL, broker_key, broker_cert, f"subjectAltName={names},DNS:localhost")
        self.broker_keystore.write_text(broker_key.read_text() + broker_cert.read_text())
        os.chmod(self.broker_keystore, 0o600)
        for role in ROLES:
            self.add_principal(role)

    def remove_principal(self, principal: str) -> None:
        for path in (self.password_file(principal), self.certificate(principal), self.key(principal)):
            path.unlink(missing_ok=True)

    def add_principal(self, principal: str) -> None:
        """A password file and a client certificate for `principal` (made once; kept after)."""
        password = self.password_file(principal)
        if not password.exists():
            password.write_text(secrets.token_urlsafe(24) + "\n")
            os.chmod(password, 0o600)
        if not self.certificate(principal).exists():
            self._sign(principal, self.key(principal), self.certificate(principal), "extendedKeyUsage=clientAuth")

    def _sign(self, common_name: str, key: Path, cert: Path, extension: str) -> None:
        request = key.with_suffix(".csr")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={common_name}",
                 "-keyout", str(key), "-out", str(request))  # fmt: skip
        os.chmod(key, 0o600)
        extensions = key.with_suffix(".ext")
        extensions.write_text(extension + "\n")
        _openssl("x509", "-req", "-in", str(request), "-CA", str(self.ca), "-CAkey", str(self.folder / "ca.key"),
                 "-CAcreateserial", "-days", "825", "-extfile", str(extensions), "-out", str(cert))  # fmt: skip
        request.unlink()
        extensions.unlink()


def _openssl(*args: str) -> None:
    try:
        result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise SecureSetupError("openssl not found: install it (e.g. `apt-get install openssl`)") from None
    if result.returncode != 0:
        raise SecureSetupError(f"openssl {args[0]} failed: {result.stderr.strip()[-400:]}")


def server_properties(
    material: Material, host: str, port: int, controller_port: int, internal_port: int, bind: str = ""
) -> list[str]:
    """The lines of a node's server.properties that make it secure; it listens on `bind` (else `host`)."""
    store = [
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={material.broker_keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={material.ca}",
    ]
    return [
        f"listeners=SASL_SSL://{bind or host}:{port},CONTROLLER://{bind or host}:{controller_port},"
        f"INTERNAL://{bind or host}:{internal_port}",
        f"advertised.listeners=SASL_SSL://{host}:{port},INTERNAL://{host}:{internal_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=INTERNAL",
        "listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL,INTERNAL:SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        # The brokers check SCRAM passwords against the users kept in the cluster's metadata.
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        *store,
        "listener.name.controller.ssl.client.auth=required",
        "listener.name.internal.ssl.client.auth=required",
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{BROKER_PRINCIPAL}",
        "allow.everyone.if.no.acl.found=false",
    ]


def client_settings(material: Material, principal: str, bootstrap: str, *, mtls_bootstrap: str = "") -> dict[str, str]:
    """The SAMBAND_KAFKA_* settings with which `principal` reaches the set-up: SCRAM over TLS, or,
    given the INTERNAL listeners' addresses, its client certificate (mTLS)."""
    if mtls_bootstrap:
        return {
            "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": mtls_bootstrap,
            "SAMBAND_KAFKA_SECURITY_PROTOCOL": "SSL",
            "SAMBAND_KAFKA_SSL_CAFILE": str(material.ca),
            "SAMBAND_KAFKA_SSL_CERTFILE": str(material.certificate(principal)),
            "SAMBAND_KAFKA_SSL_KEYFILE": str(material.key(principal)),
        }
    return {
        "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SAMBAND_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SAMBAND_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "SAMBAND_KAFKA_SASL_USERNAME": principal,
        "SAMBAND_KAFKA_SASL_PASSWORD_FILE": str(material.password_file(principal)),
        "SAMBAND_KAFKA_SSL_CAFILE": str(material.ca),
    }


def _admin(material: Material, internal_bootstrap: str):
    """A Kafka admin client as the brokers' own principal, the one super user (over INTERNAL, mTLS)."""
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:  # pragma: no cover - a dependency of the project
        raise SecureSetupError(
            "confluent-kafka is needed to make users and ACLs: pip install confluent-kafka"
        ) from None
    return AdminClient(
        {
            "bootstrap.servers": internal_bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": str(material.ca),
            "ssl.certificate.location": str(material.folder / "broker.pem"),
            "ssl.key.location": str(material.folder / "broker.key"),
        }
    )


def _acls(principal: str, grants: list[tuple[str, str, str, str]]):
    """AclBindings allowing `principal` each (resource type, name, pattern, operation)."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    return [
        AclBinding(
            ResourceType[kind],
            name,
            ResourcePatternType[pattern],
            f"User:{principal}",
            "*",
            AclOperation[operation],
            AclPermissionType.ALLOW,
        )
        for kind, name, pattern, operation in grants
    ]


def role_grants(role: str, app_id: str, subscriber_prefix: str) -> list[tuple[str, str, str, str]]:
    """What each role may do: (resource type, name, pattern, operation). Prefixes end in `-`, so
    that app id `samband` gets nothing of an app id `samband2`'s groups."""
    # aiokafka's idempotent producer asks for a producer id with a request that needs this.
    idempotent = ("BROKER", "kafka-cluster", "LITERAL", "IDEMPOTENT_WRITE")
    if role == "worker":  # every bus topic and group, and the subscribers' topics it writes
        return [
            ("BROKER", "kafka-cluster", "LITERAL", "DESCRIBE"),
            ("BROKER", "kafka-cluster", "LITERAL", "DESCRIBE_CONFIGS"),  # default.replication.factor
            idempotent,
            ("TOPIC", f"{app_id}-", "PREFIXED", "ALL"),
            ("TOPIC", subscriber_prefix, "PREFIXED", "ALL"),
            ("GROUP", f"{app_id}-", "PREFIXED", "ALL"),
            ("GROUP", app_id, "LITERAL", "ALL"),  # Faust's own group is the app id itself
        ]
    if role == "connector":  # writes events and dead letters in, keeps its bookmark; makes no topic
        topics = [f"{app_id}-ingest", f"{app_id}-deadletter", f"{app_id}-connector-state"]
        return [
            idempotent,
            *[("TOPIC", t, "LITERAL", op) for t in topics for op in ("DESCRIBE", "WRITE")],
            ("TOPIC", f"{app_id}-connector-state", "LITERAL", "READ"),
        ]
    if role == "operator":  # sees every topic and group, reads only what holds no personal data
        return [
            ("TOPIC", f"{app_id}-", "PREFIXED", "DESCRIBE"),
            ("TOPIC", f"{app_id}-", "PREFIXED", "DESCRIBE_CONFIGS"),
            ("GROUP", f"{app_id}-", "PREFIXED", "DESCRIBE"),
            *[("TOPIC", f"{app_id}-{suffix}", "LITERAL", "READ") for suffix in OPERATOR_READS],
        ]
    raise SecureSetupError(f"unknown role {role!r}: the roles are {', '.join(ROLES)}")


def subscriber_grants(subscription_id: str, subscriber_prefix: str) -> list[tuple[str, str, str, str]]:
    """A Kafka subscriber reads its own topic, in consumer groups `<its topic>.<any name>`, and
    nothing else. The `.` ends the prefix: subscription ids have none, so subscriber `a` gets no
    group of subscriber `ab`."""
    topic = subscriber_prefix + subscription_id
    return [
        ("TOPIC", topic, "LITERAL", "READ"),
        ("TOPIC", topic, "LITERAL", "DESCRIBE"),
        ("GROUP", f"{topic}.", "PREFIXED", "READ"),
    ]


def _check_id(subscription_id: str) -> None:
    if not SUBSCRIPTION_ID.fullmatch(subscription_id):
        raise SecureSetupError(
            f"{subscription_id!r} is not a subscription id: lower-case letters, digits and '-', starting with a "
            "letter or digit"
        )


def grant(material: Material, internal_bootstrap: str, users: dict[str, list[tuple[str, str, str, str]]]) -> None:
    """Make each user's SCRAM-SHA-512 credential (from its password file) and its ACLs."""
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    admin = _admin(material, internal_bootstrap)
    upserts = [
        UserScramCredentialUpsertion(
            user,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
            material.password_file(user).read_bytes().strip(),
        )
        for user in users
    ]
    bindings = [binding for user, grants in users.items() for binding in _acls(user, grants)]
    try:
        for future in [*admin.alter_user_scram_credentials(upserts).values(), *admin.create_acls(bindings).values()]:
            future.result(timeout=30)
    except Exception as exc:
        raise SecureSetupError(f"making users and ACLs failed: {exc}") from None


def grant_roles(material: Material, internal_bootstrap: str, app_id: str, subscriber_prefix: str) -> None:
    grant(material, internal_bootstrap, {role: role_grants(role, app_id, subscriber_prefix) for role in ROLES})
    material.grants_file.write_text(json.dumps({"app_id": app_id, "subscriber_prefix": subscriber_prefix}))


def add_subscriber(material: Material, internal_bootstrap: str, subscription_id: str) -> str:
    """A principal for one Kafka subscriber: it may read its own topic only. Returns its name. Its
    password and certificate are new each time: a subscription id used again gets none of a former
    subscriber's credentials."""
    _check_id(subscription_id)
    kept = json.loads(material.grants_file.read_text())
    principal = SUBSCRIBER_USER_PREFIX + subscription_id
    material.remove_principal(principal)
    material.add_principal(principal)
    grant(material, internal_bootstrap, {principal: subscriber_grants(subscription_id, kept["subscriber_prefix"])})
    return principal


def remove_subscriber(material: Material, internal_bootstrap: str, subscription_id: str) -> str:
    """Revoke one Kafka subscriber: its ACLs, its SCRAM user, its password and certificate files,
    and its topic (what the bus had delivered to it). Returns the principal's name."""
    from confluent_kafka.admin import AclBindingFilter, ScramMechanism, UserScramCredentialDeletion

    _check_id(subscription_id)
    kept = json.loads(material.grants_file.read_text())
    principal = SUBSCRIBER_USER_PREFIX + subscription_id
    admin = _admin(material, internal_bootstrap)
    filters = [
        AclBindingFilter(
            b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
        )
        for b in _acls(principal, subscriber_grants(subscription_id, kept["subscriber_prefix"]))
    ]
    try:
        futures = [*admin.delete_acls(filters).values()]
        if material.password_file(principal).exists():
            deletion = UserScramCredentialDeletion(principal, ScramMechanism.SCRAM_SHA_512)
            futures += admin.alter_user_scram_credentials([deletion]).values()
        topic = kept["subscriber_prefix"] + subscription_id
        if topic in admin.list_topics(timeout=30).topics:
            futures += admin.delete_topics([topic]).values()
        for future in futures:
            future.result(timeout=30)
    except Exception as exc:
        raise SecureSetupError(f"revoking {principal} failed: {exc}") from None
    material.remove_principal(principal)
    return principal
