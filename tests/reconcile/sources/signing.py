"""Real signing keys made in a test, and commits and tags signed with them by the git CLI.

SSH: `ssh-keygen -t ed25519` keys and an allowed-signers file. OpenPGP: a key made by gpg in
its own short-named GNUPGHOME (the agent's socket path must stay short), exported to a
keyring file; an expired key is made and used at a faked past time, a revoked one has its
own revocation certificate imported before it is exported.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.reconcile.sources.git_servers import GIT_ENV, PackRepo


def run(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        list(args),
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


class SshKey:
    """An ed25519 key pair and the principal it signs as."""

    def __init__(self, folder: Path, name: str, principal: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.private = folder / name
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(self.private))
        self.public = self.private.with_suffix(".pub")
        self.principal = principal
        self.env: dict[str, str] = {}  # no GnuPG home needed

    @property
    def fingerprint(self) -> str:
        """`SHA256:…`, as ssh-keygen and git show it."""
        blob = base64.b64decode(self.public.read_text().split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")

    def allowed_line(self, options: str = "") -> str:
        key = " ".join(self.public.read_text().split()[:2])
        return f"{self.principal} {options + ' ' if options else ''}{key}\n"

    def git_options(self) -> list[str]:
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.private}"]


class GpgKey:
    """An OpenPGP key in its own GNUPGHOME; `faked` makes and uses it at that past time."""

    def __init__(self, uid: str, *, expire: str = "1d", faked: str | None = None) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
        self.home.chmod(0o700)
        self.env = {"GNUPGHOME": str(self.home)}
        self._faked = ["--faked-system-time", faked] if faked else []
        gpg = ["gpg", "--batch", "--passphrase", "", *self._faked]
        run(*gpg, "--quick-gen-key", uid, "ed25519", "sign", expire, env=self.env)
        listing = run("gpg", "--batch", "--with-colons", "--list-keys", env=self.env)
        self.fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
        )
        self.uid = uid

    def export(self, path: Path) -> Path:
        path.write_bytes(
            subprocess.run(
                ["gpg", "--batch", "--export", self.fingerprint],
                env={**os.environ, **self.env},
                capture_output=True,
                check=True,
            ).stdout
        )
        return path

    def revoke(self) -> None:
        """Import the key's own revocation certificate (gpg wrote it when making the key)."""
        cert = self.home / "openpgp-revocs.d" / f"{self.fingerprint}.rev"
        text = cert.read_text().replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK", "-----BEGIN PGP PUBLIC KEY BLOCK"
        )
        fixed = self.home / "revoke.asc"
        fixed.write_text(text)
        run("gpg", "--batch", "--import", str(fixed), env=self.env)

    def git_options(self) -> list[str]:
        program = "gpg"
        if self._faked:  # git runs gpg itself: a wrapper gives it the faked time
            wrapper = self.home / "gpg-at"
            wrapper.write_text(f'#!/bin/sh\nexec gpg {" ".join(self._faked)} "$@"\n')
            wrapper.chmod(0o755)
            program = str(wrapper)
        return ["-c", f"gpg.program={program}", "-c", f"user.signingkey={self.fingerprint}"]

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"], env={**os.environ, **self.env}, check=False
        )
        shutil.rmtree(self.home, ignore_errors=True)


Key = SshKey | GpgKey


def signed_git(repo: PackRepo, key: Key | None, *args: str) -> str:
    """The git CLI in the working clone, signing with `key` (None: no key at all)."""
    options = key.git_options() if key is not None else []
    env = {**GIT_ENV, "HOME": str(repo.work), **(key.env if key is not None else {})}
    return run("git", *options, *args, env=env, cwd=repo.work)


def commit(repo: PackRepo, message: str, files: Mapping[str, str | None], key: Key | None) -> str:
    """A commit of `files` on main, signed by `key` (None: unsigned), pushed; its sha."""
    repo.write(files)
    signed_git(repo, None, "add", "-A")
    signed_git(repo, key, "commit", "-q", "--allow-empty", *(["-S"] if key else []), "-m", message)
    repo.push("main")
    return repo.head()


def tag(repo: PackRepo, name: str, key: Key | None, *, annotated: bool = True) -> None:
    """Tag HEAD: signed by `key`, annotated unsigned (key None), or lightweight; pushed."""
    if key is not None:
        signed_git(repo, key, "tag", "-s", "-m", name, name)
    elif annotated:
        signed_git(repo, None, "tag", "-a", "-m", name, name)
    else:
        signed_git(repo, None, "tag", name)
    repo.push(f"refs/tags/{name}")


# -- fixtures (a pytest plugin of tests/conftest.py): two people with SSH signing keys ----------


@pytest.fixture
def alice(tmp_path: Path) -> SshKey:
    """The signer the tests allow."""
    return SshKey(tmp_path / "keys", "alice", "alice@example.com")


@pytest.fixture
def mallory(tmp_path: Path) -> SshKey:
    """A signer nobody allowed."""
    return SshKey(tmp_path / "keys", "mallory", "mallory@example.com")
