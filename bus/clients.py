"""Every Kafka client of the project is made here, so the settings that reach the cluster live in one place.

    consumer = clients.consumer(bootstrap, group_id="samband-router", enable_auto_commit=False)
    producer = clients.durable_producer(bootstrap)       # acks=all, idempotent
    admin = clients.admin(bootstrap)
    members = clients.librdkafka_admin(bootstrap)        # confluent-kafka: consumer groups' members

`connection()` is what every client takes to reach the cluster: the bootstrap servers and the
cluster's security (`Security`, from SAMBAND_KAFKA_SECURITY_PROTOCOL and the variables beside it:
TLS, SASL SCRAM, or TLS with a client certificate). The options each call adds are that client's
own (group, batching, timeouts). Faust's app (agents/app.py) builds its clients itself, with the
same `Security`.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
SECURITY_VARIABLES = tuple(
    f"SAMBAND_KAFKA_{name}"
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD_FILE", "SSL_CAFILE",
                 "SSL_CERTFILE", "SSL_KEYFILE")
)  # fmt: skip


class KafkaSecurityError(ValueError):
    """The cluster's security settings are incomplete or wrong; the message names the variable."""


@dataclass(frozen=True)
class Security:
    """How clients prove who they are to the cluster, and check that it is the cluster.

    PLAINTEXT: neither (the local development broker). SSL: TLS, the cluster's certificate checked
    against `cafile`; with `certfile` and `keyfile` the client shows a certificate of its own
    (mTLS), whose name is its principal. SASL_SSL: TLS, and a user name and password (SCRAM-SHA-512
    unless `mechanism` says otherwise). SASL_PLAINTEXT: the password exchange without TLS, so
    everything else travels readable: only for a network nobody else is on.
    """

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password_file: str = ""
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""

    @classmethod
    def from_env(cls) -> Security:
        """From SAMBAND_KAFKA_SECURITY_PROTOCOL, _SASL_MECHANISM, _SASL_USERNAME, _SASL_PASSWORD_FILE,
        _SSL_CAFILE, _SSL_CERTFILE and _SSL_KEYFILE; KafkaSecurityError when they do not add up."""

        def env(name: str) -> str:
            return os.environ.get(f"SAMBAND_KAFKA_{name}", "").strip()

        security = cls(
            protocol=env("SECURITY_PROTOCOL").upper() or "PLAINTEXT",
            mechanism=env("SASL_MECHANISM").upper() or "SCRAM-SHA-512",
            username=env("SASL_USERNAME"),
            password_file=env("SASL_PASSWORD_FILE"),
            cafile=env("SSL_CAFILE"),
            certfile=env("SSL_CERTFILE"),
            keyfile=env("SSL_KEYFILE"),
        )
        security.check()
        return security

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(
                f"SAMBAND_KAFKA_SECURITY_PROTOCOL: expected one of {', '.join(PROTOCOLS)}, got {self.protocol!r}"
            )
        if self.sasl:
            if self.mechanism not in MECHANISMS:
                raise KafkaSecurityError(
                    f"SAMBAND_KAFKA_SASL_MECHANISM: expected one of {', '.join(MECHANISMS)}, got {self.mechanism!r}"
                )
            if not self.username or not self.password_file:
                raise KafkaSecurityError(
                    f"SAMBAND_KAFKA_SECURITY_PROTOCOL={self.protocol} needs SAMBAND_KAFKA_SASL_USERNAME and "
                    "SAMBAND_KAFKA_SASL_PASSWORD_FILE (a file holding the password, so it is in no environment)"
                )
            _readable("SAMBAND_KAFKA_SASL_PASSWORD_FILE", self.password_file)
        if bool(self.certfile) != bool(self.keyfile):
            raise KafkaSecurityError(
                "SAMBAND_KAFKA_SSL_CERTFILE and SAMBAND_KAFKA_SSL_KEYFILE go together: "
                "the client's certificate and its private key"
            )
        for name, path in (("CAFILE", self.cafile), ("CERTFILE", self.certfile), ("KEYFILE", self.keyfile)):
            if path:
                if not self.tls:
                    raise KafkaSecurityError(
                        f"SAMBAND_KAFKA_SSL_{name} is set but SAMBAND_KAFKA_SECURITY_PROTOCOL={self.protocol} "
                        "uses no TLS: choose SSL or SASL_SSL, or unset it"
                    )
                _readable(f"SAMBAND_KAFKA_SSL_{name}", path)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context: the cluster checked against the CA file (else the system's CAs), and
        the client's own certificate when one is set."""
        if not self.tls:
            return None
        return create_ssl_context(
            cafile=self.cafile or None, certfile=self.certfile or None, keyfile=self.keyfile or None
        )

    def password(self) -> str:
        return Path(self.password_file).read_text().strip()

    def aiokafka_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password(),
            }
        return options

    def librdkafka_options(self) -> dict[str, Any]:
        """The same, for a librdkafka client (confluent-kafka)."""
        options: dict[str, Any] = {"security.protocol": self.protocol}
        if self.tls:
            options |= {
                key: path
                for key, path in (
                    ("ssl.ca.location", self.cafile),
                    ("ssl.certificate.location", self.certfile),
                    ("ssl.key.location", self.keyfile),
                )
                if path
            }
        if self.sasl:
            options |= {"sasl.mechanism": self.mechanism, "sasl.username": self.username,
                        "sasl.password": self.password()}  # fmt: skip
        return options


def _readable(variable: str, path: str) -> None:
    try:
        Path(path).read_bytes()
    except OSError as exc:
        raise KafkaSecurityError(f"{variable}: cannot read {path} ({exc.strerror})") from None


def connection(bootstrap: str) -> dict[str, Any]:
    """The options every client takes to reach the cluster."""
    return {"bootstrap_servers": bootstrap, **Security.from_env().aiokafka_options()}


def consumer(bootstrap: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **connection(bootstrap), **options)


def producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**connection(bootstrap), **options)


def durable_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    """acks=all and idempotent: a retry neither loses nor reorders records within a partition."""
    return producer(bootstrap, **{"acks": "all", "enable_idempotence": True, **options})


def admin(bootstrap: str, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection(bootstrap), **options)


def librdkafka_admin(bootstrap: str) -> Any:
    """confluent-kafka's admin client, for what aiokafka's cannot do: aiokafka (0.14) sends
    DescribeGroups in a version whose answer it misreads, and the broker closes the connection."""
    from confluent_kafka.admin import AdminClient  # (librdkafka is loaded only where it is used)

    # Its log through Python's logging (the logger "librdkafka"), not straight to stderr: a CLI command
    # shows a client's lines only with --verbose, and the worker's are redacted and formatted as its own.
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": logging.getLogger("librdkafka")}
    return AdminClient(config | Security.from_env().librdkafka_options())
