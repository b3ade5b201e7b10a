"""Shared bench helpers: synthetic packs, the real daemon as a subprocess, counters, tables.

Kept apart from tests/ on purpose: benchmarks must run without pytest, and a change to a test
fixture must not silently change what a benchmark measures.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:  # the git servers of the tests (tests/reconcile/sources)
    sys.path.insert(1, str(REPO))
Status = dict[str, Any]
Result = dict[str, Any]

PASSING_TEST = "#!/bin/sh\necho 'Total Tests: 1'\necho 'Passed: 1'\necho 'Failed: 0'\n"
ACTIONS_PER_PACK = 8  # 1 manifest + 1 test + 8 x (yaml + sh) + 2 triggers = 20 files


# -- synthetic packs ----------------------------------------------------------------------


def write_pack(root: Path, ref: str, version: str = "1.0.0", *, salt: str = "") -> Path:
    """A pack of 20 small files (8 actions with scripts, 2 triggers, one trivial test).

    `salt` changes one script's content without changing the version (a reinstall).
    """
    manifest = {
        "ref": ref,
        "label": ref.replace("-", " ").title(),
        "description": f"synthetic bench pack {ref}",
        "version": version,
        "author": "attuned bench",
        "runtime_deps": ["shell"],
        "conf_schema": {"greeting": {"type": "string", "default": "Hello"}},
        "testing": {
            "enabled": True,
            "runners": {
                "shell": {
                    "type": "script",
                    "entry_point": "tests/run_tests.sh",
                    "timeout": 30,
                    "result_format": "simple",
                }
            },
        },
    }
    files: dict[str, str] = {"pack.yaml": yaml.safe_dump(manifest, sort_keys=False)}
    for k in range(ACTIONS_PER_PACK):
        files[f"actions/step{k}.yaml"] = yaml.safe_dump(
            {
                "ref": f"{ref}.step{k}",
                "label": f"Step {k}",
                "description": f"step {k} of {ref}",
                "runner_type": "shell",
                "entry_point": f"step{k}.sh",
                "parameters": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "default": "world"}},
                },
            },
            sort_keys=False,
        )
        files[f"actions/step{k}.sh"] = (
            f"#!/bin/sh\n# step {k} of {ref} {salt if k == 0 else ''}\n"
            + 'echo "${GREETING:-Hello}, ${1:-world}!"\n' * 8
        )
    for k in range(2):
        files[f"triggers/event{k}.yaml"] = yaml.safe_dump(
            {
                "ref": f"{ref}.event{k}",
                "label": f"Event {k}",
                "description": f"event {k} of {ref}",
                "output": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
            sort_keys=False,
        )
    files["tests/run_tests.sh"] = PASSING_TEST
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if relative.endswith(".sh"):
            path.chmod(0o755)
    return root


def drop_pack(
    folder: Path, ref: str, version: str = "1.0.0", *, salt: str = ""
) -> tuple[float, float]:
    """Write a pack under a dot-name, then rename it into `folder` (the documented atomic
    drop); returns (time.monotonic(), time.time()) taken just before the rename."""
    staging = folder / f".{ref}.incoming"
    shutil.rmtree(staging, ignore_errors=True)
    write_pack(staging, ref, version, salt=salt)
    target = folder / ref
    if target.exists():
        shutil.rmtree(target)
    started, wall = time.monotonic(), time.time()
    staging.rename(target)
    return started, wall


# -- statistics and tables ----------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: with few samples, p95 is the worst one, not an invention."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p95": percentile(values, 0.95),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def target(name: str, value: float, limit: float, *, at_least: bool = False) -> dict[str, Any]:
    """One goal of the issue: met when value <= limit (or >= with at_least)."""
    met = value >= limit if at_least else value <= limit
    return {"target": name, "value": value, "limit": limit, "met": met}


def render(result: Result) -> str:
    """A scenario's result as Markdown: title, parameters, tables, targets, notes."""
    out = [f"## {result['title']}", ""]
    if result.get("params"):
        out += ["parameters: " + ", ".join(f"{k}={v}" for k, v in result["params"].items()), ""]
    for table in result.get("tables", []):
        if table.get("caption"):
            out += [table["caption"], ""]
        out += [markdown_table(table["columns"], table["rows"]), ""]
    if result.get("targets"):
        rows = [
            [t["target"], f"{t['value']:.4g}", f"{t['limit']:.4g}", "met" if t["met"] else "MISSED"]
            for t in result["targets"]
        ]
        out += [markdown_table(["target", "measured", "goal", ""], rows), ""]
    out += [f"- {note}" for note in result.get("notes", [])]
    return "\n".join(out).rstrip() + "\n"


def main(run: Callable[[bool], Result], doc: str | None) -> None:
    """`python bench/<scenario>.py [--quick] [--json PATH]` for one scenario alone."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size (CI)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    options = parser.parse_args()
    result = run(options.quick)
    print(render(result))
    if options.json:
        options.json.write_text(json.dumps(result, indent=1, default=str))


# -- scratch space and logging ---------------------------------------------------------------


@contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A temporary directory on the default temp filesystem, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"attuned-bench-{name}-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def quiet_logging(path: Path, level: str = "warning") -> None:
    """attuned run in-process logs to a file, so stdout stays the results table."""
    from attuned.report.log import configure_logging

    configure_logging(level, stream=path.open("a"), json=True)


# -- counting what a pass does ------------------------------------------------------------


class WriteCounter:
    """Statements that change the database, seen at the driver for every engine here."""

    def __init__(self) -> None:
        from sqlalchemy import Engine, event

        self.writes = 0
        self.write_transactions = 0  # BEGIN IMMEDIATE: attuned's write transactions
        self.statements = 0
        self._event = event
        self._engine = Engine
        event.listen(Engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        self.statements += 1
        verb = statement.lstrip().split(None, 2)
        head = verb[0].upper() if verb else ""
        if head in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
            many = _rest[1] if len(_rest) > 1 else False
            self.writes += len(params) if many and params else 1
        elif head == "BEGIN" and len(verb) > 1 and verb[1].upper().startswith("IMMEDIATE"):
            self.write_transactions += 1

    def snapshot(self) -> tuple[int, int, int]:
        return self.writes, self.write_transactions, self.statements

    def close(self) -> None:
        self._event.remove(self._engine, "before_cursor_execute", self._seen)


@dataclass
class ReadCounter:
    """Files opened for reading below labelled roots, counted by a `sys.addaudithook` hook
    (it sees `open()` and `os.open()`), so no code path of attuned can read unnoticed."""

    roots: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    active: bool = False
    ignored: frozenset[str] = frozenset()  # paths not counted (the stat cache file itself)

    def watch(self, **roots: Path) -> None:
        self.roots = {label: os.path.realpath(p) + os.sep for label, p in roots.items()}
        self.reset()

    def reset(self) -> None:
        self.counts = dict.fromkeys(self.roots, 0)
        self.examples = {}

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event != "open":
            return
        path, mode, flags = args
        if not isinstance(path, str | bytes | os.PathLike):
            return  # an fd
        if mode is None:  # os.open: a new file (mkstemp) or a directory is not a read
            if flags & (os.O_DIRECTORY | os.O_CREAT) or flags & os.O_ACCMODE == os.O_WRONLY:
                return
        elif "r" not in mode:
            return
        text = os.fsdecode(path)
        if text in self.ignored:
            return
        for label, root in self.roots.items():
            if text.startswith(root) or os.path.realpath(text).startswith(root):
                self.counts[label] += 1
                self.examples.setdefault(label, text)
                return


_READS: ReadCounter | None = None


def read_counter() -> ReadCounter:
    """The process's one ReadCounter (audit hooks cannot be removed, so install once)."""
    global _READS
    if _READS is None:
        _READS = ReadCounter()
        sys.addaudithook(_READS.hook)
    return _READS


# -- the real daemon as a subprocess -------------------------------------------------------


class StatusWatch:
    """Wakes on each atomic replacement of the status file (inotify), so a latency is not
    rounded up to a polling interval of the benchmark itself."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.changed = threading.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        watch = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                names = {os.path.basename(os.fsdecode(event.src_path))}
                names.add(os.path.basename(os.fsdecode(getattr(event, "dest_path", "") or "")))
                if path.name in names:
                    watch.changed.set()

        self._observer = Observer()
        self._observer.schedule(Handler(), str(path.parent), recursive=False)
        self._observer.start()

    def read(self) -> Status:
        try:
            return dict(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return {}

    def wait(
        self,
        predicate: Callable[[Status], bool],
        timeout: float,
        alive: Callable[[], str | None] = lambda: None,
    ) -> tuple[Status, float]:
        """(status, time.monotonic() when it was read) once `predicate` holds."""
        deadline = time.monotonic() + timeout
        while True:
            self.changed.clear()
            seen = time.monotonic()
            status = self.read()
            if status and predicate(status):
                return status, seen
            problem = alive()
            if problem:
                raise RuntimeError(problem)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"status never matched; last: {json.dumps(status)[:1500]}")
            self.changed.wait(timeout=min(left, 0.5))

    def close(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)


def attuned_bin() -> str:
    return str(Path(sys.executable).parent / "attuned")


class DaemonProcess:
    """One `attuned run` on its own state directory, config and log file."""

    def __init__(
        self,
        root: Path,
        sources: list[dict[str, Any]],
        *,
        reconcile: dict[str, Any] | None = None,
        database_url: str | None = None,
    ) -> None:
        self.root = root
        self.config_path = root / "attuned.yaml"
        self.status_path = root / "run" / "status.json"
        self.log_path = root / "daemon.log"
        self.config: dict[str, Any] = {
            "state_dir": str(root / "state"),
            "status_file": str(self.status_path),
            "log": {"level": "info", "format": "json"},
            "reconcile": reconcile or {},
            "sources": sources,
        }
        if database_url:
            self.config["database"] = {"url": database_url}
        self.proc: subprocess.Popen[bytes] | None = None
        self.watch: StatusWatch | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 600) -> Status:
        """Start and wait for the first pass to finish; returns that status."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.watch = StatusWatch(self.status_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNED_")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [attuned_bin(), "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
            )
        status, _ = self.wait(
            lambda s: (
                s.get("daemon", {}).get("pid") == self.pid
                and s["daemon"]["phase"] == "idle"
                and s.get("last_reconcile") is not None
            ),
            timeout,
        )
        return status

    def _alive(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
            return f"attuned exited with {self.proc.returncode}:\n{tail}"
        return None

    def wait(self, predicate: Callable[[Status], bool], timeout: float) -> tuple[Status, float]:
        assert self.watch is not None
        return self.watch.wait(predicate, timeout, self._alive)

    def wait_pack(
        self, ref: str, version: str | None = None, timeout: float = 120
    ) -> tuple[Status, float]:
        """Until `ref` is active (at `version`); returns (status, when it was seen)."""

        def active(status: Status) -> bool:
            pack = status.get("packs", {}).get(ref)
            return bool(pack) and pack["state"] == "active" and version in (None, pack["version"])

        return self.wait(active, timeout)

    def full_pass(self, timeout: float = 600) -> Status:
        """Ask for a full pass (SIGUSR1, as the periodic resync does) and wait for its end."""
        before = (self.status().get("last_reconcile") or {}).get("finished_at")
        os.kill(self.pid, signal.SIGUSR1)
        status, _ = self.wait(
            lambda s: (
                (s.get("last_reconcile") or {}).get("finished_at") != before
                and s["last_reconcile"]["trigger"] == "full"
                and s["daemon"]["phase"] == "idle"
            ),
            timeout,
        )
        return status

    def wait_idle(self, timeout: float = 120) -> Status:
        return self.wait(lambda s: s.get("daemon", {}).get("phase") == "idle", timeout)[0]

    def status(self) -> Status:
        assert self.watch is not None
        return self.watch.read()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The daemon's log events (all, or those named `name`), each with `at`: epoch s."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and (name is None or f'"{name}"' in line):
                event = json.loads(line)
                if name is None or event.get("event") == name:
                    stamp = event.get("timestamp", "").replace("Z", "+00:00")
                    event["at"] = datetime.fromisoformat(stamp).timestamp() if stamp else 0.0
                    found.append(event)
        return found


@contextmanager
def running(daemon: DaemonProcess, timeout: float = 600) -> Iterator[DaemonProcess]:
    try:
        daemon.start(timeout)
        yield daemon
    finally:
        daemon.stop()


# -- the machine ----------------------------------------------------------------------------


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _disk(path: Path) -> str:
    """Filesystem type and device of `path`, and whether the device is rotational."""
    best, kind, device = "", "unknown", "unknown"
    real = os.path.realpath(path)
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mount, fstype = line.split()[:3]
            inside = real == mount or real.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind, device = mount, fstype, dev
    except OSError:
        pass
    rotational = Path(f"/sys/block/{os.path.basename(device)}/queue/rotational")
    media = ""
    if rotational.exists():
        media = ", rotational" if rotational.read_text().strip() == "1" else ", non-rotational"
    return f"{kind} on {device}{media}"


def machine() -> dict[str, Any]:
    kib = int(_first("/proc/meminfo", "MemTotal").split()[0] or 0)
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(kib / 1024 / 1024, 1),
        "disk": _disk(Path(tempfile.gettempdir())),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


# -- /proc ----------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_status(proc: Path) -> dict[str, str]:
    """/proc/<pid>/status (or /proc/<pid>/task/<tid>/status) as a dict."""
    found = {}
    for line in (proc / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        found[key] = value.strip()
    return found


def context_switches(pid: int) -> int:
    """Voluntary context switches of every thread: how often the process woke up."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int(proc_status(task)["voluntary_ctxt_switches"])
        except (OSError, KeyError, ValueError):
            continue
    return total


def run_child(
    script: str, arg: Path, *, what: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], float]:
    """Run `script --child arg` (a measured process); its last stdout line as JSON, and the
    wall time of the whole process."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, script, "--child", str(arg)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall
