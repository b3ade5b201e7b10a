"""What changed between two test runs of a pack, case by case: newly failing, fixed, new,
removed, still failing, slower, faster, flaky.

Pure functions over plain values, shared by the regression gate (is the candidate worse
than what is served?) and `attuned compare` (what changed between two runs?), so both give
the same answer. A case is identified by its suite (the runner's name in pack.yaml) and its
name as the result format gives it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from attuned.results import CaseStatus, PackTestResult

CaseKey = tuple[str, str]  # (suite, case name)
FAILING = frozenset({CaseStatus.FAILED.value, CaseStatus.ERROR.value})
PASSING = frozenset({CaseStatus.PASSED.value})


def case_id(key: CaseKey) -> str:
    """How a case is shown and matched: `suite::name`."""
    return f"{key[0]}::{key[1]}"


class Case(NamedTuple):
    """One case's verdict in one run (a tuple: a run has thousands, made at every run)."""

    suite: str
    name: str
    status: str  # passed | failed | skipped | error
    duration_ms: int = 0
    message: str | None = None

    @property
    def key(self) -> CaseKey:
        return (self.suite, self.name)

    @property
    def failing(self) -> bool:
        return self.status in FAILING


def cases_of(result: PackTestResult) -> list[Case]:
    """The cases of a result, as the history stores them. A case reported twice by one
    suite (two parametrisations printed alike) keeps its first verdict."""
    seen: dict[CaseKey, Case] = {}
    for suite in result.test_suites:
        suite_name = suite.name
        for case in suite.test_cases:
            key = (suite_name, case.name)
            if key not in seen:
                seen[key] = Case(
                    suite_name, case.name, case.status.value, case.duration_ms, case.error_message
                )
    return list(seen.values())


def flaky_cases(runs: Iterable[Mapping[CaseKey, str]]) -> set[CaseKey]:
    """Cases that both passed and failed among runs of the *same* content: their verdict
    says nothing about a change of content. Skips take no side."""
    passed: set[CaseKey] = set()
    failed: set[CaseKey] = set()
    for run in runs:
        for key, status in run.items():
            if status in PASSING:
                passed.add(key)
            elif status in FAILING:
                failed.add(key)
    return passed & failed


def medians(runs: Iterable[Mapping[CaseKey, int]]) -> dict[CaseKey, float]:
    """Each case's median duration over runs (where it ran)."""
    durations: dict[CaseKey, list[int]] = {}
    for run in runs:
        for key, ms in run.items():
            durations.setdefault(key, []).append(ms)
    return {key: statistics.median(values) for key, values in durations.items()}


@dataclass(frozen=True)
class Change:
    """A case as it was (`before`) and as it is (`after`); None where it did not run."""

    case: str
    before: str | None
    after: str | None
    before_ms: float | None = None
    after_ms: int | None = None
    message: str | None = None  # the failure's message in `after`


@dataclass(frozen=True)
class Thresholds:
    """A case is slower when it takes `percent` more *and* `ms` more than its baseline
    (the median over the baseline's runs); faster, the other way round."""

    percent: float = 50.0
    ms: int = 100

    def slower(self, base: float, now: float) -> bool:
        return now > base * (1 + self.percent / 100) and now - base >= self.ms

    def faster(self, base: float, now: float) -> bool:
        return base > now * (1 + self.percent / 100) and base - now >= self.ms


KINDS = (
    "newly_failing",
    "fixed",
    "new",
    "removed",
    "still_failing",
    "slower",
    "faster",
    "flaky",
)


@dataclass(frozen=True)
class Comparison:
    newly_failing: tuple[Change, ...] = ()  # passed before, fail now, not flaky: regressions
    fixed: tuple[Change, ...] = ()
    new: tuple[Change, ...] = ()
    removed: tuple[Change, ...] = ()
    still_failing: tuple[Change, ...] = ()
    slower: tuple[Change, ...] = ()
    faster: tuple[Change, ...] = ()
    flaky: tuple[Change, ...] = ()  # would be newly failing or fixed, but flip on one content
    unchanged: int = 0

    @property
    def regressions(self) -> list[str]:
        return [c.case for c in self.newly_failing]

    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in KINDS} | {"unchanged": self.unchanged}


def compare(
    before: Sequence[Case],
    after: Sequence[Case],
    *,
    flaky: set[CaseKey] | frozenset[CaseKey] = frozenset(),
    baseline_ms: Mapping[CaseKey, float] | None = None,
    thresholds: Thresholds | None = None,
) -> Comparison:
    """Compare run `after` against run `before`. `flaky`: cases known to flip on one
    content (they are reported as flaky, never as newly failing or fixed); `baseline_ms`:
    each case's median duration in the baseline (default: its duration in `before`)."""
    limits = thresholds or Thresholds()
    old = {c.key: c for c in before}
    now = {c.key: c for c in after}
    buckets: dict[str, list[Change]] = {kind: [] for kind in KINDS}
    unchanged = 0
    for key in sorted(old.keys() | now.keys()):
        was, isnow = old.get(key), now.get(key)
        change = Change(
            case=case_id(key),
            before=was.status if was else None,
            after=isnow.status if isnow else None,
            before_ms=(baseline_ms or {}).get(key, was.duration_ms if was else 0) if was else None,
            after_ms=isnow.duration_ms if isnow else None,
            message=isnow.message if isnow and isnow.failing else None,
        )
        kind = _kind(was, isnow, key in flaky)
        if kind is not None:
            buckets[kind].append(change)
        if was is not None and isnow is not None and change.before_ms is not None:
            if limits.slower(change.before_ms, isnow.duration_ms):
                buckets["slower"].append(change)
            elif limits.faster(change.before_ms, isnow.duration_ms):
                buckets["faster"].append(change)
            elif kind is None:
                unchanged += 1
    return Comparison(**{k: tuple(v) for k, v in buckets.items()}, unchanged=unchanged)


def _kind(was: Case | None, now: Case | None, flaky: bool) -> str | None:
    if was is None:
        return "new"
    if now is None:
        return "removed"
    if was.status in PASSING and now.failing:
        return "flaky" if flaky else "newly_failing"
    if was.failing and now.status in PASSING:
        return "flaky" if flaky else "fixed"
    if was.failing and now.failing:
        return "still_failing"
    return None
