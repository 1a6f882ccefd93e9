"""Signing secrets, named only by the subscription's own id, so no subscription can sign with
another's: the secret is never stored in a subscription, and its `secret_ref` can name only

- `env:SAMBAND_WEBHOOK_SECRET_<ID>`: an environment variable of the worker (the id upper-cased,
  `-` as `_`), or
- `file:<id>`: a file named by the id in the secrets folder (SAMBAND_SECRETS_DIR);

and, during a rotation, `previous_secret_ref` the same names with `_PREVIOUS` / `.previous`.
Whatever is wrong with a secret (a ref naming something else, a variable or file that is
missing, a malformed value), the error is the same one: it tells nobody which secrets exist.

Values are Standard Webhooks secrets: `whsec_` followed by base64 of 24-64 random bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

PREFIX = "whsec_"
UNAVAILABLE = "secret.unavailable"


class SecretError(Exception):
    """A secret cannot be used; `reason` is always `secret.unavailable`. Never holds the secret or its name."""

    def __init__(self, reason: str = UNAVAILABLE, message: str = "the subscription's signing secret is not available"):
        super().__init__(message)
        self.reason = reason


def own_refs(sub_id: str, previous: bool = False) -> tuple[str, str]:
    """The only references subscription `sub_id` may give: its environment variable and its file."""
    env = "SAMBAND_WEBHOOK_SECRET_" + sub_id.upper().replace("-", "_") + ("_PREVIOUS" if previous else "")
    return f"env:{env}", f"file:{sub_id}" + (".previous" if previous else "")


def resolve_secret(ref: str, secrets_dir: str = "") -> bytes:
    """The raw HMAC key behind `ref`; SecretError, the same for every fault."""
    scheme, _, name = ref.partition(":")
    value = None
    if scheme == "env" and name:
        value = os.environ.get(name)
    elif scheme == "file" and name and secrets_dir and "/" not in name and not name.startswith("."):
        try:
            value = (Path(secrets_dir) / name).read_text().strip()
        except OSError:
            value = None
    if not value or not value.startswith(PREFIX):
        raise SecretError()
    try:
        key = base64.b64decode(value[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SecretError() from None
    if not key:
        raise SecretError()
    return key


def new_secret() -> str:
    """A fresh secret in the Standard Webhooks format, for operators creating a subscription."""
    return PREFIX + base64.b64encode(os.urandom(32)).decode()


def secret_ref_problem(sub_id: str, secret_ref: str, previous: str | None) -> str | None:
    """Why these refs may not be this subscription's (`own_refs`), as "<field>: <what to do>", or None."""
    if secret_ref not in own_refs(sub_id) or (previous is not None and previous not in own_refs(sub_id, previous=True)):
        env, file = own_refs(sub_id)
        return f"secret_ref: names a secret that is not the subscription's own: use {env} or {file}"
    return None
