"""Reference pages stay complete: every config key, log event and status field is documented."""

from __future__ import annotations

import re
from typing import get_args

from pydantic import BaseModel

from attuned.config import AttunedConfig, DirectorySourceConfig
from attuned.reconcile.sources.git_config import GitSourceConfig
from attuned.report.log import Event
from attuned.report.status import (
    DaemonStatus,
    LastTest,
    PackStatus,
    ReconcileSummary,
    SourceStatus,
    Status,
)
from tests.conftest import REPO

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
    for model in (Status, DaemonStatus, ReconcileSummary, SourceStatus, PackStatus, LastTest):
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
        "operator-guide.md",
        "pack-authors.md",
        "status-file.md",
        "testing.md",
        "sources-directory.md",
    }
    assert expected <= {p.name for p in DOCS.glob("*.md")}
