"""Resource limits for test processes, applied with setrlimit in the child before exec."""

from __future__ import annotations

import os
import pwd
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attuned.settings.testing import ResourceLimits

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


@dataclass(frozen=True)
class RunAs:
    """The unprivileged identity of test processes (`testing.run_as`). Root is exempt from
    RLIMIT_NPROC and may read or write any file; a plain user is neither."""

    uid: int
    gid: int


def resolve_user(user: str) -> RunAs:
    """A user name or numeric uid from the settings; KeyError when the host has no such user
    (a numeric uid without a passwd entry runs with the gid of the same number)."""
    if user.isdigit():
        uid = int(user)
        try:
            return RunAs(uid, pwd.getpwuid(uid).pw_gid)
        except KeyError:
            return RunAs(uid, uid)
    entry = pwd.getpwnam(user)
    return RunAs(entry.pw_uid, entry.pw_gid)


def identity_setter(run_as: RunAs | None) -> Callable[[], None] | None:
    """A preexec_fn that gives up root for `run_as`: groups, then gid, then uid (the last
    step drops the right to do the others). None when there is nothing to change."""
    if run_as is None or (os.getuid() == run_as.uid and os.getgid() == run_as.gid):
        return None
    uid, gid = run_as.uid, run_as.gid
    setgroups, setgid, setuid = os.setgroups, os.setgid, os.setuid

    def apply() -> None:
        setgroups([])
        setgid(gid)
        setuid(uid)

    return apply


def child_setup(limits: ResourceLimits, run_as: RunAs | None) -> Callable[[], None]:
    """Limits first (lowering them needs no privilege, raising a hard limit would), then
    the identity."""
    set_limits = rlimit_setter(limits)
    set_identity = identity_setter(run_as)
    if set_identity is None:
        return set_limits

    def apply() -> None:
        set_limits()
        set_identity()

    return apply


def hand_over(root: Path, run_as: RunAs) -> None:
    """Give the staged copy to the test user: it must write there, and only there."""
    os.chown(root, run_as.uid, run_as.gid)
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.chown(os.path.join(directory, name), run_as.uid, run_as.gid, follow_symlinks=False)
