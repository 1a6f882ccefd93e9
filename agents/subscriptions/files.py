"""Subscriptions as YAML files (configuration as code): one subscription per `*.yaml`/`*.yml` file.

`load_dir` validates every file and returns all problems at once, each naming its file,
so `samband subscriptions apply` can refuse the whole directory before writing anything.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from agents.subscriptions.model import Subscription


def validation_problems(exc: ValidationError) -> list[str]:
    """One line per problem: the field's path and what is wrong (never the submitted value)."""
    return [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]


def load_dir(directory: Path, context: dict | None = None) -> tuple[list[Subscription], list[str]]:
    """(subscriptions, errors); the errors are `file: problem` lines, empty when every file is valid.
    `context`: the validation context (delivery_target.AS_WRITTEN skips what depends on this process's settings)."""
    files = sorted(p for p in Path(directory).iterdir() if p.suffix in (".yaml", ".yml"))
    if not files:
        return [], [f"{directory}: no *.yaml or *.yml files"]
    subs: list[Subscription] = []
    errors: list[str] = []
    seen: dict[str, Path] = {}
    for path in files:
        try:
            raw = yaml.safe_load(path.read_text("utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            errors.append(f"{path.name}: not valid YAML{where}")
            continue
        if not isinstance(raw, dict):
            errors.append(f"{path.name}: must hold one subscription (a mapping)")
            continue
        try:
            sub = Subscription.model_validate(raw, context=context)
        except ValidationError as exc:
            errors += [f"{path.name}: {problem}" for problem in validation_problems(exc)]
            continue
        if sub.id in seen:
            errors.append(f"{path.name}: id {sub.id} is also used by {seen[sub.id].name}")
            continue
        seen[sub.id] = path
        subs.append(sub)
    return subs, errors
