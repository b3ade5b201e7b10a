"""The structured log stream: structlog set-up and the stable event names.

Every line is one JSON object with an `event` from `Event`; docs/log-events.md lists them.
Tracebacks are rendered without local variables so secrets never reach the log.
"""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from typing import Any, TextIO

import structlog


class Event(StrEnum):
    PACK_REGISTERED = "pack.registered"
    PACK_UPGRADED = "pack.upgraded"
    PACK_REINSTALLED = "pack.reinstalled"
    PACK_REGISTER_FAILED = "pack.register.failed"
    PACK_VALIDATION_WARNING = "pack.validation.warning"
    PACK_TEST_STARTED = "pack.test.started"
    PACK_TEST_FINISHED = "pack.test.finished"
    PACK_TEST_FAILED = "pack.test.failed"
    PACK_FORCED = "pack.forced"
    PACK_ROLLED_BACK = "pack.rolled_back"
    PACK_UNREGISTERED = "pack.unregistered"
    STORE_REPAIRED = "store.repaired"
    DB_MIGRATED = "db.migrated"


def configure_logging(
    level: str = "info", stream: TextIO | None = None, json: bool | None = None
) -> None:
    """JSON lines (default when `stream` is not a terminal), else a readable console form."""
    stream = stream if stream is not None else sys.stderr
    as_json = json if json is not None else not stream.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks
            if as_json
            else structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("attuned", **bound)
