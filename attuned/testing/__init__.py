"""The pack test executor: runs a pack's tests in isolation and decides whether they pass."""

from __future__ import annotations

from attuned.testing.executor import TestExecutor
from attuned.testing.results import (
    CaseStatus,
    GateDecision,
    PackTestResult,
    TestCaseResult,
    TestStatus,
    TestSuiteResult,
)
from attuned.testing.settings import ExecutorSettings, ResourceLimits

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
