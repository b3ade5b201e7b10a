"""The pack test executor: runs a pack's tests in isolation and decides whether they pass.

The names below are loaded on first use (PEP 562): a daemon or CLI that never runs a test
must not pay for the executor, its runners and result formats.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attuned.results import (
        CaseStatus,
        GateDecision,
        PackTestResult,
        TestCaseResult,
        TestStatus,
        TestSuiteResult,
    )
    from attuned.settings.testing import ExecutorSettings, ResourceLimits
    from attuned.testing.executor import TestExecutor

_WHERE = {
    "TestExecutor": "attuned.testing.executor",
    "CaseStatus": "attuned.results",
    "GateDecision": "attuned.results",
    "PackTestResult": "attuned.results",
    "TestCaseResult": "attuned.results",
    "TestStatus": "attuned.results",
    "TestSuiteResult": "attuned.results",
    "ExecutorSettings": "attuned.settings.testing",
    "ResourceLimits": "attuned.settings.testing",
}

__all__ = [
    "CaseStatus",
    "ExecutorSettings",
    "GateDecision",
    "PackTestResult",
    "ResourceLimits",
    "TestCaseResult",
    "TestExecutor",
    "TestStatus",
    "TestSuiteResult",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value
