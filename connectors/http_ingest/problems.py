"""Machine-readable reasons for a refused request: `{"errors": [{"code", "field", "message", "index"}]}`.

Codes come from schemas.validation (identity.*, kommune.*, date.*, relation.*, envelope.*),
the ingest profile (json.missing_field, json.field_type, event.unknown_type, cloudevent.invalid)
and this source (auth.*, request.*). No field of a Problem ever holds a submitted value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    code: str
    field: str
    message: str
    index: int | None = None  # position in a batch; None for a single event or the whole request

    def at(self, index: int | None) -> Problem:
        return Problem(self.code, self.field, self.message, index)

    def as_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


class Refused(ValueError):
    """The request or one event cannot be accepted; carries the problems to answer with."""

    def __init__(self, problems: list[Problem], status: int = 400):
        super().__init__("; ".join(f"{p.field}: {p.code}" for p in problems))
        self.problems = problems
        self.status = status


def body(problems: list[Problem]) -> dict:
    return {"errors": [p.as_json() for p in problems]}
