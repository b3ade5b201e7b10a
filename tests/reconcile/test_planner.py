"""The planner, rule by rule, with plain values: no filesystem, database or clock."""

from __future__ import annotations

from pathlib import Path

from attuned.reconcile.model import (
    ActionKind,
    ActualPack,
    Candidate,
    Desired,
    Failure,
    FailureKind,
    InvalidCandidate,
    Memory,
    Requirement,
    SourceState,
)
from attuned.reconcile.planner import plan

NOW = 1_000_000.0
FOLDER = SourceState("folder", readable=True, prune=True)
GIT = SourceState("git", readable=True, prune=True)


def cand(
    ref: str,
    version: str = "1.0.0",
    digest: str | None = None,
    source: str = "folder",
    requires: tuple[tuple[str, str], ...] = (),
) -> Candidate:
    return Candidate(
        ref=ref,
        version=version,
        digest=digest or f"{ref}-{version}",
        source=source,
        snapshot=Path("/snap") / ref,
        entry=ref,
        requires=tuple(Requirement(r, c) for r, c in requires),
    )


def have(
    ref: str,
    version: str = "1.0.0",
    digest: str | None = None,
    source: str | None = "folder",
    requires: tuple[tuple[str, str], ...] = (),
    suspended: bool = False,
) -> ActualPack:
    return ActualPack(
        ref=ref,
        version=version,
        digest=digest or f"{ref}-{version}",
        source=source,
        requires=tuple(Requirement(r, c) for r, c in requires),
        suspended=suspended,
    )


def run(
    candidates: list[Candidate],
    actual: list[ActualPack] | None = None,
    memory: Memory | None = None,
    sources: tuple[SourceState, ...] = (FOLDER,),
    invalid: tuple[InvalidCandidate, ...] = (),
) -> list[tuple[str, str, str]]:
    result = plan(
        Desired(tuple(candidates), invalid, sources),
        {a.ref: a for a in actual or []},
        memory or Memory(),
        NOW,
    )
    return [(a.kind.value, a.ref, a.reason) for a in result.actions]


def kinds(
    candidates: list[Candidate], actual: list[ActualPack] | None = None, **kwargs: object
) -> list[tuple[str, str]]:
    return [(k, r) for k, r, _ in run(candidates, actual, **kwargs)]  # type: ignore[arg-type]


# install / upgrade / reinstall / noop --------------------------------------------------------


def test_empty_world_plans_nothing() -> None:
    assert run([]) == []


def test_new_pack_installs() -> None:
    assert run([cand("a")]) == [("install", "a", "new pack 1.0.0")]


def test_same_digest_is_noop() -> None:
    assert kinds([cand("a")], [have("a")]) == [("noop", "a")]


def test_new_version_upgrades() -> None:
    assert run([cand("a", "1.1.0")], [have("a")]) == [("upgrade", "a", "1.0.0 -> 1.1.0")]


def test_same_version_new_content_reinstalls() -> None:
    assert kinds([cand("a", digest="new")], [have("a")]) == [("reinstall", "a")]


def test_downgrade_is_an_upgrade_to_the_declared_version() -> None:
    assert run([cand("a", "0.9.0")], [have("a")]) == [("upgrade", "a", "1.0.0 -> 0.9.0")]


# conflicts --------------------------------------------------------------------------------


def test_first_source_in_config_order_wins() -> None:
    result = run(
        [cand("a", digest="from-git", source="git"), cand("a", source="folder")],
        sources=(GIT, FOLDER),
    )
    assert [(k, r) for k, r, _ in result] == [("install", "a"), ("conflict", "a")]
    assert "folder:a also provides a; source 'git' wins" in result[1][2]
    decided = plan(
        Desired((cand("a", digest="from-git", source="git"), cand("a")), (), (GIT, FOLDER)),
        {},
        Memory(),
        NOW,
    ).by_ref()
    assert decided["a"].candidate is not None and decided["a"].candidate.digest == "from-git"


def test_two_entries_of_one_source_with_the_same_ref() -> None:
    first = Candidate("a", "1.0.0", "d1", "folder", Path("/s/1"), entry="a-copy")
    second = Candidate("a", "1.0.0", "d2", "folder", Path("/s/2"), entry="a")
    result = plan(Desired((first, second), (), (FOLDER,)), {}, Memory(), NOW)
    assert [(a.kind, a.candidate.entry if a.candidate else "") for a in result.actions] == [
        (ActionKind.INSTALL, "a"),
        (ActionKind.CONFLICT, "a-copy"),
    ]


# dependencies -----------------------------------------------------------------------------


def test_dependencies_install_first_whatever_the_input_order() -> None:
    result = kinds(
        [
            cand("app", requires=(("web", ">=1"),)),
            cand("web", requires=(("core", "*"),)),
            cand("core"),
        ]
    )
    assert result == [("install", "core"), ("install", "web"), ("install", "app")]


def test_missing_dependency_blocks_and_says_on_what() -> None:
    assert run([cand("app", requires=(("core", ">=2.0.0"),))]) == [
        ("blocked", "app", "needs core >=2.0.0, which no source provides")
    ]


def test_dependency_served_by_hand_satisfies() -> None:
    assert kinds([cand("app", requires=(("core", "^1.0"),))], [have("core", source=None)]) == [
        ("install", "app")
    ]


def test_dependency_at_wrong_version_blocks() -> None:
    assert run([cand("app", requires=(("core", ">=2"),)), cand("core", "1.5.0")]) == [
        ("install", "core", "new pack 1.5.0"),
        ("blocked", "app", "needs core >=2, but core 1.5.0 is provided"),
    ]


def test_dependency_upgraded_in_the_same_plan_satisfies() -> None:
    assert kinds(
        [cand("app", requires=(("core", ">=2"),)), cand("core", "2.0.0")], [have("core", "1.0.0")]
    ) == [("upgrade", "core"), ("install", "app")]


def test_dependency_failing_with_no_served_version_blocks() -> None:
    memory = Memory(
        failures={
            "core": Failure(
                "core", "core-1.0.0", FailureKind.DETERMINISTIC, "tests failed", NOW - 5
            )
        }
    )
    result = run([cand("app", requires=(("core", "*"),)), cand("core")], memory=memory)
    assert result[0][:2] == ("failed", "core")
    assert result[1] == (
        "blocked",
        "app",
        "needs core, which is failed: tests failed (waiting for new content)",
    )


def test_dependency_failing_but_old_version_served_satisfies() -> None:
    memory = Memory(
        failures={
            "core": Failure(
                "core", "core-1.1.0", FailureKind.DETERMINISTIC, "tests failed", NOW - 5
            )
        }
    )
    result = kinds(
        [cand("app", requires=(("core", "^1"),)), cand("core", "1.1.0")],
        [have("core", "1.0.0")],
        memory=memory,
    )
    assert result == [("failed", "core"), ("install", "app")]


def test_cycle_is_blocked_never_looped_on() -> None:
    result = run([cand("a", requires=(("b", "*"),)), cand("b", requires=(("a", "*"),)), cand("c")])
    assert ("blocked", "a", "dependency cycle: a -> b -> a") in result
    assert ("blocked", "b", "dependency cycle: b -> a -> b") in result
    assert ("install", "c", "new pack 1.0.0") in result


def test_dependent_of_a_cycle_is_blocked() -> None:
    result = run(
        [
            cand("a", requires=(("b", "*"),)),
            cand("b", requires=(("a", "*"),)),
            cand("app", requires=(("a", "*"),)),
        ]
    )
    assert next(r for r in result if r[1] == "app")[0] == "blocked"


def test_self_dependency_is_a_cycle() -> None:
    assert run([cand("a", requires=(("a", "*"),))]) == [
        ("blocked", "a", "dependency cycle: a -> a")
    ]


# remembered failures ----------------------------------------------------------------------


def test_deterministic_failure_not_retried_until_content_changes() -> None:
    failure = Failure("a", "a-1.1.0", FailureKind.DETERMINISTIC, "tests failed at 12:03", NOW)
    memory = Memory(failures={"a": failure})
    assert run([cand("a", "1.1.0")], [have("a")], memory=memory) == [
        ("failed", "a", "tests failed at 12:03 (waiting for new content)")
    ]
    assert kinds([cand("a", "1.1.1")], [have("a")], memory=memory) == [("upgrade", "a")]


def test_transient_failure_waits_for_backoff_then_retries() -> None:
    failure = Failure(
        "a",
        "a-1.0.0",
        FailureKind.TRANSIENT,
        "database unavailable",
        NOW - 1,
        attempts=2,
        retry_at=NOW + 30,
    )
    assert run([cand("a")], memory=Memory(failures={"a": failure})) == [
        ("wait", "a", "database unavailable (retry in 30 s, attempt 3)")
    ]
    due = Failure("a", "a-1.0.0", FailureKind.TRANSIENT, "x", NOW - 60, retry_at=NOW - 1)
    assert kinds([cand("a")], memory=Memory(failures={"a": due})) == [("install", "a")]


def test_failure_of_served_content_is_ignored_when_up_to_date() -> None:
    failure = Failure("a", "a-1.0.0", FailureKind.DETERMINISTIC, "old", NOW)
    assert kinds([cand("a")], [have("a")], memory=Memory(failures={"a": failure})) == [
        ("noop", "a")
    ]


# suspension -------------------------------------------------------------------------------


def test_suspended_pack_is_left_alone_both_ways() -> None:
    memory = Memory(suspended=frozenset({"a", "b"}))
    assert kinds([cand("a", "2.0.0")], [have("a"), have("b")], memory=memory) == [
        ("suspended", "a"),
        ("keep", "b"),
    ]
    assert kinds([cand("a", "2.0.0")], [have("a", suspended=True)]) == [("suspended", "a")]


# removal ----------------------------------------------------------------------------------


def test_pack_no_longer_provided_is_removed() -> None:
    assert run([], [have("a")]) == [("remove", "a", "no longer provided by source 'folder'")]


def test_pack_registered_by_hand_is_never_removed() -> None:
    assert run([], [have("a", source=None)]) == []


def test_unreadable_source_never_prunes() -> None:
    broken = SourceState("folder", readable=False, prune=True, error="mount missing")
    assert run([], [have("a")], sources=(broken,)) == [
        ("keep", "a", "source 'folder' is unreadable (mount missing); not pruning")
    ]


def test_source_that_does_not_prune() -> None:
    quiet = SourceState("folder", readable=True, prune=False)
    assert kinds([], [have("a")], sources=(quiet,)) == [("keep", "a")]


def test_source_removed_from_config_keeps_its_packs() -> None:
    assert run([], [have("a", source="old")]) == [
        ("keep", "a", "source 'old' is no longer configured")
    ]


def test_invalid_new_content_keeps_the_served_version() -> None:
    invalid = InvalidCandidate("folder", "a", "dx", ("pack.yaml:3: bad",), ref_hint="a")
    assert kinds([], [have("a")], invalid=(invalid,)) == [("keep", "a")]


def test_removal_blocked_while_a_staying_pack_needs_it() -> None:
    result = run([cand("app", requires=(("core", "*"),))], [have("core"), have("app")])
    assert result == [
        ("noop", "app", "up to date"),
        ("blocked", "core", "not removed: needed by app"),
    ]


def test_removal_blocked_by_hand_registered_dependent() -> None:
    result = run([], [have("core"), have("tool", source=None, requires=(("core", "*"),))])
    assert result == [("blocked", "core", "not removed: needed by tool")]


def test_dependents_removed_before_dependencies() -> None:
    result = kinds(
        [],
        [
            have("core"),
            have("web", requires=(("core", "*"),)),
            have("app", requires=(("web", "*"),)),
        ],
    )
    assert result == [("remove", "app"), ("remove", "web"), ("remove", "core")]


def test_removal_from_one_source_while_another_provides_something_else() -> None:
    result = kinds(
        [cand("b", source="git")], [have("a"), have("b", source="git")], sources=(FOLDER, GIT)
    )
    assert result == [("noop", "b"), ("remove", "a")]


def test_plan_is_deterministic() -> None:
    candidates = [
        cand(r, requires=((d, "*"),) if d else ())
        for r, d in [("x", "y"), ("y", ""), ("z", "y"), ("w", "x")]
    ]
    first = run(candidates)
    assert all(run(list(reversed(candidates))) == first for _ in range(3))
    assert [r for _, r, _ in first] == ["y", "x", "w", "z"]
