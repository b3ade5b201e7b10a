"""One Python virtual environment per set of dependencies, built once and shared.

```
<environments.path>/                 default <state_dir>/envs
  3f2a9c0d1e2b4a5f/                  a venv; the name is the first 16 hex digits of its key
    .attuned-env.json                written last: without it the directory is incomplete
    .attuned-last-used               touched whenever a pack's tests use it
  .locks/3f2a9c0d1e2b4a5f.lock       flock: shared while used, exclusive while built/removed
  .build-3f2a9c0d1e2b4a5f-xxxx/      HOME, TMPDIR and requirements of a build in progress
  .pip-cache/                        pip's download and wheel cache, shared by all builds
```

The key is a sha256 over the interpreter (as configured, its real path and version), the
normalized requirements, where pip looks (credentials redacted, so a rotated token does not
rebuild everything) and the runner packages it inherits. Packs with the same requirements
share one environment. An environment is built at its final path (console scripts embed it in
their shebangs) by `python -m venv` and `pip install`, in a scrubbed environment, in its own
process session with a deadline, and under bubblewrap (with network) when tests are
sandboxed: pip runs the build code of source distributions, which packs choose.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attuned.errors import EnvironmentFailed
from attuned.pack.requirements import normalize, stored_requirements
from attuned.report.log import Event, get_logger
from attuned.settings.envs import EnvironmentSettings, redact_url
from attuned.settings.testing import ExecutorSettings
from attuned.testing.environment import PackEnvironment
from attuned.testing.staging import remove_tree

if TYPE_CHECKING:  # what builds an environment is imported by the first build (_Step)
    from attuned.testing.process import ProcessOutcome

log = get_logger()

MARKER = ".attuned-env.json"
LAST_USED = ".attuned-last-used"
LOCKS = ".locks"
PIP_CACHE = ".pip-cache"
BUILD_PREFIX = ".build-"
RUNNER_PTH = "_attuned_runner_packages.pth"
KEY_LENGTH = 16
FORMAT = 1  # bump when the layout of an environment changes: every key changes with it
_KEY_NAME = re.compile(r"^[0-9a-f]{16}$")
_LOCK_POLL = 0.1
_PROBE_TIMEOUT = 60.0
_KIB = 1024
# what pip needs from the daemon's environment to reach an index: proxies and CA bundles
PASSED_THROUGH = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
)
# The interpreter's identity, and the directories it imports installed packages from: all
# of sys.path but the standard library (site-packages, dist-packages, .pth additions).
_PROBE = """\
import json, os, sys, sysconfig
std = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}
std |= {os.path.join(p, "lib-dynload") for p in set(std)}
extra = [p for p in sys.path if p and p not in std and not p.endswith(".zip") and os.path.isdir(p)]
print(json.dumps({"version": sys.version, "executable": sys.executable, "site": extra}))
"""


@dataclass(frozen=True)
class Interpreter:
    path: str  # as configured (made absolute): what tests run with
    real: str  # symlinks resolved
    version: str
    site_packages: tuple[str, ...]


@dataclass(frozen=True)
class EnvironmentInfo:
    """One directory under the environments root, as `attuned envs list` shows it."""

    key: str
    path: Path
    complete: bool
    last_used: float
    size_bytes: int
    marker: dict[str, Any] = field(default_factory=dict)


@dataclass
class _BuildLog:
    """What the build's commands printed, redacted, one header per command."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def add(self, command: str, outcome: ProcessOutcome | None, limit: int) -> None:
        self.stdout.append(f"$ {command}\n")
        if outcome is not None:
            self.stdout.append(redact_url(outcome.stdout.text(limit)))
            err = redact_url(outcome.stderr.text(limit))
            if err:
                self.stderr.append(f"$ {command}\n{err}")

    def note(self, text: str) -> None:
        self.stdout.append(f"# {text}\n")

    def failure(self, message: str, outcome: ProcessOutcome | None = None) -> EnvironmentFailed:
        from attuned.testing.process import Ending

        return EnvironmentFailed(
            message,
            stdout="".join(self.stdout),
            stderr="".join(self.stderr),
            build_exit_code=outcome.returncode if outcome else None,
            cancelled=outcome is not None and outcome.ending is Ending.CANCELLED,
        )


class _KeyLock:
    """An flock on `.locks/<key16>.lock`: shared while tests use the environment, exclusive
    while it is built or removed. Works across threads (each acquire opens the file anew)
    and processes (the CLI next to the daemon). The file may be removed by the garbage
    collector while another waits on it: the waiter then locks the new file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(
        self, *, exclusive: bool, wait: bool = True, cancel: threading.Event | None = None
    ) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                while True:
                    try:
                        fcntl.flock(fd, mode)
                        break
                    except BlockingIOError:
                        if not wait:
                            os.close(fd)
                            return False
                        if cancel is not None and cancel.is_set():
                            raise EnvironmentFailed(
                                "cancelled while waiting for the environment", cancelled=True
                            ) from None
                        time.sleep(_LOCK_POLL)
                try:
                    current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    current = False
            except BaseException:
                os.close(fd)
                raise
            if current:
                self._fd = fd
                return True
            os.close(fd)  # removed while we waited: lock the one that is there now

    def downgrade(self) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self, *, remove: bool = False) -> None:
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


class PythonEnvironments:
    """Prepares, shares, lists and removes pack environments under `root`."""

    def __init__(
        self,
        root: Path,
        settings: EnvironmentSettings | None = None,
        testing: ExecutorSettings | None = None,
        *,
        hidden_paths: Iterable[Path] = (),
    ) -> None:
        """`testing`: the executor's settings (interpreter, PATH, sandbox, output limit);
        `hidden_paths`: what a sandboxed pip must not see (the daemon's state, database and
        config), as for tests."""
        self.root = root.absolute()
        self.settings = settings or EnvironmentSettings()
        self.testing = testing or ExecutorSettings()
        self.hidden_paths = (*self.testing.hidden_paths, *hidden_paths)
        self._guard = threading.Lock()
        self._interpreters: dict[tuple[str, int, int], Interpreter] = {}
        self._stored: dict[tuple[str, int, int], list[str] | None] = {}

    # -- keys --------------------------------------------------------------------------------

    def interpreter(self) -> Interpreter:
        """`testing.python`, probed once per version of its file."""
        configured = self.testing.python
        found = (
            configured if "/" in configured else shutil.which(configured, path=self.testing.path)
        )
        if found is None:
            raise EnvironmentFailed(f"testing.python {configured!r} is not on PATH")
        path = os.path.abspath(found)
        try:
            info = os.stat(path)
        except OSError as exc:
            raise EnvironmentFailed(f"testing.python {path}: {exc.strerror}") from None
        cache_key = (path, info.st_mtime_ns, info.st_ino)
        with self._guard:
            known = self._interpreters.get(cache_key)
        if known is not None:
            return known
        try:
            done = self._probe([path, "-I", "-c", _PROBE], check=False)
            data = json.loads(done.stdout) if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise EnvironmentFailed(f"testing.python {path} cannot be run: {exc}") from None
        if not isinstance(data, dict):
            why = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
            raise EnvironmentFailed(f"testing.python {path} cannot be run: {why[0]}")
        found_interpreter = Interpreter(
            path=path,
            real=os.path.realpath(path),
            version=str(data["version"]),
            site_packages=tuple(str(p) for p in data["site"]),
        )
        with self._guard:
            self._interpreters[cache_key] = found_interpreter
        return found_interpreter

    def _probe(self, argv: list[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        """A short question to an interpreter, with the tests' PATH and nothing else."""
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=check,
            stdin=subprocess.DEVNULL,
            env={"PATH": self.testing.path, "LANG": self.testing.lang},
        )

    def _sources(self) -> dict[str, str]:
        return {k: redact_url(v) for k, v in self.settings.pip_sources().items()}

    def key_for(self, requirements: Sequence[str]) -> str:
        """The full key (64 hex digits) of the environment for these requirements."""
        interpreter = self.interpreter()
        inherited = list(interpreter.site_packages) if self.settings.inherit_runner_packages else []
        material = {
            "format": FORMAT,
            "interpreter": interpreter.path,
            "real": interpreter.real,
            "version": interpreter.version,
            "requirements": normalize(list(requirements)),
            "sources": self._sources(),
            "inherit": inherited,
        }
        blob = json.dumps(material, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def path_for(self, key: str) -> Path:
        return self.root / key[:KEY_LENGTH]

    def _lock(self, key: str) -> _KeyLock:
        return _KeyLock(self.root / LOCKS / f"{key[:KEY_LENGTH]}.lock")

    # -- use -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def use(
        self,
        requirements: Sequence[str],
        *,
        pack: str,
        cancel: threading.Event | None = None,
    ) -> Iterator[PackEnvironment]:
        """The environment for `requirements`, built first if needed, held (shared lock)
        until the block ends so the garbage collector leaves it alone.

        Raises EnvironmentFailed (with the build's log) when it cannot be built."""
        key = self.key_for(requirements)
        env_dir = self.path_for(key)
        lock = self._lock(key)
        lock.acquire(exclusive=False, cancel=cancel)
        try:
            if not self._complete(env_dir, key):
                lock.release()
                lock.acquire(exclusive=True, cancel=cancel)
                if not self._complete(env_dir, key):  # nobody built it while we waited
                    self._create(env_dir, key, normalize(list(requirements)), pack, cancel)
                _touch(env_dir / LAST_USED)
                lock.downgrade()
            else:
                _touch(env_dir / LAST_USED)
            yield PackEnvironment(env_dir)
        finally:
            lock.release()

    @staticmethod
    def _complete(env_dir: Path, key: str) -> bool:
        marker = _read_marker(env_dir)
        return marker.get("key") == key and (env_dir / "bin" / "python").exists()

    def _create(
        self,
        env_dir: Path,
        key: str,
        requirements: list[str],
        pack: str,
        cancel: threading.Event | None,
    ) -> None:
        started = time.monotonic()
        interpreter = self.interpreter()
        build_log = _BuildLog()
        fields = dict(env=key[:KEY_LENGTH], pack=pack, requirements=len(requirements))
        if env_dir.exists():  # a crash or a failed removal left it half made
            build_log.note(f"removing the incomplete environment {env_dir}")
            _remove_env(env_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / PIP_CACHE).mkdir(exist_ok=True)
        env_dir.mkdir()
        build = Path(tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{key[:KEY_LENGTH]}-", dir=self.root))
        try:
            for private in ("home", "tmp"):
                (build / private).mkdir()
            requirements_file = build / "requirements.txt"
            requirements_file.write_text("".join(f"{r}\n" for r in requirements))
            build_log.note(f"requirements: {', '.join(requirements)}")
            sources = self._sources()
            build_log.note(
                "pip sources: "
                + (", ".join(f"{k}={v}" for k, v in sorted(sources.items())) or "pip's defaults")
            )
            step = _Step(self, interpreter, build, env_dir, started, build_log, cancel)
            step.run("python -m venv", [interpreter.path, "-m", "venv", str(env_dir)])
            purelib = self._purelib(env_dir, build_log)
            step.run(
                "pip install",
                [
                    str(env_dir / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--no-input",
                    "--disable-pip-version-check",
                    "--progress-bar",
                    "off",
                    "-r",
                    str(requirements_file),
                ],
            )
            if self.settings.inherit_runner_packages and interpreter.site_packages:
                # after pip: pip would take these packages as installed already
                (purelib / RUNNER_PTH).write_text(
                    "".join(f"{p}\n" for p in interpreter.site_packages)
                )
            duration_ms = round((time.monotonic() - started) * 1000)
            _write_marker(
                env_dir,
                {
                    "format": FORMAT,
                    "key": key,
                    "interpreter": interpreter.path,
                    "python_version": interpreter.version.split()[0],
                    "requirements": requirements,
                    "sources": sources,
                    "inherit_runner_packages": self.settings.inherit_runner_packages,
                    "created_at": datetime.now(UTC).isoformat(),
                    "created_for": pack,
                    "duration_ms": duration_ms,
                },
            )
        except BaseException as exc:
            _remove_env(env_dir)
            message = exc.message if isinstance(exc, EnvironmentFailed) else str(exc)
            log.warning(
                Event.ENV_FAILED,
                **fields,
                error=message,
                duration_ms=round((time.monotonic() - started) * 1000),
            )
            if isinstance(exc, OSError):
                raise build_log.failure(f"{type(exc).__name__}: {exc}") from exc
            raise
        finally:
            remove_tree(build)
        log.info(Event.ENV_CREATED, **fields, duration_ms=duration_ms, path=str(env_dir))

    def _purelib(self, env_dir: Path, build_log: _BuildLog) -> Path:
        """Where the new environment installs pure-Python packages; asked before pip puts
        anything of the pack's choosing into it."""
        python = env_dir / "bin" / "python"
        script = "import sysconfig; print(sysconfig.get_path('purelib'))"
        try:
            done = self._probe([str(python), "-I", "-c", script], check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise build_log.failure(f"the new environment's python cannot run: {exc}") from None
        return Path(done.stdout.strip())

    # -- upkeep ----------------------------------------------------------------------------

    def pack_keys(self, pack_dirs: Iterable[Path]) -> dict[Path, str]:
        """The key of the environment each stored pack directory uses (those without Python
        dependencies use none). Requirements are read once per directory version."""
        keys: dict[Path, str] = {}
        for pack_dir in pack_dirs:
            requirements = self._stored_requirements(pack_dir)
            if requirements:
                keys[pack_dir] = self.key_for(requirements)
        return keys

    def _stored_requirements(self, pack_dir: Path) -> list[str] | None:
        stamps = []
        for name in ("pack.yaml", "requirements.txt"):
            try:
                stamps.append((pack_dir / name).stat().st_mtime_ns)
            except OSError:
                stamps.append(0)
        cache_key = (str(pack_dir), stamps[0], stamps[1])
        with self._guard:
            if cache_key in self._stored:
                return self._stored[cache_key]
        requirements = stored_requirements(pack_dir)
        with self._guard:
            self._stored[cache_key] = requirements
        return requirements

    def anything_to_collect(self, *, grace: float | None = None) -> bool:
        """Whether some environment has been unused for `grace`, or a build left debris:
        a few stats, so callers can skip working out which environments are in use."""
        grace = self.settings.unused_grace if grace is None else grace
        horizon = time.time() - grace
        for entry in self.root.iterdir() if self.root.is_dir() else ():
            if entry.name.startswith(BUILD_PREFIX):
                return True
            if entry.name == LOCKS and any(
                not (self.root / lock.name.removesuffix(".lock")).exists()
                for lock in entry.glob("*.lock")
            ):
                return True
            if _KEY_NAME.match(entry.name) and _last_used(entry) <= horizon:
                return True
        return False

    def collect_garbage(self, in_use: Iterable[str], *, grace: float | None = None) -> list[Path]:
        """Remove environments whose key is not `in_use` and that no pack used for `grace`
        seconds (default `unused_grace`); environments in use or being built are skipped.
        Also removes what crashed builds left behind."""
        grace = self.settings.unused_grace if grace is None else grace
        keep = {key[:KEY_LENGTH] for key in in_use}
        horizon = time.time() - grace
        removed: list[Path] = []
        entries = sorted(self.root.iterdir()) if self.root.is_dir() else []
        for entry in entries:
            name = entry.name
            if _KEY_NAME.match(name):
                if name in keep or _last_used(entry) > horizon:
                    continue
                key16 = name
            elif name.startswith(BUILD_PREFIX):
                key16 = name[len(BUILD_PREFIX) :][:KEY_LENGTH]
            else:
                continue
            lock = self._lock(key16)
            if not lock.acquire(exclusive=True, wait=False):
                continue  # in use, or being built
            try:
                if name.startswith(BUILD_PREFIX):
                    remove_tree(entry)
                    continue
                complete = bool(_read_marker(entry))
                unused_s = round(time.time() - _last_used(entry))
                _remove_env(entry)
                removed.append(entry)
            finally:
                lock.release(remove=not name.startswith(BUILD_PREFIX))
            log.info(
                Event.ENV_REMOVED,
                env=name,
                path=str(entry),
                reason="unused" if complete else "incomplete",
                unused_s=unused_s,
            )
        self._remove_stale_locks()
        return removed

    def _remove_stale_locks(self) -> None:
        """Lock files of environments that do not exist (a failed build leaves one)."""
        locks = self.root / LOCKS
        for path in sorted(locks.glob("*.lock")) if locks.is_dir() else []:
            key16 = path.name.removesuffix(".lock")
            if (self.root / key16).exists() or any(self.root.glob(f"{BUILD_PREFIX}{key16}-*")):
                continue
            lock = _KeyLock(path)
            if lock.acquire(exclusive=True, wait=False):
                lock.release(remove=not (self.root / key16).exists())

    def list(self) -> list[EnvironmentInfo]:
        found = []
        for entry in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if not _KEY_NAME.match(entry.name) or not entry.is_dir():
                continue
            marker = _read_marker(entry)
            found.append(
                EnvironmentInfo(
                    key=str(marker.get("key") or entry.name),
                    path=entry,
                    complete=bool(marker),
                    last_used=_last_used(entry),
                    size_bytes=_size(entry),
                    marker=marker,
                )
            )
        return found


class _Step:
    """Runs the build's commands: one deadline for all of them, sandboxed like the tests
    (with network), in a scrubbed environment, each in its own session."""

    def __init__(
        self,
        owner: PythonEnvironments,
        interpreter: Interpreter,
        build: Path,
        env_dir: Path,
        started: float,
        build_log: _BuildLog,
        cancel: threading.Event | None,
    ) -> None:
        self.owner = owner
        self.interpreter = interpreter
        self.build = build
        self.env_dir = env_dir
        self.deadline = started + owner.settings.create_timeout
        self.log = build_log
        self.cancel = cancel
        self.limit = owner.testing.output_limit_kib * _KIB
        from attuned.testing.sandbox import launch_for

        launch = launch_for(owner.testing.model_copy(update={"run_as": None}))
        if isinstance(launch, str):
            raise build_log.failure(launch)
        self.sandboxed = launch.sandboxed

    def environment(self) -> dict[str, str]:
        testing, settings = self.owner.testing, self.owner.settings
        env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
        env |= {
            "PATH": os.pathsep.join((str(self.env_dir / "bin"), testing.path)),
            "HOME": str(self.build / "home"),
            "TMPDIR": str(self.build / "tmp"),
            "LANG": testing.lang,
            "PIP_CONFIG_FILE": os.devnull,  # the host's pip.conf would change what is built
            "PIP_CACHE_DIR": str(self.owner.root / PIP_CACHE),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "PYTHONNOUSERSITE": "1",
        }
        return env | settings.pip_sources()

    def argv(self, argv: list[str]) -> list[str]:
        if not self.sandboxed:
            return argv
        from attuned.testing.sandbox import bwrap_argv, readable_roots

        owner = self.owner
        readable = readable_roots(owner.testing, self.interpreter.path)
        readable += owner.settings.local_sources()
        resolv = Path("/etc/resolv.conf").resolve()  # often a link into /run (private)
        readable.append(resolv.parent)
        return bwrap_argv(
            argv,
            cwd=self.build,
            writable=(self.env_dir, self.build, owner.root / PIP_CACHE),
            hidden=owner.hidden_paths,
            readable=readable,
            network=True,
        )

    def run(self, name: str, argv: list[str]) -> None:
        from attuned.testing.executor import unwrap_sandbox
        from attuned.testing.process import Ending, run_process
        from attuned.testing.suites import describe_signal

        remaining = self.deadline - time.monotonic()
        timeout_text = (
            f"{name} timed out: creating the environment took longer than "
            f"{self.owner.settings.create_timeout:g} s (environments.create_timeout)"
        )
        if remaining <= 0:
            self.log.add(" ".join(argv), None, self.limit)
            raise self.log.failure(timeout_text)
        outcome = run_process(
            self.argv(argv),
            cwd=self.build,
            env=self.environment(),
            timeout=remaining,
            kill_grace=self.owner.testing.kill_grace,
            capture_limit=self.limit,
            cancel=self.cancel,
            spare_leader_from_term=self.sandboxed,
        )
        if self.sandboxed:
            outcome = unwrap_sandbox(outcome)
        self.log.add(" ".join(argv), outcome, self.limit)
        if outcome.ending is Ending.TIMED_OUT:
            raise self.log.failure(timeout_text, outcome)
        if outcome.ending is Ending.CANCELLED:
            raise self.log.failure(f"{name} was cancelled before it finished", outcome)
        if outcome.ending is Ending.NOT_STARTED:
            raise self.log.failure(f"could not start {argv[0]}: {outcome.start_error}", outcome)
        if outcome.signal is not None:
            raise self.log.failure(
                f"{name} was killed by signal {describe_signal(outcome.signal)}", outcome
            )
        if outcome.returncode != 0:
            why = _last_error(outcome)
            label = "pip" if name.startswith("pip") else name
            raise self.log.failure(
                f"{label} exited {outcome.returncode}" + (f": {why}" if why else ""), outcome
            )


def _last_error(outcome: ProcessOutcome) -> str:
    """The line that says what went wrong: pip's last `ERROR:` line, else the last line."""
    for text in (outcome.stderr.text(), outcome.stdout.text()):
        lines = [line.strip() for line in redact_url(text).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR:")]
        if errors or lines:
            line = (errors or lines)[-1]
            return line if len(line) <= 300 else line[:297] + "..."
    return ""


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.touch()
        os.utime(path)


def _read_marker(env_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((env_dir / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_marker(env_dir: Path, data: dict[str, Any]) -> None:
    tmp = env_dir / f"{MARKER}.tmp"
    with tmp.open("w") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, env_dir / MARKER)


def _remove_env(env_dir: Path) -> None:
    """The marker first: a removal cut short leaves an incomplete environment, never one
    that looks complete."""
    with contextlib.suppress(FileNotFoundError):
        (env_dir / MARKER).unlink()
    if env_dir.exists():
        remove_tree(env_dir)


def _last_used(env_dir: Path) -> float:
    """When the environment was last used or made; an incomplete one: last changed."""
    times = []
    for path in (env_dir / LAST_USED, env_dir / MARKER):
        with contextlib.suppress(OSError):
            times.append(path.stat().st_mtime)
    if not times:
        with contextlib.suppress(OSError):
            times.append(env_dir.stat().st_mtime)
    return max(times, default=0.0)


def _size(root: Path) -> int:
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total
