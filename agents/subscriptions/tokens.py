"""API tokens: who calls the subscriptions API, for which tenant, with which scopes.

Tenants' tokens are in the YAML file named by SAMBAND_API_TOKENS_FILE, one entry per token:

    bergen-helse:                        # the token's name: written to the audit log, never the token
      token: k7Qe...                     # at least 16 characters
      owner: Bergen kommune
      subscriptions: {prefix: bergen-}   # the subscriptions it owns; or {ids: [bergen-skole, ...]}
      kommuner: ["4601", "4602"]         # the kommuner its subscriptions may name
      scopes: [subscriptions:read, subscriptions:write]

SAMBAND_API_TOKENS (`token=scope1+scope2,token2=scope1`) still works for tokens without a tenant:
they own no subscription (an operator token acts on all) and are named `SAMBAND_API_TOKENS#<n>`.

An owner sees and changes only the subscriptions it owns. Grants that widen access (public_body,
kommuner: all, kommuner outside the token's, confidential fields) need the operator scope, which
also sees and changes every tenant's subscriptions. The dashboard's scopes (`operations:read`,
`dlq:replay`) reach every tenant's dead letters and health, and `persons:report` any person's
access report: a tenant's token (one with `subscriptions`) may not have them, unless it is an
operator's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.subscriptions.model import Subscription
from schemas.catalog import catalog

READ, WRITE = "subscriptions:read", "subscriptions:write"
OPERATOR = "subscriptions:operator"
DLQ_REPLAY = "dlq:replay"  # the dashboard's replay button (agents/web/dashboard.py)
OPERATIONS_READ = "operations:read"  # the dashboard's /api/overview and /api/trace
PERSON_REPORT = "persons:report"  # a person's access report, for a citizen portal (agents/web/person_report.py)
SCOPES = (READ, WRITE, OPERATOR, DLQ_REPLAY, OPERATIONS_READ, PERSON_REPORT)
ACROSS_TENANTS = (DLQ_REPLAY, OPERATIONS_READ, PERSON_REPORT)  # never for a tenant's own token


class TokenConfigError(ValueError):
    """The token configuration is malformed; the message never repeats a token."""


@dataclass(frozen=True)
class ApiToken:
    name: str
    token: str
    scopes: frozenset[str]
    owner: str | None = None
    prefix: str | None = None
    ids: frozenset[str] = frozenset()
    kommuner: frozenset[str] = frozenset()

    @property
    def operator(self) -> bool:
        return OPERATOR in self.scopes

    def owns(self, sub_id: str) -> bool:
        if self.operator:
            return True
        return sub_id in self.ids or (self.prefix is not None and sub_id.startswith(self.prefix))

    def grants_needing_operator(self, new: Subscription, current: Subscription | None) -> list[str]:
        """What `new` grants beyond this token's own reach and beyond what `current` already had."""
        if self.operator:
            return []
        grants = []
        if new.public_body and not (current and current.public_body):
            grants.append("public_body: true")
        had_all = current is not None and current.kommuner == "all"
        if new.kommuner == "all":
            if not had_all:
                grants.append("kommuner: all")
        elif not had_all:
            outside = set(new.kommuner) - self.kommuner - set(current.kommuner if current else ())
            if outside:
                grants.append(f"kommuner outside the token's: {', '.join(sorted(outside))}")
        had = _confidential(current) if current else set()
        grants += [f"confidential field fields.{path}" for path in sorted(_confidential(new) - had)]
        return grants


def _confidential(sub: Subscription) -> set[str]:
    """`EventType.path` of every confidential field the subscription is granted."""
    return {
        f"{event_type}.{f.path}"
        for event_type, paths in sub.fields.items()
        for f in catalog().fields(event_type)
        if f.path in paths and f.classification == "confidential"
    }


class _Owned(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]*$")
    ids: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self):
        if (self.prefix is None) == (self.ids is None):
            raise ValueError("give exactly one of prefix or ids")
        return self


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=16)
    owner: str = Field(min_length=1)
    subscriptions: _Owned | None = None
    kommuner: list[str] = []
    scopes: list[Literal[SCOPES]] = Field(min_length=1)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _tenant_scopes(self):
        # The dashboard's scopes span every tenant (all dead letters, every subscription's health):
        # a token that owns only some subscriptions cannot have them.
        across = sorted(set(self.scopes) & set(ACROSS_TENANTS))
        if self.subscriptions is not None and across and OPERATOR not in self.scopes:
            raise ValueError(
                f"{', '.join(across)} reach every tenant's data: give them to a token without `subscriptions` "
                "(or with subscriptions:operator)"
            )
        return self


def parse_tokens(text: str) -> list[ApiToken]:
    """SAMBAND_API_TOKENS: tokens without a tenant."""
    tokens = []
    for n, item in enumerate(filter(None, (part.strip() for part in text.split(","))), start=1):
        token, sep, scopes = item.partition("=")
        wanted = frozenset(filter(None, scopes.split("+")))
        if not sep or not token or not wanted:
            raise TokenConfigError(f"SAMBAND_API_TOKENS entry {n}: expected token=scope1+scope2")
        unknown = wanted - set(SCOPES)
        if unknown:
            raise TokenConfigError(f"SAMBAND_API_TOKENS entry {n}: unknown scope(s) {sorted(unknown)}; known: {SCOPES}")
        tokens.append(ApiToken(name=f"SAMBAND_API_TOKENS#{n}", token=token, scopes=wanted))
    return tokens


def parse_token_file(path: Path) -> list[ApiToken]:
    """SAMBAND_API_TOKENS_FILE: tenants' tokens (see the module's docstring)."""
    where = "SAMBAND_API_TOKENS_FILE"
    try:
        raw = yaml.safe_load(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise TokenConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:  # its text may quote a line holding a token: only the line number
        mark = getattr(exc, "problem_mark", None)
        raise TokenConfigError(f"{where}: not valid YAML{f' at line {mark.line + 1}' if mark else ''}") from None
    if not isinstance(raw, dict) or not raw:
        raise TokenConfigError(f"{where}: expected a mapping of token names to tokens")
    tokens = []
    for name, body in raw.items():
        try:
            entry = _Entry.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]  # the loc and msg only: the input may be the token
            field = ".".join(str(p) for p in first["loc"]) or "(entry)"
            raise TokenConfigError(f"{where}: token {name}: {field}: {first['msg']}") from None
        owned = entry.subscriptions  # none: the token owns no subscription
        tokens.append(
            ApiToken(
                name=str(name),
                token=entry.token,
                scopes=frozenset(entry.scopes),
                owner=entry.owner,
                prefix=owned.prefix if owned else None,
                ids=frozenset(owned.ids or ()) if owned else frozenset(),
                kommuner=frozenset(entry.kommuner),
            )
        )
    return tokens


def load_tokens(env_text: str, file_path: str) -> list[ApiToken]:
    tokens = parse_tokens(env_text) + (parse_token_file(Path(file_path)) if file_path else [])
    seen: dict[str, str] = {}
    for token in tokens:
        if token.token in seen:
            raise TokenConfigError(f"API tokens {seen[token.token]} and {token.name} are the same token")
        seen[token.token] = token.name
    return tokens
