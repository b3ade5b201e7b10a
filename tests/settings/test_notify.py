"""notify: sinks in attuned.yaml: validation that names the problem, secrets by file or
environment (never inline), filters."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from attuned.config import AttunedConfig
from attuned.errors import ConfigError
from attuned.settings.notify import (
    AttuneSinkConfig,
    ExecSinkConfig,
    SecretError,
    WebhookSinkConfig,
    shown_url,
)
from tests.notify.receiver import SECRET


def config(*sinks: dict[str, object]) -> AttunedConfig:
    return AttunedConfig.model_validate({"notify": list(sinks)})


def test_each_type_is_validated_by_its_own_model(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    loaded = config(
        {"name": "ci", "type": "webhook", "url": "https://ci.example/hook", "secret_file": secret},
        {"name": "mail", "type": "exec", "command": ["/usr/local/bin/mail-event"]},
        {"name": "attune", "type": "attune", "password_env": "RABBITMQ_PASSWORD"},
    )
    kinds = [type(s) for s in loaded.notify]
    assert kinds == [WebhookSinkConfig, ExecSinkConfig, AttuneSinkConfig]
    assert loaded.notify[0].signing_key() is not None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("sink", "says"),
    [
        ({"name": "ci", "type": "webhook", "sign": False}, "exactly one of url, url_file, url_env"),
        ({"name": "ci", "type": "webhook", "url": "ftp://x/"}, "must be http:// or https://"),
        ({"name": "ci", "type": "webhook", "url": "https://x/"}, "secret_file, secret_env"),
        ({"name": "ci", "type": "pigeon"}, "does not match any of the expected tags"),
        ({"name": "Bad Name", "type": "exec", "command": ["x"]}, "should match pattern"),
        ({"name": "a", "type": "attune", "url": "amqp://u:pw@h/"}, "holds a password"),
        ({"name": "a", "type": "attune", "events": ["pack.blocked"]}, "sends only"),
        ({"name": "x", "type": "exec", "command": []}, "at least 1 item"),
    ],
)
def test_bad_sinks_are_refused_naming_the_problem(sink: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        config(sink)


def test_sink_names_are_unique() -> None:
    sink = {"name": "twice", "type": "exec", "command": ["true"]}
    with pytest.raises(ValidationError, match="notify sink names must be unique: twice"):
        config(sink, sink)


def test_a_config_file_error_names_the_line(tmp_path: Path) -> None:
    from attuned.config import load_config

    path = tmp_path / "attuned.yaml"
    path.write_text(
        "notify:\n  - name: ci\n    type: webhook\n    url: https://x/\n    sgin: false\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == f"{path}:5: notify[0].sgin: unknown field"


def test_secrets_come_from_a_file_or_the_environment_and_say_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = WebhookSinkConfig(name="ci", url="https://x/", secret_file=tmp_path / "nope")
    with pytest.raises(SecretError, match=r"notify ci: secret: cannot read .*nope"):
        missing.signing_key()
    unset = WebhookSinkConfig(name="ci", url="https://x/", secret_env="ATTUNED_TEST_NOPE")
    with pytest.raises(SecretError, match="ATTUNED_TEST_NOPE is not set"):
        unset.signing_key()
    monkeypatch.setenv("ATTUNED_TEST_NOPE", "hunter2")
    with pytest.raises(SecretError, match="must start with whsec_"):
        unset.signing_key()
    monkeypatch.setenv("ATTUNED_TEST_NOPE", "whsec_c2hvcnQ=")
    with pytest.raises(SecretError, match="the key is 5 bytes; use at least 24"):
        unset.signing_key()


def test_a_broker_password_is_put_into_the_url_only_when_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATTUNED_TEST_MQ", "p@ss/word")
    sink = AttuneSinkConfig(
        name="a", url="amqp://attuned@mq:5672/prod", password_env="ATTUNED_TEST_MQ"
    )
    assert sink.resolved_url() == "amqp://attuned:p%40ss%2Fword@mq:5672/prod"
    assert "p@ss" not in sink.target() and sink.target() == "amqp://mq:5672 exchange attune.events"


def test_shown_urls_keep_no_path_query_or_credentials() -> None:
    secret_url = "https://user:pw@hooks.chat.example:8443/services/T000/B000/XXXX?token=abc"
    assert shown_url(secret_url) == "https://hooks.chat.example:8443/…"
    assert shown_url("http://127.0.0.1/") == "http://127.0.0.1"


@pytest.mark.parametrize(
    ("event", "severity", "ref", "taken"),
    [
        ("pack.rolled_back", "warning", "prod-web", True),
        ("pack.registered", "info", "prod-web", False),  # severity
        ("pack.rolled_back", "warning", "dev-web", False),  # pack glob
        ("source.error", "warning", None, False),  # no pack, and packs are named
        ("pack.test.failed", "warning", "prod-db", False),  # event glob
    ],
)
def test_filters_by_event_severity_and_pack(
    event: str, severity: str, ref: str | None, taken: bool
) -> None:
    sink = ExecSinkConfig(
        name="x",
        command=["true"],
        events=["pack.rolled_back", "pack.blocked", "source.*"],
        severities=["warning", "error"],
        packs=["prod-*"],
    )
    assert sink.takes(event, severity, ref) is taken
    assert ExecSinkConfig(name="y", command=["true"]).takes("source.error", "warning", None)
