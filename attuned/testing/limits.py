"""Resource limits for test processes, applied with setrlimit in the child before exec."""

from __future__ import annotations

import resource
from collections.abc import Callable

from attuned.testing.settings import ResourceLimits

_MIB = 1024 * 1024


def _requested(limits: ResourceLimits) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for every configured limit."""
    wanted: list[tuple[int, int, int]] = []
    if limits.cpu_seconds is not None:
        # One second between soft and hard: the test first gets SIGXCPU, which names the cause.
        wanted.append((resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1))
    if limits.address_space_mb is not None:
        size = limits.address_space_mb * _MIB
        wanted.append((resource.RLIMIT_AS, size, size))
    if limits.open_files is not None:
        wanted.append((resource.RLIMIT_NOFILE, limits.open_files, limits.open_files))
    if limits.processes is not None:
        wanted.append((resource.RLIMIT_NPROC, limits.processes, limits.processes))
    if limits.file_size_mb is not None:
        size = limits.file_size_mb * _MIB
        wanted.append((resource.RLIMIT_FSIZE, size, size))
    return wanted


def _within_hard_limit(value: int, hard: int) -> int:
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def rlimit_setter(limits: ResourceLimits) -> Callable[[], None]:
    """A preexec_fn that lowers the child's limits.

    Everything is computed here, in the parent: the child only calls setrlimit, so nothing
    between fork and exec allocates, imports or takes a lock. Values above the daemon's own
    hard limit are clamped, since an unprivileged process cannot raise its hard limit.
    """
    plan: list[tuple[int, tuple[int, int]]] = []
    for which, soft, hard in _requested(limits):
        _current_soft, current_hard = resource.getrlimit(which)
        new_hard = _within_hard_limit(hard, current_hard)
        plan.append((which, (min(soft, new_hard), new_hard)))
    setrlimit = resource.setrlimit

    def apply() -> None:
        for which, values in plan:
            setrlimit(which, values)

    return apply
