"""`notify:` and `outbox:` in attuned.yaml: where events go, which ones, and how hard to try.

Secrets (a webhook's signing key, a URL that is itself a credential, a broker password) are
named by file or by environment variable, never written inline, and read when a sink is
built (at start and on SIGHUP), so a rotated secret takes effect on reload.
"""

from __future__ import annotations

import base64
import binascii
import os
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error")
_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
SECRET_PREFIX = "whsec_"  # noqa: S105 - not a secret: Standard Webhooks' form of a signing key: whsec_<base64>


class SecretError(ValueError):
    """A secret named by the config cannot be read (missing file, unset variable, bad form)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(what: str, *, file: Path | None, env: str | None) -> str | None:
    """The secret from `file` (whitespace around it dropped) or the variable `env`."""
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"{what}: cannot read {file}: {exc.strerror or exc}") from None
        if not value:
            raise SecretError(f"{what}: {file} is empty")
        return value
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise SecretError(f"{what}: the environment variable {env} is not set")
        return value
    return None


def shown_url(url: str) -> str:
    """A URL as status and logs show it: scheme, host and port only, since the path or query
    of a webhook URL is often the credential itself (chat services do this)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


class _Sink(_Section):
    """What every sink has: a name, a filter and a retry budget."""

    name: str = Field(pattern=_NAME, description="names the sink in status, metrics and CLI")
    events: list[str] = Field(
        default_factory=lambda: ["*"],
        description="event names to deliver, as globs (e.g. 'pack.*', 'source.error')",
    )
    severities: list[Severity] = Field(
        default_factory=lambda: list(SEVERITIES), description="severities to deliver"
    )
    packs: list[str] | None = Field(
        default=None,
        description="pack refs to deliver events of, as globs; when set, events that concern "
        "no pack (source.error, cluster.leader.elected) are not delivered",
    )
    timeout: float = Field(default=10, gt=0, le=300, description="seconds per attempt")
    max_attempts: int = Field(
        default=12, ge=1, le=1000, description="attempts before a delivery is dead"
    )
    retry_initial: float = Field(
        default=1, gt=0, description="seconds before the first retry; doubles each time"
    )
    retry_max: float = Field(default=600, gt=0, description="cap of the retry delay, seconds")

    def takes(self, name: str, severity: str, ref: str | None) -> bool:
        """Whether an event passes this sink's filter."""
        if severity not in self.severities:
            return False
        if not any(fnmatchcase(name, glob) for glob in self.events):
            return False
        if self.packs is None:
            return True
        return ref is not None and any(fnmatchcase(ref, glob) for glob in self.packs)


class WebhookSinkConfig(_Sink):
    """HTTP(S) POST of each event as JSON, signed the Standard Webhooks way."""

    type: Literal["webhook"] = "webhook"
    url: str | None = Field(default=None, description="http:// or https:// URL")
    url_file: Path | None = Field(default=None, description="the URL, when it is a secret")
    url_env: str | None = Field(default=None, description="the URL, from this variable")
    secret_file: Path | None = Field(
        default=None, description="signing key: whsec_ followed by base64 of 24+ random bytes"
    )
    secret_env: str | None = Field(default=None, description="signing key, from this variable")
    sign: bool = Field(default=True, description="false: send unsigned (no secret needed)")
    ca_file: Path | None = Field(default=None, description="CA bundle for an https:// URL")

    @model_validator(mode="after")
    def _one_of_each(self) -> WebhookSinkConfig:
        urls = [k for k in ("url", "url_file", "url_env") if getattr(self, k) is not None]
        if len(urls) != 1:
            raise ValueError(f"a webhook needs exactly one of url, url_file, url_env (got {urls})")
        if self.url is not None:
            check_http_url(self.url)
        secrets = [k for k in ("secret_file", "secret_env") if getattr(self, k) is not None]
        if self.sign and len(secrets) != 1:
            raise ValueError(
                "a webhook needs exactly one of secret_file, secret_env to sign its requests "
                "(or sign: false)"
            )
        if not self.sign and secrets:
            raise ValueError("sign: false and a secret: choose one")
        return self

    def resolved_url(self) -> str:
        url = self.url or read_secret(
            f"notify {self.name}: url", file=self.url_file, env=self.url_env
        )
        assert url is not None
        try:
            check_http_url(url)
        except ValueError as exc:
            raise SecretError(f"notify {self.name}: {exc}") from None
        return url

    def signing_key(self) -> bytes | None:
        """The key's bytes (the base64 after `whsec_`); None when unsigned."""
        if not self.sign:
            return None
        text = read_secret(
            f"notify {self.name}: secret", file=self.secret_file, env=self.secret_env
        )
        assert text is not None
        return decode_signing_key(text, f"notify {self.name}: secret")

    def target(self) -> str:
        if self.url is not None:
            return shown_url(self.url)
        return f"(url from {self.url_file or '$' + str(self.url_env)})"


def check_http_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{shown_url(url)}: a webhook URL must be http:// or https:// with a host")


def decode_signing_key(text: str, what: str) -> bytes:
    if not text.startswith(SECRET_PREFIX):
        raise SecretError(
            f"{what}: must start with {SECRET_PREFIX} (make one with: "
            f"echo {SECRET_PREFIX}$(head -c 32 /dev/urandom | base64))"
        )
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"{what}: the part after {SECRET_PREFIX} is not base64") from None
    if len(key) < 24:
        raise SecretError(f"{what}: the key is {len(key)} bytes; use at least 24")
    return key


class ExecSinkConfig(_Sink):
    """A command run for each event, with the event's JSON on stdin; exit 0 is delivered."""

    type: Literal["exec"] = "exec"
    command: list[str] = Field(min_length=1, description="argv, run without a shell")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment")
    pass_env: list[str] = Field(
        default_factory=list, description="variables of attuned's environment passed on"
    )
    timeout: float = Field(default=30, gt=0, le=3600, description="seconds, then killed")

    def target(self) -> str:
        return self.command[0]


ATTUNE_EVENTS = ("pack.registered", "pack.upgraded", "pack.reinstalled", "pack.unregistered")


class AttuneSinkConfig(_Sink):
    """Attune's own messages on its RabbitMQ events exchange, as Attune's API sends them."""

    type: Literal["attune"] = "attune"
    url: str = Field(
        default="amqp://guest@127.0.0.1:5672/%2f",
        description="AMQP URL without a password (give password_file or password_env)",
    )
    password_file: Path | None = None
    password_env: str | None = None
    exchange: str = Field(default="attune.events", description="Attune's events exchange")
    events: list[str] = Field(
        default_factory=lambda: list(ATTUNE_EVENTS),
        description="of pack.registered, pack.upgraded, pack.reinstalled, pack.unregistered",
    )

    @model_validator(mode="after")
    def _url(self) -> AttuneSinkConfig:
        parts = urlsplit(self.url)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(f"{shown_url(self.url)}: an AMQP URL is amqp:// or amqps://")
        if parts.password:
            raise ValueError(
                "the AMQP URL holds a password: put it in password_file or password_env"
            )
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("password_file and password_env: choose one")
        unknown = [e for e in self.events if e not in ATTUNE_EVENTS]
        if unknown:
            raise ValueError(
                f"the attune sink sends only {', '.join(ATTUNE_EVENTS)} (not {unknown})"
            )
        return self

    def resolved_url(self) -> str:
        password = read_secret(
            f"notify {self.name}: password", file=self.password_file, env=self.password_env
        )
        if password is None:
            return self.url
        parts = urlsplit(self.url)
        user = unquote(parts.username) if parts.username else "guest"
        host = parts.hostname or ""
        if ":" in host:  # IPv6: keep its brackets
            host = f"[{host}]"
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def target(self) -> str:
        return f"{shown_url(self.url).removesuffix('/…')} exchange {self.exchange}"


def _sink_type(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", ""))
    return str(getattr(value, "type", ""))


SinkConfig = Annotated[
    Annotated[WebhookSinkConfig, Tag("webhook")]
    | Annotated[ExecSinkConfig, Tag("exec")]
    | Annotated[AttuneSinkConfig, Tag("attune")],
    Discriminator(_sink_type),
]


class OutboxConfig(_Section):
    retention_days: float = Field(
        default=30, gt=0, description="events older than this are forgotten once delivered"
    )
    poll_interval: float = Field(
        default=2, gt=0, description="seconds between looks for events other processes wrote"
    )
    drain_timeout: float = Field(
        default=10, ge=0, description="`reconcile --once`: seconds to deliver before exiting"
    )
