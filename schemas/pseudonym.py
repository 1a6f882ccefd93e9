"""Person pseudonyms: the only person reference allowed in Kafka keys, logs and metrics.

`HMAC-SHA256(key, identity number)`, first 16 bytes as hex. The key is a secret of the
deployment (SAMBAND_PSEUDONYM_KEY); without it a pseudonym cannot be turned back into a
number, and the same person gets the same pseudonym on every worker.
"""

from __future__ import annotations

import hashlib
import hmac


def pseudonym(identity_number: str, key: bytes) -> str:
    return hmac.new(key, identity_number.encode("ascii"), hashlib.sha256).hexdigest()[:32]
