"""Signing secrets, resolved from a `secret_ref` so no secret is ever stored in a subscription.

Supported references:
- `env:NAME`: the environment variable NAME of the worker process.
Values are Standard Webhooks secrets: `whsec_` followed by base64 of 24-64 random bytes.
"""

from __future__ import annotations

import base64
import binascii
import os

PREFIX = "whsec_"


class SecretError(Exception):
    """A secret reference cannot be resolved; `reason` is a stable code. Never holds the secret."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def resolve_secret(ref: str) -> bytes:
    """The raw HMAC key behind `ref`."""
    scheme, _, name = ref.partition(":")
    if scheme != "env" or not name:
        raise SecretError("secret.bad_ref", f"secret_ref {ref!r} is not of the form env:NAME")
    value = os.environ.get(name)
    if not value:
        raise SecretError("secret.missing", f"environment variable {name} (from secret_ref) is not set")
    if not value.startswith(PREFIX):
        raise SecretError("secret.format", f"environment variable {name} does not hold a {PREFIX}... secret")
    try:
        key = base64.b64decode(value[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("secret.format", f"environment variable {name} is not {PREFIX} + base64") from None
    if not key:
        raise SecretError("secret.format", f"environment variable {name} holds an empty secret")
    return key


def new_secret() -> str:
    """A fresh secret in the Standard Webhooks format, for operators creating a subscription."""
    return PREFIX + base64.b64encode(os.urandom(32)).decode()
