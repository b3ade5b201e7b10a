"""Reference pages stay complete: every config key, log event and status field is documented."""

from __future__ import annotations

import re
from typing import get_args

from pydantic import BaseModel

from attuned.config import AttunedConfig, DirectorySourceConfig
from attuned.notify import events
from attuned.report.log import Event
from attuned.report.status import (
    DaemonStatus,
    LastTest,
    PackStatus,
    ReconcileSummary,
    SinkStatus,
    SourceStatus,
    Status,
)
from attuned.results import (
    CaseStatus,
    GateDecision,
    PackTestResult,
    TestCaseResult,
    TestSuiteResult,
)
from attuned.settings.git import GitSourceConfig
from attuned.settings.notify import AttuneSinkConfig, ExecSinkConfig, WebhookSinkConfig
from attuned.store.models import utcnow
from attuned.store.outbox import StoredEvent
from tests.conftest import REPO

SINK_CONFIGS = (WebhookSinkConfig, ExecSinkConfig, AttuneSinkConfig)

DOCS = REPO / "docs"


def keys_of(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        nested = [
            a
            for a in (info.annotation, *get_args(info.annotation))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if nested:
            keys.append(key)
            keys.extend(keys_of(nested[0], f"{key}."))
        else:
            keys.append(key)
    return keys


def documented(page: str) -> set[str]:
    """Inline code spans of a page (fenced blocks removed, so their backticks pair no span)."""
    text = re.sub(r"```.*?```", "", (DOCS / page).read_text(), flags=re.DOTALL)
    return set(re.findall(r"`([^`\n]+)`", text))


def test_every_config_key_is_documented() -> None:
    keys = [k for k in keys_of(AttunedConfig) if k != "sources"]
    keys += [f"sources[].{k}" for k in keys_of(DirectorySourceConfig)]
    missing = sorted(set(keys) - documented("configuration.md"))
    assert missing == []


def test_every_notify_key_is_documented() -> None:
    """Every key of every sink type in notifications.md; those all sinks share in
    configuration.md too."""
    per_type = [{f"notify[].{k}" for k in keys_of(model)} for model in SINK_CONFIGS]
    missing = sorted(set().union(*per_type) - documented("notifications.md"))
    assert missing == []
    shared = sorted(set.intersection(*per_type) - documented("configuration.md"))
    assert shared == []


def test_every_outbox_event_is_documented_with_its_severity() -> None:
    text = (DOCS / "notifications.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| (info|warning|error) \|", text, re.MULTILINE))
    assert rows == {str(event): severity for event, severity in events.SEVERITY.items()}


def test_the_envelope_is_documented_field_by_field() -> None:
    event = StoredEvent(1, "id", "pack.registered", "info", "pack:a", "a", "n", {}, utcnow())
    missing = sorted(set(events.envelope(event)) - documented("notifications.md"))
    assert missing == []


def test_the_test_summary_is_documented_field_by_field() -> None:
    case = TestCaseResult(name="greets", status=CaseStatus.FAILED, error_message="boom")
    suite = TestSuiteResult(
        name="shell",
        runner_type="script",
        total=1,
        passed=0,
        failed=1,
        skipped=0,
        duration_ms=3,
        test_cases=[case],
    )
    result = PackTestResult.from_suites(
        pack_ref="a",
        pack_version="1.0.0",
        execution_time=utcnow(),
        duration_ms=3,
        suites=[suite],
        gate=GateDecision(passed=False, reason="pass rate 0 is below min_pass_rate 1"),
    )
    summary = events.test_summary(result, 12)
    fields = set(summary) | set(summary["failed_cases"][0])
    missing = sorted(fields - documented("notifications.md"))
    assert missing == []


def test_every_git_source_key_is_documented() -> None:
    keys = {f"sources[].{k}" for k in keys_of(GitSourceConfig)}
    missing = sorted(keys - documented("sources-git.md"))
    assert missing == []


def test_every_log_event_is_documented() -> None:
    missing = sorted({e.value for e in Event} - documented("log-events.md"))
    assert missing == []


def test_every_status_field_is_documented() -> None:
    text = (DOCS / "status-file.md").read_text()
    fields = set()
    models = (
        Status,
        DaemonStatus,
        ReconcileSummary,
        SourceStatus,
        PackStatus,
        LastTest,
        SinkStatus,
    )
    for model in models:
        fields |= set(model.model_fields)
    spellings = ("`{}`", "`{}[]`", "`{}.<ref>`")
    missing = sorted(f for f in fields if not any(s.format(f) in text for s in spellings))
    assert missing == []


def test_docs_link_to_existing_files() -> None:
    for page in [*DOCS.glob("*.md"), REPO / "README.md"]:
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_cli_reference_covers_every_command() -> None:
    from attuned.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    text = (DOCS / "cli.md").read_text()
    missing = [verb for verb in sub.choices if f"`attuned {verb}" not in text]  # type: ignore[union-attr]
    assert missing == []


def test_page_set() -> None:
    expected = {
        "architecture.md",
        "cli.md",
        "configuration.md",
        "log-events.md",
        "notifications.md",
        "operator-guide.md",
        "pack-authors.md",
        "status-file.md",
        "testing.md",
        "sources-directory.md",
    }
    assert expected <= {p.name for p in DOCS.glob("*.md")}
