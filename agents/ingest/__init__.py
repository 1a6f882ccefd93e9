"""The ingest stage: `samband-ingest` in, validated, deduplicated, canonical `samband-events` out.

`build(settings, runtime)` makes the stage's service (stage.py); canonical.py turns one input
record (Avro or CloudEvents JSON) into a canonical event or a reasoned rejection.
"""

from agents.ingest.stage import build

__all__ = ["build"]
