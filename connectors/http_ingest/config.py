"""Declared config of the HTTP ingest source. Tokens are referenced (`env:NAME`), never written in it."""

from __future__ import annotations

import hmac
import os

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.api import ConnectorConfig
from schemas.catalog import UNKNOWN_EVENT, catalog

MIN_TOKEN_LENGTH = 16


class TokenError(Exception):
    """A token reference cannot be resolved. The message names the reference, never a value."""


class SourceSystem(BaseModel):
    """One municipal system allowed to publish, and the event types it is granted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="system name, e.g. bergen-barnevern")
    token_ref: str = Field(
        pattern=r"^env:[A-Za-z_][A-Za-z0-9_]*$", description="env:NAME, the variable holding its bearer token"
    )
    event_types: list[str] = Field(min_length=1, description="catalog event types it may publish, e.g. [Move, Birth]")

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        known = set(catalog().event_types()) - {UNKNOWN_EVENT}
        unknown = sorted(set(types) - known)
        if unknown:
            raise ValueError(f"not catalog event types: {', '.join(unknown)[:200]}")
        return types

    def token(self) -> bytes:
        name = self.token_ref.removeprefix("env:")
        value = os.environ.get(name, "")
        if len(value) < MIN_TOKEN_LENGTH:
            raise TokenError(
                f"system {self.name}: environment variable {name} must hold a token of {MIN_TOKEN_LENGTH}+ characters"
            )
        return value.encode()


class HttpIngestConfig(ConnectorConfig):
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8090, ge=0, le=65535, description="port to listen on (0: any free port)")
    systems: list[SourceSystem] = Field(min_length=1, description="who may publish what")
    max_batch: int = Field(500, ge=1, le=10_000, description="events in one batch request at most")
    max_body_bytes: int = Field(4 << 20, ge=1024, description="larger request bodies get 413")
    produce_timeout_s: float = Field(
        10.0, gt=0, description="wait for Kafka's acknowledgement at most this long, then 503"
    )
    retry_after_s: int = Field(5, ge=1, description="Retry-After of a 503")
    ignore_unknown: bool = Field(
        False,
        description="drop attributes and data fields the profile does not know instead of refusing the event "
        "(cloudevent.unknown_attribute, data.unknown_field)",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> HttpIngestConfig:
        names = [s.name for s in self.systems]
        if len(set(names)) != len(names):
            raise ValueError("system names must be unique")
        return self


class Authenticator:
    """Bearer token -> system, compared in constant time."""

    def __init__(self, systems: list[SourceSystem]):
        self._tokens = [(system.token(), system) for system in systems]
        if len({token for token, _ in self._tokens}) != len(self._tokens):
            raise TokenError("two systems share one token")

    def system(self, authorization: str | None) -> SourceSystem | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        given = token.strip().encode()
        found = None
        for expected, system in self._tokens:
            if hmac.compare_digest(given, expected):
                found = system
        return found
