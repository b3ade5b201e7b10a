"""Real git servers on 127.0.0.1 for tests: `git daemon` (git://) and smart HTTP.

Smart HTTP is `git http-backend` behind a small CGI server written here (libgit2 cannot speak
dumb HTTP), optionally behind basic auth. Each server counts the requests it answered, so a
test can tell "no network call was made" from the server's side. `stop()` and `start()` keep
the port, as a restarted server would.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run the git CLI (the tests' side: authors push with it); return its stdout."""
    env = {**os.environ, **GIT_ENV, "HOME": str(cwd or Path.cwd())}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=30
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class PackRepo:
    """A bare repository that serves packs, and a working clone authors commit and push from."""

    def __init__(self, root: Path, name: str = "packs.git") -> None:
        self.name = name
        self.bare = root / "served" / name
        self.work = root / "work" / name.removesuffix(".git")
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        # served over HTTP too: let http-backend answer without a REMOTE_USER check
        git("config", "http.receivepack", "true", cwd=self.bare)
        git("init", "-q", "-b", "main", str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def write(self, files: Mapping[str, str | None]) -> None:
        """Write (or, for None, delete) files in the working clone."""
        for rel, text in files.items():
            path = self.work / rel
            if text is None:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def commit(self, message: str, files: Mapping[str, str | None] | None = None) -> str:
        self.write(files or {})
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        return self.head()

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str, *, annotated: bool = False, force: bool = False) -> None:
        args = ["tag", *(["-a", "-m", name] if annotated else []), *(["-f"] if force else [])]
        git(*args, name, cwd=self.work)

    def push(self, *refspecs: str, force: bool = False) -> None:
        git("push", "-q", *(["--force"] if force else []), "origin", *refspecs, cwd=self.work)


class _ServerProcess:
    """A server run as its own process group, so that its per-connection children stop too."""

    _proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(timeout=5)
        self._proc = None


class GitDaemon(_ServerProcess):
    """`git daemon` serving every repository under `base`; `requests` counts upload-packs."""

    def __init__(self, base: Path, log: Path) -> None:
        self.base = base
        self.log = log
        self.port = free_port()

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    "--verbose",
                    "--export-all",
                    "--enable=receive-pack",
                    "--informative-errors",
                    f"--base-path={self.base}",
                    "--listen=127.0.0.1",
                    f"--port={self.port}",
                    str(self.base),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, **GIT_ENV},
                start_new_session=True,  # its per-connection children die with it
            )
        wait_for_port(self.port)

    @property
    def requests(self) -> int:
        """Connections that asked for a repository (each list or fetch is one)."""
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count("Request upload-pack")


class _CgiHandler(BaseHTTPRequestHandler):
    """Runs `git http-backend` for each request, as Apache or nginx+fcgiwrap would."""

    server: _GitHttpServer
    disable_nagle_algorithm = True  # else each small write waits ~40 ms for an ACK
    protocol_version = "HTTP/1.0"
    backend: ClassVar[str] = os.path.join(
        subprocess.run(
            ["git", "--exec-path"], capture_output=True, text=True, check=True
        ).stdout.strip(),
        "git-http-backend",
    )

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        owner = self.server.owner
        owner.record(f"{self.command} {self.path}")
        if owner.drop_fetches and self.command == "POST":
            self.close_connection = True  # as if the server died after listing its refs
            return
        user = self._authorised(owner.auth)
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {
            **os.environ,
            **GIT_ENV,
            "GIT_PROJECT_ROOT": str(owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": user,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        body = self._body()
        env["CONTENT_LENGTH"] = str(len(body))
        proc = subprocess.run(
            [self.backend], input=body, env=env, capture_output=True, check=False, timeout=30
        )
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _authorised(self, auth: tuple[str, str] | None) -> str | None:
        """The user name to pass on, or None for a 401."""
        if auth is None:
            return "anonymous"
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if (user, password) == auth else None

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class _GitHttpServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    owner: SmartHttpServer


class SmartHttpServer:
    """Smart HTTP for every repository under `root`; `auth=(user, password)` wants basic auth."""

    def __init__(self, root: Path, *, auth: tuple[str, str] | None = None) -> None:
        self.root = root
        self.auth = auth
        self.drop_fetches = False  # True: refs are listed, but every fetch is cut off
        self.port = free_port()
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._server: _GitHttpServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, name: str, *, user: str | None = None) -> str:
        userinfo = f"{user}@" if user else ""
        return f"http://{userinfo}127.0.0.1:{self.port}/{name}"

    def record(self, line: str) -> None:
        with self._lock:
            self.log.append(line)

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.log)

    def start(self) -> None:
        server = _GitHttpServer(("127.0.0.1", self.port), _CgiHandler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
        self._server = None


class SilentServer:
    """Accepts TCP connections and never answers: a hung server, for timeouts."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)  # connections wait in the backlog, unanswered
        self.port = int(self._sock.getsockname()[1])

    def url(self, scheme: str, name: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self._sock.close()


SSHD = Path("/usr/sbin/sshd")


class SshServer(_ServerProcess):
    """sshd on 127.0.0.1 letting one new client key in as the current user: git over ssh."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.client_key = root / "client_key"
        root.mkdir(parents=True, exist_ok=True)
        for key in (root / "host_key", self.client_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        (root / "authorized_keys").write_bytes(self.client_key.with_suffix(".pub").read_bytes())
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPermitRootLogin prohibit-password\n"
        )

    @property
    def known_hosts_line(self) -> str:
        kind, key = (self.root / "host_key.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def url(self, path: Path) -> str:
        return f"ssh://{pwd.getpwuid(os.getuid()).pw_name}@127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation dir
        self._proc = subprocess.Popen(
            [str(SSHD), "-D", "-f", str(self.root / "sshd_config"), "-E", str(self.root / "log")],
            start_new_session=True,
        )
        wait_for_port(self.port)


# -- fixtures (a pytest plugin of tests/conftest.py): each serves the test module's `repo` ----


@pytest.fixture
def git_daemon(repo: PackRepo, tmp_path: Path) -> Iterator[GitDaemon]:
    """`git daemon` on loopback serving the folder of the module's `repo` fixture."""
    server = GitDaemon(repo.bare.parent, tmp_path / "git-daemon.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def git_http(repo: PackRepo) -> Iterator[SmartHttpServer]:
    """Smart HTTP (`git http-backend`) on loopback serving the module's `repo` folder."""
    server = SmartHttpServer(repo.bare.parent)
    server.start()
    yield server
    server.stop()
