"""The daemon process: one loop in the main thread that runs reconcile passes when asked.

Everything here is about being a long-running service rather than about what a pass decides
(that is `attuned.reconcile.passes` and the planner): `loop.py` (the loop, signals, start and
stop), `requests.py` (what asked for a pass), `watching.py` + `watch.py` + `debounce.py`
(inotify, per-pack quiet periods), `schedule.py` (resync and poll timers), `statelock.py` (one
daemon per state directory), `health.py` (degraded, backoff, recovered), `delivery.py` (the
outbox dispatcher), `following.py` (a follower's passes in a cluster), `status_writer.py`
(status file, metrics, systemd), `stop_timer.py` (a bounded stop), `config_reload.py`
(SIGHUP), `heap.py` (memory handed back after a large pass).
"""

from attuned.reconcile.daemon.loop import Daemon

__all__ = ["Daemon"]
