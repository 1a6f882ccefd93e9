"""A subscription: who receives which life events, with which fields, and by which right.

    id: bergen-helsestasjon
    system: {name: Helsestasjon Bergen, owner: Bergen kommune, contact: helse@bergen.example}
    legal_basis: Helse- og omsorgstjenesteloven § 3-2 ...    # required, never empty
    public_body: true                                          # fortrolig addresses only to public bodies
    kommuner: ["4601"]                                          # or: all
    event_types: [Birth, Move]                                  # also reference types: KommuneRenumbering
    predicates:                                                 # all optional
      age_at_event: {min_years: 0, max_years: 6}
      move_scope: [into, within]                                # relative to the subscription's kommuner
      change_kind: [new, correction, annulment]
    fields:                                                     # the projection, per event type
      Birth: [envelope.person, birthDate, name, address]
      Move: [envelope.person, movedDate, newAddress, scope]
    delivery: {kind: webhook, url: https://..., secret_ref: env:SAMBAND_WEBHOOK_SECRET_BERGEN_HELSESTASJON}
    # kind: one of the installed delivery kinds (webhook, kafka, files, or a plug-in's)

Field paths are the catalog's (`schemas.catalog.catalog().fields(type)`). Every event type
needs its list of fields: nothing is granted by default. Fields classified `confidential`
(parents, spouse, address protection grade, ...) may only be granted to a public body.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from agents.subscriptions.delivery_target import DeliveryTarget, as_written
from connectors.api import delivery_kinds
from schemas.catalog import POPULATION_RECORD, UNKNOWN_EVENT, catalog
from schemas.kommuner import is_known

MoveScope = Literal["into", "outOf", "within"]
ChangeKind = Literal["new", "correction", "annulment", "ceased"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class System(_Strict):
    name: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    contact: str = Field(min_length=1)


class AgeAtEvent(_Strict):
    min_years: int | None = Field(None, ge=0)
    max_years: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.min_years is not None and self.max_years is not None and self.min_years > self.max_years:
            raise ValueError("min_years is greater than max_years")
        return self


class Predicates(_Strict):
    age_at_event: AgeAtEvent | None = None
    move_scope: list[MoveScope] | None = Field(None, min_length=1)
    change_kind: list[ChangeKind] | None = Field(None, min_length=1)


class Subscription(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")
    system: System
    legal_basis: str = Field(min_length=1)
    public_body: bool
    kommuner: Literal["all"] | list[str] = Field(min_length=1)
    event_types: list[str] = Field(min_length=1)
    predicates: Predicates = Predicates()
    fields: dict[str, list[str]]
    delivery: DeliveryTarget

    @field_validator("kommuner")
    @classmethod
    def _known_kommuner(cls, value):
        if value != "all":
            # A code a reform retired stays valid: the subscription was made before the reform, and
            # `samband subscriptions renumber` moves it to today's code (docs/reform-day.md).
            unknown = sorted(code for code in set(value) if not is_known(code))
            if unknown:
                raise ValueError(f"not a kommunenummer in SSB classification 131: {', '.join(unknown)}")
        return value

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value):
        if POPULATION_RECORD in value:
            raise ValueError(
                f"{POPULATION_RECORD} teaches the bus birth dates for life stages and goes to no subscription"
            )
        # A reference type (a reform's KommuneRenumbering) too: the bus announces it (docs/reform-day.md).
        known = (set(catalog().event_types()) - {UNKNOWN_EVENT, POPULATION_RECORD}) | set(catalog().reference_types())
        unknown = [t for t in value if t not in known]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {', '.join(sorted(known))}")
        return value

    @model_validator(mode="after")
    def _projection(self):
        if set(self.fields) != set(self.event_types):
            missing, extra = set(self.event_types) - set(self.fields), set(self.fields) - set(self.event_types)
            raise ValueError(
                "fields must list the granted fields of exactly the subscribed event types"
                + (f"; missing: {sorted(missing)}" if missing else "")
                + (f"; not subscribed: {sorted(extra)}" if extra else "")
            )
        for event_type, paths in self.fields.items():
            known = {f.path: f.classification for f in catalog().fields(event_type)}
            unknown = [p for p in paths if p not in known]
            if unknown:
                raise ValueError(f"fields.{event_type}: no such field {unknown}; known: {', '.join(known)}")
            confidential = [p for p in paths if known[p] == "confidential"]
            if confidential and not self.public_body:
                raise ValueError(f"fields.{event_type}: {confidential} are confidential: only for public bodies")
        return self

    @model_validator(mode="after")
    def _deliverable(self, info: ValidationInfo):
        """What the delivery kind refuses at once (its own secret, a reachable URL, an enabled folder);
        as written, only what does not depend on this process's settings."""
        from agents.config import get_settings
        from agents.delivery.target import bus_lends, kind_config

        sink = delivery_kinds()[self.delivery.kind]
        config = kind_config(sink, self.delivery.model_dump())
        problem = sink.refusal(config, self.id, None if as_written(info) else bus_lends(get_settings()))
        if problem:
            raise ValueError(f"delivery.{problem}")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Subscription:
        return cls.model_validate_json(data)
