"""What a registration's tests decide, apart from how they are run and stored.

Why the tests run (the trigger), whether a pack may skip them, which regression policy
applies, the regression gate against the serving version, and how the gate's result and
`--force` turn into an outcome: register, warn, force, or roll back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from attuned.errors import AttunedError, Problem, TestsFailed, ValidationFailed
from attuned.pack.loader import Pack
from attuned.pack.manifest import MANIFEST_NAME
from attuned.results import PackTestResult
from attuned.settings.testing import HistorySettings, RegressionPolicy
from attuned.store import cases
from attuned.store.database import Database
from attuned.store.repository import RegisteredPack
from attuned.testing.gate import with_regressions
from attuned.testing.regressions import Thresholds, cases_of, compare, flaky_cases, medians


class Trigger(StrEnum):
    REGISTER = "register"
    REINSTALL = "reinstall"
    UPGRADE = "upgrade"
    MANUAL = "manual"


class Outcome(StrEnum):
    REGISTERED = "registered"  # tests passed the gate (or were skipped)
    WARNED = "warned"  # gate failed, on_failure: warn
    FORCED = "forced"  # gate failed, registered because forced
    ROLLED_BACK = "rolled_back"  # gate failed, nothing registered
    ABORTED = "aborted"  # tests ran, but the registration itself failed
    CANCELLED = "cancelled"  # the daemon stopped while the tests ran: no verdict
    # the tests could not run: a runtime is missing, or the Python environment could not be
    # built. Nothing registered; unlike a rollback, not remembered across a restart
    ENVIRONMENT_FAILED = "environment_failed"
    TESTED = "tested"  # `attuned test --pack`: the served version tested again, nothing changed


@dataclass(frozen=True)
class Decision:
    """How a registration that goes ahead is told: why it ran, how the gate ended, and the
    version it replaces."""

    trigger: Trigger
    outcome: Outcome
    previous_version: str | None


class RegistrationCancelled(AttunedError):
    """The caller asked to stop (daemon shutdown) while the pack was being registered."""


class TestsRolledBack(TestsFailed):
    """Raised with the stored result so callers can show what failed."""

    def __init__(self, result: PackTestResult) -> None:
        self.result = result
        super().__init__(
            f"tests of {result.pack_ref} {result.pack_version} did not pass: "
            f"{result.gate.reason}; the pack was rolled back (use --force to register anyway)"
        )


class EnvironmentNotReady(TestsFailed):
    """The pack's environment could not be built, so its tests did not run; nothing was
    registered. Not the content's fault as such: it may pass on a retry (the daemon treats
    it as a transient failure)."""

    def __init__(self, result: PackTestResult) -> None:
        self.result = result
        super().__init__(
            f"tests of {result.pack_ref} {result.pack_version} could not run: "
            f"{result.gate.reason.removeprefix('the tests could not run: ')}; "
            "nothing was registered (try again later, or use --force to register untested)"
        )


def require_tests(pack: Pack, path: Path, skip_tests: bool) -> None:
    """A pack registers tested unless the caller says to skip: one without enabled tests
    is refused rather than registered untested by accident."""
    testing = pack.manifest.testing
    if not skip_tests and (testing is None or not testing.enabled):
        why = "has no testing section" if testing is None else "has testing.enabled: false"
        raise ValidationFailed(
            [
                Problem(
                    path / MANIFEST_NAME,
                    f"the pack {why}; add tests or use --skip-tests",
                    field="testing",
                )
            ]
        )


def trigger_for(existing: RegisteredPack | None, pack: Pack) -> Trigger:
    if existing is None:
        return Trigger.REGISTER
    return Trigger.REINSTALL if existing.version == pack.version else Trigger.UPGRADE


def outcome_for(result: PackTestResult | None, force: bool) -> Outcome:
    if result is None or result.gate.passed:
        return Outcome.REGISTERED
    if force:
        return Outcome.FORCED
    return Outcome.WARNED if not result.gate.blocks else Outcome.ROLLED_BACK


def regression_policy(
    pack: Pack, source_says: str | None, operator_says: RegressionPolicy
) -> RegressionPolicy:
    """The source's word, else the pack's `testing.regressions`, else the operator's."""
    testing = pack.manifest.testing
    pack_says = testing.regressions if testing is not None else None
    return RegressionPolicy(source_says or pack_says or operator_says)


def against_serving(
    db: Database,
    history: HistorySettings,
    pack: Pack,
    result: PackTestResult,
    serving: RegisteredPack,
    policy: RegressionPolicy,
) -> PackTestResult:
    """The result with the regression gate applied: each case against the serving
    version's newest run; a case that flips within the runs of one content (served or
    candidate) is flaky and never a regression. No baseline (served untested): as is."""
    with db.read() as session:
        served = cases.digest_runs(session, pack.ref, serving.digest, history.flaky_window)
        earlier = cases.digest_runs(session, pack.ref, pack.digest, history.flaky_window - 1)
    if not served.cases:
        return result
    now = cases_of(result)
    comparison = compare(
        served.newest,
        now,
        flaky=flaky_cases(served.statuses())
        | flaky_cases([*earlier.statuses(), {c.key: c.status for c in now}]),
        baseline_ms=medians(served.durations()),
        thresholds=Thresholds(history.slower_percent, history.slower_ms),
    )
    gate = with_regressions(result.gate, comparison, policy, serving.version)
    return result.model_copy(update={"gate": gate})
