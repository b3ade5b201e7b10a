"""The clock's requests: the periodic full resync, and each git source's poll.

APScheduler runs them on its own thread as interval jobs (with jitter, so a fleet does not
ask its server at once); each only asks the loop for a pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from attuned.config import ReconcileConfig
from attuned.reconcile.daemon.requests import POLL, Requests
from attuned.settings.git import GitSourceConfig


class Schedule:
    """Started with the resync job; the poll jobs follow the git sources on each reload."""

    def __init__(self, requests: Requests, reconcile: ReconcileConfig) -> None:
        self.requests = requests
        scheduler = BackgroundScheduler(daemon=True)
        scheduler.add_job(
            lambda: requests.ask(full=True),
            "interval",
            seconds=reconcile.resync_interval,
            jitter=reconcile.resync_jitter or None,
            coalesce=True,
            max_instances=1,
            id="resync",
        )
        scheduler.start()
        self._scheduler: Any = scheduler

    def schedule_polls(self, git_configs: Iterable[GitSourceConfig]) -> None:
        """One interval job per git source: each asks for a pass that polls that source."""
        for job in self._scheduler.get_jobs():
            if job.id.startswith("poll:"):
                job.remove()
        for config in git_configs:
            self._scheduler.add_job(
                lambda name=config.name: self.requests.ask(changes=[(name, POLL)]),
                "interval",
                seconds=config.interval,
                jitter=config.jitter or None,
                coalesce=True,
                max_instances=1,
                id=f"poll:{config.name}",
            )

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=False)
