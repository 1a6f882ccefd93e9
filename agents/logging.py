"""structlog configuration: called once, at the edge (CLI entry, worker start)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import structlog

from agents.redaction import redact_personal_data


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """JSON lines when stderr is not a terminal (or fmt="json"), a readable console otherwise."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Route stdlib logging (faust, aiokafka, mode) through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_personal_data,
                renderer,
            ],
        )
    )
    handler.addFilter(LibraryRepeats())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class LibraryRepeats(logging.Filter):
    """At most one line per `window` seconds for each message of the Kafka client's loggers. While a
    broker is down aiokafka logs every failed connection attempt, hundreds of lines a second; the
    stages log the outage themselves, once when it begins, once a minute, once when it ends
    (bus/batches.py). The next line that passes says how many like it were left out."""

    LOGGERS = ("aiokafka", "kafka")

    def __init__(self, window: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: dict[tuple, list] = {}  # (logger, level, message template, its args) -> [passed at, left out since]

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.LOGGERS):
            return True
        key, now = (
            (record.name, record.levelno, str(record.msg), str(record.args)),
            self.clock(),
        )  # args: each group its own
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} [{seen[1]} more like it left out in {self.window:.0f} s]"
        if len(self._seen) > 1000:  # messages formatted before logging would grow it without end
            self._seen.clear()
        self._seen[key] = [now, 0]
        return True
