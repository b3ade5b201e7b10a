"""The sink types: one module each, one line in `SINKS` (adding a sink type = both)."""

from __future__ import annotations

import threading

from attuned.notify.sinks.base import Attempt, Sink
from attuned.settings.notify import (
    AttuneSinkConfig,
    ExecSinkConfig,
    WebhookSinkConfig,
)

__all__ = ["Attempt", "Sink", "build"]

AnySinkConfig = WebhookSinkConfig | ExecSinkConfig | AttuneSinkConfig


def build(config: AnySinkConfig, cancel: threading.Event | None = None) -> Sink:
    """The sink for `config`; reads its secrets now (raises SecretError when one is
    missing). Libraries are imported here, so a daemon without sinks never loads them."""
    if isinstance(config, WebhookSinkConfig):
        from attuned.notify.sinks.webhook import WebhookSink

        return WebhookSink(config)
    if isinstance(config, ExecSinkConfig):
        from attuned.notify.sinks.command import ExecSink

        return ExecSink(config, cancel)
    from attuned.notify.sinks.attune import AttuneSink

    return AttuneSink(config)
