"""SIGHUP: the config file read again, and what of it a running daemon can take.

Where the state lives, the database, the status file, the test and environment settings
need a restart (the daemon holds them open); sources, reconcile timings, logging, sinks,
the outbox and pack limits change at once.
"""

from __future__ import annotations

from attuned.config import AttunedConfig, default_config, load_config

NEEDS_RESTART = ("state_dir", "packs_dir", "database", "status_file", "testing", "environments")


def reloaded(current: AttunedConfig) -> tuple[AttunedConfig, list[str]]:
    """The config to run with now, and the settings that changed but wait for a restart.
    Raises AttunedError when the file cannot be read: the current config stays."""
    fresh = load_config(current.path) if current.path else default_config()
    needs_restart = [k for k in NEEDS_RESTART if getattr(fresh, k) != getattr(current, k)]
    config = (
        fresh
        if not needs_restart
        else current.model_copy(
            update={
                "sources": fresh.sources,
                "reconcile": fresh.reconcile,
                "log": fresh.log,
                "notify": fresh.notify,
                "outbox": fresh.outbox,
                "pack_limits": fresh.pack_limits,
            }
        )
    )
    config._path = fresh.path
    return config, needs_restart
