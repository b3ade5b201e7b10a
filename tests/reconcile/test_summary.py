"""Pack states derived from facts: served packs, the plan, step results and memory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from attuned.reconcile.apply import StepOutcome, StepResult
from attuned.reconcile.model import (
    Action,
    ActionKind,
    Candidate,
    Failure,
    FailureKind,
    InvalidCandidate,
    Memory,
    Plan,
)
from attuned.reconcile.summary import ServedPack, derive_packs

NOW = datetime(2026, 11, 27, 12, 3, 0, tzinfo=UTC)
OLD = ServedPack("a", "1.1.0", "old", "src", datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
NEW = Candidate("a", "1.2.0", "new", "src", Path("/s"))


def derive(
    served: dict[str, ServedPack],
    actions: list[Action],
    results: tuple[StepResult, ...] = (),
    memory: Memory | None = None,
) -> dict[str, dict[str, object]]:
    packs = derive_packs(
        {}, served, Plan(tuple(actions)), {r.ref: r for r in results}, memory or Memory(), {}, NOW
    )
    return {ref: p.model_dump() for ref, p in packs.items()}


def test_failed_upgrade_serves_the_old_version_and_says_so() -> None:
    action = Action(ActionKind.UPGRADE, "a", "1.1.0 -> 1.2.0", NEW, "1.1.0")
    failure = Failure("a", "new", FailureKind.DETERMINISTIC, "tests failed", 0.0)
    result = StepResult(
        action, StepOutcome.FAILED, error="tests failed", failure_kind=FailureKind.DETERMINISTIC
    )
    pack = derive({"a": OLD}, [action], (result,), Memory(failures={"a": failure}))["a"]
    assert (pack["state"], pack["version"], pack["desired_version"]) == ("failed", "1.1.0", "1.2.0")
    assert pack["reason"] == "serving 1.1.0; 1.2.0 failed at 12:03:00: tests failed"
    assert (pack["last_error"], pack["last_error_at"]) == ("tests failed", NOW)


def test_transient_failure_is_pending() -> None:
    action = Action(ActionKind.INSTALL, "a", "new", NEW)
    result = StepResult(
        action, StepOutcome.FAILED, error="db down", failure_kind=FailureKind.TRANSIENT
    )
    assert derive({}, [action], (result,))["a"]["state"] == "pending"


def test_successful_change_is_active_with_what_is_served() -> None:
    served = ServedPack("a", "1.2.0", "new", "src", NOW)
    action = Action(ActionKind.UPGRADE, "a", "1.1.0 -> 1.2.0", NEW, "1.1.0")
    pack = derive({"a": served}, [action], (StepResult(action, StepOutcome.DONE),))["a"]
    assert (pack["state"], pack["version"], pack["desired_version"]) == ("active", "1.2.0", None)


def test_removed_pack_stays_listed_as_removed_with_its_source() -> None:
    action = Action(ActionKind.REMOVE, "a", "gone", current_version="1.1.0", current_source="src")
    first = derive_packs(
        {}, {}, Plan((action,)), {"a": StepResult(action, StepOutcome.DONE)}, Memory(), {}, NOW
    )
    assert first["a"].state == "removed" and first["a"].version is None
    assert first["a"].source == "src"  # not shown as a pack registered by hand
    later = derive_packs(first, {}, Plan(()), {}, Memory(), {}, NOW)
    assert later["a"].state == "removed"


def test_blocked_and_by_hand_packs() -> None:
    blocked = Action(
        ActionKind.BLOCKED,
        "b",
        "needs core, which no source provides",
        Candidate("b", "1.0.0", "x", "src", Path("/s")),
    )
    by_hand = ServedPack("h", "0.1.0", "h", None, NOW)
    packs = derive({"h": by_hand}, [blocked])
    assert (packs["b"]["state"], packs["b"]["reason"]) == (
        "blocked",
        "needs core, which no source provides",
    )
    assert (packs["h"]["state"], packs["h"]["source"]) == ("active", None)


def test_an_invalid_entry_is_listed_under_its_ref_and_names_what_serves() -> None:
    bad = InvalidCandidate("src", "a", "d1", ("a/pack.yaml:3: version: not semver",), "a")
    keep = Action(ActionKind.KEEP, "a", "its content is invalid", None, "1.1.0", "old", "src")
    packs = derive_packs({}, {"a": OLD}, Plan((keep,)), {}, Memory(), {}, NOW, (bad,))
    pack = packs["a"]
    assert (pack.state, pack.version, pack.source) == ("invalid", "1.1.0", "src")
    assert pack.reason == (
        "serving 1.1.0; 'a' in source 'src' is not a valid pack: a/pack.yaml:3: version: not semver"
    )
    # an entry whose pack.yaml names no ref is listed under the entry's name
    nameless = InvalidCandidate("src", "junk", "d2", ("junk/pack.yaml: missing",))
    assert derive_packs({}, {}, Plan(()), {}, Memory(), {}, NOW, (nameless,))["junk"].state == (
        "invalid"
    )
    # another source's valid content of the ref decides its state
    noop = Action(ActionKind.NOOP, "a", "up to date", NEW)
    served = {"a": ServedPack("a", "1.2.0", "new", "other", NOW)}
    assert derive_packs({}, served, Plan((noop,)), {}, Memory(), {}, NOW, (bad,))["a"].state == (
        "active"
    )
