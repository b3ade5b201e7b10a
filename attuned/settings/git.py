"""The configuration of a `type: git` source, and the redaction of URLs for anything shown.

Secrets are only ever named by file (`password_file`, `token_file`, `ssh_key_file`) and read
when a server asks for them, so that the configuration, the log and the status file can be
shown to anyone. A password written into the URL is refused for the same reason.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from attuned.pack.manifest import check_ref
from attuned.pack.versions import Constraint

Transport = Literal["http", "ssh", "git", "local"]

# `scheme://user:password@` anywhere in a text: keep the user, hide the password
_USERINFO_PASSWORD = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^\s/@:]*):([^\s/@]*)@", re.I)
# scp-like ssh: `[user@]host:path`, with no slash before the colon
_SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?[^/:\s]{2,}:(?!//)")
_SCHEMES: dict[str, Transport] = {
    "https": "http",
    "http": "http",
    "ssh": "ssh",
    "git+ssh": "ssh",
    "ssh+git": "ssh",
    "git": "git",
    "file": "local",
}
_HEX = re.compile(r"^[0-9a-fA-F]{7,40}$")
# what `git check-ref-format` refuses, short of the rarest cases
_BAD_REF = re.compile(r"(^[./-])|([./]$)|\.\.|//|@\{|[\x00-\x20\x7f~^:?*\[\\]|\.lock$|^@$")
_INLINE_SECRETS = {
    "password": "password_file",
    "token": "token_file",
    "ssh_key": "ssh_key_file",
    "private_key": "ssh_key_file",
    "known_hosts": "known_hosts_file",
}
DEFAULT_TOKEN_USER = "x-access-token"  # noqa: S105 - a user name: GitHub's convention; GitLab and Gitea accept any name


def redact(text: str) -> str:
    """`https://user:secret@host/x` → `https://user:***@host/x`, for a URL or a message."""
    return _USERINFO_PASSWORD.sub(r"\1\2:***@", text)


def transport_of(url: str) -> Transport:
    """How a URL is reached; raises ValueError for schemes libgit2 cannot fetch from."""
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if scheme not in _SCHEMES:
            raise ValueError(
                f"unsupported URL scheme {scheme!r}: use https://, ssh://, git://, file:// "
                "or a local path"
            )
        return _SCHEMES[scheme]
    if _SCP_LIKE.match(url) and not url.startswith(("/", ".")):
        return "ssh"
    return "local"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GitRef(_Model):
    """Which commit of the repository is the desired state: exactly one way to name it."""

    branch: str | None = Field(default=None, description="follow this branch's newest commit")
    tag: str | None = Field(default=None, description="this tag, followed if it is moved")
    semver: str | None = Field(
        default=None, description="the highest tag matching this range, e.g. '>=1.2 <2'"
    )
    prerelease: bool = Field(default=False, description="semver: consider pre-release tags")
    commit: str | None = Field(default=None, description="this commit, full or short sha")

    @model_validator(mode="after")
    def _exactly_one(self) -> GitRef:
        given = [k for k in ("branch", "tag", "semver", "commit") if getattr(self, k) is not None]
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            raise ValueError(f"ref needs exactly one of branch, tag, semver, commit ({found})")
        if self.prerelease and self.semver is None:
            raise ValueError("prerelease only applies to a semver ref")
        return self

    @field_validator("branch", "tag")
    @classmethod
    def _ref_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or _BAD_REF.search(value)):
            raise ValueError(f"{value!r} is not a valid git branch or tag name")
        if value is not None and value.startswith("refs/"):
            raise ValueError(f"{value!r}: give the short name, without refs/heads/ or refs/tags/")
        return value

    @field_validator("semver")
    @classmethod
    def _range(cls, value: str | None) -> str | None:
        if value is not None:
            Constraint(value)  # raises ValueError naming the text
        return value

    @field_validator("commit")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _HEX.match(value):
            raise ValueError(f"{value!r} is not a commit sha (7 to 40 hexadecimal digits)")
        return value.lower()

    @property
    def kind(self) -> Literal["branch", "tag", "semver", "commit"]:
        if self.branch is not None:
            return "branch"
        if self.tag is not None:
            return "tag"
        if self.semver is not None:
            return "semver"
        return "commit"

    def __str__(self) -> str:
        value = self.branch or self.tag or self.semver or self.commit
        extra = " (with pre-releases)" if self.prerelease else ""
        return f"{self.kind} {value}{extra}"


class GitCredentials(_Model):
    """Secrets by file only: an ssh key with its known_hosts, or a user with a password/token."""

    ssh_key_file: Path | None = Field(default=None, description="private key, unencrypted")
    known_hosts_file: Path | None = Field(
        default=None, description="the server's host key(s), as in ~/.ssh/known_hosts"
    )
    username: str | None = Field(default=None, description="ssh or HTTP user name")
    password_file: Path | None = Field(default=None, description="HTTP basic auth password")
    token_file: Path | None = Field(
        default=None, description=f"HTTP access token; user defaults to {DEFAULT_TOKEN_USER}"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, instead in _INLINE_SECRETS.items():
                if key in data:
                    raise ValueError(
                        f"credentials.{key}: secrets are not accepted inline; put it in a "
                        f"file readable only by attuned and set credentials.{instead}"
                    )
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> GitCredentials:
        secrets = [k for k in ("ssh_key_file", "password_file", "token_file") if getattr(self, k)]
        if len(secrets) != 1:
            raise ValueError(
                "credentials need exactly one of ssh_key_file, password_file, token_file "
                f"(got {', '.join(secrets) or 'none'})"
            )
        if self.ssh_key_file is not None and self.known_hosts_file is None:
            raise ValueError(
                "credentials.ssh_key_file needs credentials.known_hosts_file: the server's "
                "host key must be known, not trusted on first use"
            )
        if self.ssh_key_file is None and self.known_hosts_file is not None:
            raise ValueError("credentials.known_hosts_file only applies with ssh_key_file")
        if self.password_file is not None and not self.username:
            raise ValueError("credentials.password_file needs credentials.username")
        return self

    @property
    def kind(self) -> Literal["ssh", "http"]:
        return "ssh" if self.ssh_key_file is not None else "http"


_FINGERPRINT = re.compile(r"^(?:[0-9A-F]{40}|[0-9A-F]{64})$")
VerifyMode = Literal["head", "tag", "tag_and_head"]


# the signer shown for a git commit activated without `verify:` (status, provenance)
UNSIGNED = "unsigned (verification off)"


class GitVerify(_Model):
    """Which signatures make a commit trusted: git's own check, against these signers only."""

    mode: VerifyMode = Field(
        default="head", description="head: the commit; tag: the tag; tag_and_head: both"
    )
    ssh_allowed_signers: Path | None = Field(
        default=None, description="git's gpg.ssh.allowedSignersFile format: principals and keys"
    )
    gpg_keyring: Path | None = Field(
        default=None, description="exported OpenPGP public keys (binary or armored)"
    )
    gpg_fingerprints: tuple[str, ...] = Field(
        default=(), description="of the keyring's keys, the ones whose signatures count"
    )

    @field_validator("ssh_allowed_signers", "gpg_keyring")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} does not exist or is not a file")
        return value

    @field_validator("gpg_fingerprints", mode="before")
    @classmethod
    def _fingerprints(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        found = []
        for item in value:
            text = "".join(str(item).split()).upper().removeprefix("0X")
            if not _FINGERPRINT.match(text):
                raise ValueError(
                    f"{item!r} is not a full OpenPGP key fingerprint (40 or 64 hex digits)"
                )
            found.append(text)
        return tuple(found)

    @model_validator(mode="after")
    def _some_signer(self) -> GitVerify:
        if self.ssh_allowed_signers is None and self.gpg_keyring is None:
            raise ValueError("verify needs ssh_allowed_signers or gpg_keyring (or both)")
        if self.gpg_keyring is not None and not self.gpg_fingerprints:
            raise ValueError(
                "verify.gpg_keyring needs verify.gpg_fingerprints: the keys whose signatures count"
            )
        if self.gpg_fingerprints and self.gpg_keyring is None:
            raise ValueError("verify.gpg_fingerprints needs verify.gpg_keyring")
        return self

    @property
    def tags(self) -> bool:
        return self.mode in ("tag", "tag_and_head")

    @property
    def heads(self) -> bool:
        return self.mode in ("head", "tag_and_head")


class GitSourceConfig(_Model):
    """A repository whose commit, at `ref`, is the desired set of packs."""

    name: str
    type: Literal["git"]
    url: str = Field(description="https://, ssh://, user@host:path, git://, file:// or a path")
    ref: GitRef
    path: str = Field(default="", description="subfolder: one pack, or a folder of packs")
    interval: float = Field(default=60, gt=0, description="seconds between polls")
    jitter: float = Field(default=0, ge=0, description="random extra delay; default interval/10")
    timeout: float = Field(default=60, gt=0, description="seconds a poll may talk to the server")
    credentials: GitCredentials | None = None
    prune: bool | None = Field(default=None, description="default: reconcile.prune")
    skip_tests: bool = False
    force: bool = Field(default=False, description="register even when tests fail")
    regressions: Literal["block", "warn", "ignore"] | None = Field(
        default=None, description="default: the pack's testing.regressions, else testing's"
    )
    verify: GitVerify | None = Field(
        default=None, description="activate only commits signed by an allowed key"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_jitter(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("jitter") is None:
            interval = data.get("interval", 60)
            if isinstance(interval, int | float):
                return {**data, "jitter": interval / 10}
        return data

    @model_validator(mode="after")
    def _check(self) -> GitSourceConfig:
        check_ref(self.name.replace(".", "-"))
        self._check_credentials(self.transport)
        if self.verify is not None and self.verify.tags and self.ref.kind not in ("tag", "semver"):
            raise ValueError(
                f"verify.mode {self.verify.mode} checks a tag's signature: it needs ref.tag or "
                f"ref.semver, not ref.{self.ref.kind}"
            )
        return self

    def _check_credentials(self, transport: Transport) -> None:
        kind = self.credentials.kind if self.credentials else None
        if transport == "ssh" and kind != "ssh":
            raise ValueError(
                "an ssh URL needs credentials.ssh_key_file and credentials.known_hosts_file"
            )
        if kind == "ssh" and transport != "ssh":
            raise ValueError("credentials.ssh_key_file only applies to an ssh URL")
        if kind == "http" and transport != "http":
            raise ValueError("a password or token only applies to an http(s):// URL")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("url is empty")
        transport = transport_of(value)  # ValueError names an unsupported scheme
        if transport != "local" and "://" in value and urlsplit(value).password is not None:
            raise ValueError(
                f"{redact(value)}: a password in the URL is refused; use "
                "credentials.username and credentials.password_file or token_file"
            )
        return value

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        parts = [p for p in PurePosixPath(value.strip("/")).parts if p != "."]
        if ".." in parts or "\\" in value:
            raise ValueError(f"path {value!r} must stay inside the repository (no '..')")
        return "/".join(parts)

    @property
    def transport(self) -> Transport:
        return transport_of(self.url)

    @property
    def shown_url(self) -> str:
        """The URL as every log line, status field and error shows it."""
        return redact(self.url)
