"""The bubblewrap sandbox of a test process: a read-only view of the system, private empty
directories where the host keeps per-user and temporary data, the daemon's own paths hidden,
the staged pack writable, and no network, pids, IPC or hostname shared with the host."""

from __future__ import annotations

import functools
import os
import stat
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from attuned.report.log import Event, get_logger
from attuned.settings.testing import ExecutorSettings, SandboxMode
from attuned.testing.limits import RunAs, identity_setter, resolve_user

BWRAP = Path("/usr/bin/bwrap")
# Empty and private inside the sandbox: other users' files, sockets and temporary files of the
# host are none of a test's business. /tmp stays writable (many tools insist on it), but is
# a small tmpfs that vanishes with the sandbox.
PRIVATE_DIRS = tuple(  # mounted over inside the sandbox, never written on the host
    Path(p)
    for p in ("/tmp", "/var/tmp", "/run", "/root", "/home")  # noqa: S108
)
PRIVATE_TMPFS_BYTES = 64 * 1024 * 1024
_PROBE_TIMEOUT = 10.0
UNAVAILABLE_EVENT = Event.TESTING_SANDBOX_UNAVAILABLE
_warned: set[str] = set()


@dataclass(frozen=True)
class Launch:
    """How this host starts test processes under the operator's settings."""

    sandboxed: bool
    run_as: RunAs | None


def launch_for(settings: ExecutorSettings, bwrap: Path = BWRAP) -> Launch | str:
    """The launch for these settings, or why tests cannot run as configured (an unknown
    `run_as` user, `sandbox: bwrap` without a working bwrap). With `auto`, a missing sandbox
    is logged once per reason and tests run without it."""
    run_as: RunAs | None = None
    if settings.run_as is not None:
        try:
            run_as = resolve_user(settings.run_as)
        except KeyError:
            return f"testing.run_as: no user {settings.run_as!r} on this host"
        if os.getuid() != 0 and run_as.uid != os.getuid():
            return "testing.run_as needs the daemon to run as root"
    if settings.sandbox == SandboxMode.NONE:
        return Launch(sandboxed=False, run_as=run_as)
    why = probe(run_as, bwrap)
    if why is None:
        return Launch(sandboxed=True, run_as=run_as)
    if settings.sandbox == SandboxMode.BWRAP:
        return f"testing.sandbox is bwrap, but {why}"
    if why not in _warned:
        _warned.add(why)
        get_logger().warning(UNAVAILABLE_EVENT, reason=why, sandbox="none")
    return Launch(sandboxed=False, run_as=run_as)


def bwrap_argv(
    argv: Sequence[str],
    *,
    cwd: Path,
    writable: Iterable[Path],
    hidden: Iterable[Path] = (),
    readable: Iterable[Path] = (),
    revealed: Iterable[Path] = (),
    run_as: RunAs | None = None,
    network: bool = False,
    bwrap: Path = BWRAP,
) -> list[str]:
    """`argv` wrapped in bwrap. Order matters: later mounts cover earlier ones, so `readable`
    (e.g. an interpreter under /root) reappears inside the private dirs, `hidden` wins over
    both, `revealed` (read-only, e.g. the pack's Python environment inside the hidden state
    directory) shows through the hidden paths, and `writable` (the staged copy) wins over
    everything. With `run_as`, bwrap runs as that user, and paths it cannot reach are left
    alone (bwrap could not mount them, and the user cannot open them anyway). `network`
    shares the host's network (for pip only; tests never get it)."""
    args = [str(bwrap), "--ro-bind", "/", "/"]
    privates = [p for p in PRIVATE_DIRS if p.is_dir() and not p.is_symlink()]
    for private in privates:
        args += ["--size", str(PRIVATE_TMPFS_BYTES), "--tmpfs", str(private)]
    shown = _existing(readable, run_as)
    for path in shown:
        args += ["--ro-bind", str(path), str(path)]
    hidden_dirs: list[Path] = []
    for path in _existing(hidden, run_as):
        if _inside(path, privates) and not _inside(path, shown):
            continue  # already out of sight under an empty private dir (and absent there)
        if path.is_dir():
            args += ["--tmpfs", str(path)]
            hidden_dirs.append(path)
        else:  # a file: /dev/null in its place, which a nodev mount refuses to open
            args += ["--ro-bind", "/dev/null", str(path)]
    for path in _existing(revealed, run_as):  # after hiding: shows through a hidden parent
        args += ["--ro-bind", str(path), str(path)]
    for path in _existing(writable, run_as):
        args += ["--bind", str(path), str(path)]
    for path in hidden_dirs:  # not recursive: a writable path inside stays writable
        args += ["--remount-ro", str(path)]
    args += [
        "--proc", "/proc",
        "--dev", "/dev",
        *([] if network else ["--unshare-net"]),  # a loopback of its own, and it is down
        "--unshare-pid",  # pid 1 of the sandbox dies with bwrap, and takes every process along
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--cap-drop", "ALL",  # root inside must not remount, mknod or ptrace its way out
        "--die-with-parent",
        # No --new-session: the tests must stay in the session the executor signals, for
        # their SIGTERM grace period. TIOCSTI, which it guards against, needs a controlling
        # terminal, and the session the executor makes for bwrap has none.
        "--chdir", str(cwd),
        "--",
        *argv,
    ]  # fmt: skip
    return args


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def readable_roots(settings: ExecutorSettings, *pythons: str) -> list[Path]:
    """What must stay readable although it may lie in a private dir (a pyenv or venv under
    /root or /home): the operator's `readable_paths`, the directories of `PATH`, and the
    installations of the test interpreters and of the daemon's own (a wrapper script as
    interpreter usually ends in the latter)."""
    roots = [*settings.readable_paths]
    roots += [Path(d) for d in settings.path.split(os.pathsep) if Path(d).is_absolute()]
    for interpreter in (*pythons, sys.executable):
        path = Path(interpreter)
        if not path.is_absolute():
            continue
        roots.append(path.resolve().parent.parent)
        if (path.parent.parent / "pyvenv.cfg").is_file():
            roots.append(path.parent.parent)
        else:
            roots.append(path.parent)
    return roots


@functools.cache
def probe(run_as: RunAs | None = None, bwrap: Path = BWRAP) -> str | None:
    """None when bwrap can build this sandbox here, else why not. Containers without user
    namespaces, or with a seccomp profile that forbids mount, fail here. Cached: the answer
    does not change while the daemon runs."""
    if not bwrap.is_file():
        return f"{bwrap} is not installed (Debian package bubblewrap)"
    argv = bwrap_argv(["true"], cwd=Path("/"), writable=(), run_as=run_as, bwrap=bwrap)
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
            preexec_fn=identity_setter(run_as),
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{bwrap} could not run: {exc}"
    if done.returncode != 0:
        error = done.stderr.decode("utf-8", "replace").strip() or f"exit code {done.returncode}"
        return f"{bwrap} cannot create a sandbox here: {error}"
    return None


def _existing(paths: Iterable[Path], run_as: RunAs | None) -> list[Path]:
    """Absolute, symlink-free paths that exist: bwrap cannot mount on a missing path of the
    read-only root, and nothing missing needs hiding."""
    found: list[Path] = []
    for path in paths:
        real = Path(path).resolve()
        wanted = real.exists() and real != Path("/") and real not in found
        if wanted and (run_as is None or _reachable(real, run_as)):
            found.append(real)
    return found


def _reachable(path: Path, run_as: RunAs) -> bool:
    """Whether `run_as` (without supplementary groups, as the executor runs it) may search
    every directory above `path`, by the permission bits."""
    for directory in path.parents:
        try:
            info = directory.stat()
        except OSError:
            return False
        if info.st_uid == run_as.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == run_as.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True
