"""Whether a commit (and the tag naming it) is signed by an allowed key: git's own check.

`git verify-commit --raw` and `git verify-tag --raw` make the check. For an SSH signature git
runs `ssh-keygen -Y verify` against the allowed-signers file (principal, key, valid-after and
valid-before at the commit's time); for an OpenPGP one, gpg in a throwaway GNUPGHOME holding
only the configured keyring, so that no key of the daemon's user ever counts, and then only
the listed fingerprints do. Their answer is read for the verdict and the signer's name; no
signature is parsed here.

The files are read when the source is built and at each reload (SIGHUP), not at every poll:
a trust change takes effect when the operator says so. A verdict is kept per (object, files'
digest), so a poll that finds the same commit runs no process at all.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from attuned.settings.git import GitVerify

VERDICTS_KEPT = 256
TIMEOUT = 30.0  # seconds for one git verify-* run
_GNUPG = "[GNUPG:] "
_SSH_GOOD = re.compile(r'Good "git" signature for (?P<who>.+) with \S+ key (?P<key>\S+)')
_SSH_UNKNOWN = re.compile(r'Good "git" signature with \S+ key (?P<key>\S+)')
_SSH_WHEN = re.compile(r"(key has expired|not yet valid)[^\n]*")


@dataclass(frozen=True)
class Verdict:
    """git's answer for one signed object: trusted or not, who signed it, why not."""

    ok: bool
    signer: str | None = None  # "ssh SHA256:… alice@example.com", "gpg <fingerprint> <uid>"
    reason: str = ""  # "is unsigned", "signed by ssh key SHA256:… not in allowed signers"


@dataclass(frozen=True)
class Unverified:
    """A commit a source refused to activate, and why (status, log, outbox)."""

    commit: str
    reason: str  # "commit abc1234 is unsigned"
    signer: str | None = None

    @property
    def error(self) -> str:
        return f"source unverified: {self.reason}"


class Verifier:
    """One source's trust: its allowed signers and keyring, as read at the last (re)load."""

    def __init__(self, config: GitVerify, home: Path | None = None) -> None:
        """`home`: where the keyring and signers copy live (a source's, under its cache
        folder, rebuilt at each load); None: a new temporary folder, removed by `close()`."""
        self.config = config
        self._fixed = home
        self.runs = 0  # git processes run: a poll that finds a known commit runs none
        self.digest = ""
        self._home: Path | None = None  # GNUPGHOME with the keyring; the signers file beside
        self._broken: str | None = None  # a file could not be read or imported
        self._verdicts: OrderedDict[tuple[str, str], Verdict] = OrderedDict()
        self.load()

    def load(self) -> None:
        """Read the allowed signers and the keyring again (start, and each reload)."""
        try:
            signers = _read(self.config.ssh_allowed_signers)
            keyring = _read(self.config.gpg_keyring)
        except OSError as exc:
            self._broken = f"cannot read {exc.filename}: {exc.strerror}"
            return
        parts = [self.config.mode, *self.config.gpg_fingerprints, signers.hex(), keyring.hex()]
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
        if digest == self.digest and self._broken is None:
            return
        self.close()
        self._home = self._make_home()
        (self._home / "allowed_signers").write_bytes(signers)
        self._broken = self._import(keyring)
        self.digest = digest

    def close(self) -> None:
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    def _make_home(self) -> Path:
        if self._fixed is None:
            return Path(tempfile.mkdtemp(prefix="attuned-gnupg-"))
        shutil.rmtree(self._fixed, ignore_errors=True)  # a crashed run's, or the last load's
        self._fixed.mkdir(mode=0o700, parents=True)
        return self._fixed

    def check(self, repo: Path, commit: str, tag: str | None = None, tag_name: str = "") -> Verdict:
        """Whether `commit` (and, by mode, the annotated `tag` object naming it) is trusted;
        a failing verdict's reason starts with what was checked: `commit abc1234 ...`."""
        if self._broken is not None:
            return Verdict(False, None, f"commit {commit[:7]}: {self._broken}")
        signer = None
        if self.config.tags:
            label = f"tag {tag_name or '?'} (commit {commit[:7]})"
            if tag is None:
                return Verdict(False, None, f"{label} is a lightweight tag: it cannot be signed")
            verdict = self._verdict(repo, "verify-tag", tag)
            if not verdict.ok:
                return Verdict(False, verdict.signer, f"{label} {verdict.reason}")
            signer = verdict.signer
        if self.config.heads:
            verdict = self._verdict(repo, "verify-commit", commit)
            if not verdict.ok:
                return Verdict(False, verdict.signer, f"commit {commit[:7]} {verdict.reason}")
            signer = verdict.signer
        return Verdict(True, signer)

    def _verdict(self, repo: Path, verb: str, oid: str) -> Verdict:
        key = (oid, self.digest)
        if key in self._verdicts:
            self._verdicts.move_to_end(key)
            return self._verdicts[key]
        verdict = self._run(repo, verb, oid)
        self._verdicts[key] = verdict
        while len(self._verdicts) > VERDICTS_KEPT:
            self._verdicts.popitem(last=False)
        return verdict

    def _run(self, repo: Path, verb: str, oid: str) -> Verdict:
        assert self._home is not None
        signers = self._home / "allowed_signers"
        args = [
            "git",
            "-c",
            f"gpg.ssh.allowedSignersFile={signers}",
            "-c",
            "gpg.program=gpg",
            "-c",
            "gpg.ssh.program=ssh-keygen",
            "-C",
            str(repo),
            verb,
            "--raw",
            oid,
        ]
        self.runs += 1
        try:
            proc = subprocess.run(
                args, env=self._env(), capture_output=True, text=True, timeout=TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Verdict(False, None, f"could not be checked: {exc}")
        return self._judge(proc.stdout + proc.stderr)

    def _judge(self, output: str) -> Verdict:
        if _GNUPG in output:
            return self._judge_gpg(output)
        good = _SSH_GOOD.search(output)
        if good is not None:
            return Verdict(True, f"ssh {good['key']} {good['who']}")
        unknown = _SSH_UNKNOWN.search(output)
        if unknown is not None:
            return self._unknown_ssh_key(unknown["key"], output)
        if not output.strip() or "no signature found" in output:
            return Verdict(False, None, "is unsigned")
        return Verdict(False, None, f"has a signature git cannot check: {_first_line(output)}")

    def _unknown_ssh_key(self, key: str, output: str) -> Verdict:
        signer = f"ssh {key}"
        if self.config.ssh_allowed_signers is None:
            return Verdict(False, signer, f"is SSH-signed by {key}: no ssh_allowed_signers is set")
        when = _SSH_WHEN.search(output)
        if when is not None:
            return Verdict(False, signer, f"is signed by {key} outside its validity: {when[0]}")
        return Verdict(False, signer, f"is signed by {key} not in allowed signers")

    def _judge_gpg(self, output: str) -> Verdict:
        status: dict[str, str] = {}
        for line in output.splitlines():
            if line.startswith(_GNUPG):
                word, _, rest = line.removeprefix(_GNUPG).partition(" ")
                status.setdefault(word, rest)
        for word, what in (
            ("REVKEYSIG", "a revoked"),
            ("EXPKEYSIG", "an expired"),
            ("BADSIG", "a bad signature of"),
        ):
            if word in status:
                keyid, _, uid = status[word].partition(" ")
                reason = f"is signed with {what} GPG key {keyid} {uid}".rstrip()
                return Verdict(False, f"gpg {keyid} {uid}".rstrip(), reason)
        if "EXPSIG" in status:
            return Verdict(False, None, "has an expired GPG signature")
        if "GOODSIG" not in status or "VALIDSIG" not in status:
            keyid = status.get("ERRSIG", status.get("NO_PUBKEY", "?")).split(" ")[0]
            if self.config.gpg_keyring is None:
                return Verdict(False, None, f"is GPG-signed by {keyid}: no gpg_keyring is set")
            return Verdict(False, None, f"is signed by GPG key {keyid} not in the gpg_keyring")
        fields = status["VALIDSIG"].split()
        fingerprint, primary = fields[0], fields[-1]
        uid = status["GOODSIG"].partition(" ")[2]
        signer = f"gpg {primary} {uid}".rstrip()
        if {fingerprint, primary} & set(self.config.gpg_fingerprints):
            return Verdict(True, signer)
        return Verdict(False, signer, f"is signed by GPG key {primary} not in gpg_fingerprints")

    def _env(self) -> dict[str, str]:
        """Nothing of the daemon user's git or gpg setup: only the configured trust."""
        assert self._home is not None
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._home),
            "GNUPGHOME": str(self._home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "LC_ALL": "C",
        }

    def _import(self, keyring: bytes) -> str | None:
        """Put the keyring into the throwaway GNUPGHOME; the reason when gpg refuses it."""
        assert self._home is not None
        self._home.chmod(0o700)
        if not keyring:
            return None
        try:
            proc = subprocess.run(
                ["gpg", "--batch", "--no-autostart", "--quiet", "--import"],
                input=keyring,
                env=self._env(),
                capture_output=True,
                timeout=TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot import {self.config.gpg_keyring}: {exc}"
        if proc.returncode != 0:
            why = _first_line(proc.stderr.decode(errors="replace"))
            return f"gpg cannot import {self.config.gpg_keyring}: {why}"
        return None


def _read(path: Path | None) -> bytes:
    return b"" if path is None else path.read_bytes()


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")
