"""How a subscription's deliveries leave the bus: the `delivery` object, with `kind` saying which.

    delivery: {kind: webhook, url: https://..., secret_ref: env:BERGEN_HS_SECRET, mode: structured}
    delivery: {kind: kafka}      # records go to the bus's topic <SAMBAND_SUBSCRIBER_TOPIC_PREFIX><id>
    delivery: {kind: files}      # batch files in <SAMBAND_FILES_OUTBOUND_DIR>/<id>/

Each installed delivery kind (entry points `samband.delivery_kinds`: connectors.api) gives one
member of the `DeliveryTarget` union: the kind's own config, plus the delivery stage's retry
schedule, pause switch and delivery windows, which every kind takes (agents/delivery/target.py reads the same
object). The kind's `refusal` is asked by the subscription (`Subscription._deliverable`).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, ValidationInfo, create_model, field_validator

from agents.subscriptions.windows import Window
from connectors.api import delivery_kinds

MAX_RETRY_STEPS = 20
# Validation context of a reader that learns what a subscription was, not whether this process
# would accept it (the privacy scan: the bus accepted it under its own settings, e.g. a loopback
# URL the demo's worker allows). The checks that depend on this process's settings are skipped.
AS_WRITTEN = {"as_written": True}


def as_written(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("as_written"))


class DeliveryControl(BaseModel):
    # Seconds to wait before each retry (at least SAMBAND_RETRY_MIN_SECONDS, 1 s unless set; at most
    # 20 steps); the delivery stage's default when absent.
    retry_schedule: list[float] | None = Field(None, max_length=MAX_RETRY_STEPS)
    # Paused: events are kept, in order, and delivered once it is resumed.
    paused: bool = False
    # When it takes deliveries, in Norwegian time (agents/subscriptions/windows.py); none: always.
    windows: list[Window] = Field(default_factory=list, max_length=28)

    @field_validator("retry_schedule")
    @classmethod
    def _not_too_soon(cls, schedule: list[float] | None, info: ValidationInfo) -> list[float] | None:
        from agents.config import get_settings

        least = 0.0 if as_written(info) else get_settings().retry_min_seconds
        if schedule is not None and not all(wait >= least and math.isfinite(wait) for wait in schedule):  # (NaN too)
            raise ValueError(f"each wait must be at least {least:g} s (SAMBAND_RETRY_MIN_SECONDS)")
        return schedule


def _member(kind: str, config: type[BaseModel]) -> type[BaseModel]:
    """The `delivery` object of `kind`: its config, the control fields and `kind` itself."""
    name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", kind)) + "Delivery"
    fields: dict[str, Any] = {"kind": (Literal[kind], ...)}
    return create_model(name, __base__=(config, DeliveryControl), **fields)


_MEMBERS = tuple(_member(kind, sink.Config) for kind, sink in delivery_kinds().items())
if len({member.__name__ for member in _MEMBERS}) != len(_MEMBERS):  # e.g. kinds `sftp-drop` and `sftp_drop`
    raise TypeError(f"two delivery kinds share a schema name: {sorted(delivery_kinds())}")
DeliveryTarget = Annotated[Union[_MEMBERS], Field(discriminator="kind")]  # noqa: UP007 (a tuple of members)
