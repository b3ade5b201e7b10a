"""The planner: a pure function from (desired, actual, memory, now) to an ordered plan.

No clock, filesystem or database: everything arrives as data, so every rule below is tested
with plain values. Rules, in the order they apply:

1. One ref from two sources: the first source in config order wins; the other is a conflict.
2. A suspended ref is left alone.
3. Content that failed deterministically (invalid, tests failed) is not retried until its
   digest changes; a transient failure waits for its backoff.
4. Dependencies install before dependents; a pack whose dependency is neither served at a
   satisfying version nor about to be, is blocked and says on what. Cycles are blocked.
5. A registered pack no source wants is removed only if a readable source that may prune
   registered it, and no pack that stays depends on it; dependents are removed first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from attuned.pack.versions import Constraint
from attuned.reconcile.model import (
    Action,
    ActionKind,
    ActualPack,
    Candidate,
    Desired,
    FailureKind,
    Memory,
    Plan,
    Requirement,
    SourceState,
)

# outcomes after which a pack will be served at the candidate's version
_WILL_SERVE = frozenset(
    {ActionKind.INSTALL, ActionKind.UPGRADE, ActionKind.REINSTALL, ActionKind.NOOP}
)


def plan(desired: Desired, actual: Mapping[str, ActualPack], memory: Memory, now: float) -> Plan:
    winners, conflicts = _pick_winners(desired)
    decided: dict[str, Action] = {}
    cycles = _cycles(winners)
    for ref in _dependency_order(winners):
        decided[ref] = _decide(
            winners[ref], actual.get(ref), memory, now, cycles, decided, actual, winners
        )
    removals = _removals(desired, actual, memory, winners)
    return Plan(tuple([*decided.values(), *removals, *conflicts]))


def _pick_winners(desired: Desired) -> tuple[dict[str, Candidate], list[Action]]:
    order = {s.name: i for i, s in enumerate(desired.sources)}
    ranked = sorted(
        desired.candidates, key=lambda c: (order.get(c.source, len(order)), c.entry, c.ref)
    )
    winners: dict[str, Candidate] = {}
    conflicts: list[Action] = []
    for candidate in ranked:
        first = winners.get(candidate.ref)
        if first is None:
            winners[candidate.ref] = candidate
            continue
        where = f"{candidate.source}:{candidate.entry}" if candidate.entry else candidate.source
        conflicts.append(
            Action(
                ActionKind.CONFLICT,
                candidate.ref,
                candidate=candidate,
                reason=f"{where} also provides {candidate.ref}; source {first.source!r} wins "
                "(first in config order)",
            )
        )
    return winners, conflicts


def _dependency_order(winners: Mapping[str, Candidate]) -> list[str]:
    """Refs with their in-set dependencies first; ties (and cycles) broken by name."""
    ordered: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(ref: str) -> None:
        if state.get(ref):
            return
        state[ref] = 1
        for req in winners[ref].requires:
            if req.ref in winners:
                visit(req.ref)
        state[ref] = 2
        ordered.append(ref)

    for ref in sorted(winners):
        visit(ref)
    return ordered


def _cycles(winners: Mapping[str, Candidate]) -> dict[str, list[str]]:
    """Each ref that is part of a dependency cycle, with one cycle through it."""
    found: dict[str, list[str]] = {}
    for start in sorted(winners):
        path = _find_cycle(start, winners)
        if path:
            found.setdefault(start, path)
    return found


def _find_cycle(start: str, winners: Mapping[str, Candidate]) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        ref, path = stack.pop()
        for req in winners[ref].requires:
            if req.ref == start:
                return [*path, start]
            if req.ref in winners and req.ref not in seen:
                seen.add(req.ref)
                stack.append((req.ref, [*path, req.ref]))
    return None


def _decide(
    candidate: Candidate,
    current: ActualPack | None,
    memory: Memory,
    now: float,
    cycles: Mapping[str, list[str]],
    decided: Mapping[str, Action],
    actual: Mapping[str, ActualPack],
    winners: Mapping[str, Candidate],
) -> Action:
    ref = candidate.ref

    def action(kind: ActionKind, reason: str = "") -> Action:
        return Action(kind, ref, reason, candidate, *_served(current))

    if ref in memory.suspended or (current is not None and current.suspended):
        return action(ActionKind.SUSPENDED, "suspended by an operator")
    if current is not None and current.digest == candidate.digest:
        return action(ActionKind.NOOP, "up to date")
    failure = memory.failures.get(ref)
    if failure is not None and failure.digest == candidate.digest:
        if failure.kind is FailureKind.DETERMINISTIC:
            return action(ActionKind.FAILED, f"{failure.reason} (waiting for new content)")
        if now < failure.retry_at:
            return action(
                ActionKind.WAIT,
                f"{failure.reason} (retry in "
                f"{failure.retry_at - now:.0f} s, attempt "
                f"{failure.attempts + 1})",
            )
    if ref in cycles:
        return action(ActionKind.BLOCKED, "dependency cycle: " + " -> ".join(cycles[ref]))
    missing = [_unmet(req, decided, actual, winners) for req in candidate.requires]
    reasons = [m for m in missing if m]
    if reasons:
        return action(ActionKind.BLOCKED, "; ".join(reasons))
    if current is None:
        return action(ActionKind.INSTALL, f"new pack {candidate.version}")
    if current.version != candidate.version:
        return action(ActionKind.UPGRADE, f"{current.version} -> {candidate.version}")
    return action(ActionKind.REINSTALL, f"{candidate.version} with new content")


def _satisfies(version: str, req: Requirement) -> bool:
    try:
        return Constraint(req.constraint).allows(version)
    except ValueError:
        return False


def _unmet(
    req: Requirement,
    decided: Mapping[str, Action],
    actual: Mapping[str, ActualPack],
    winners: Mapping[str, Candidate],
) -> str | None:
    """Why `req` will not be met after this plan, or None when it will be."""
    wanted = f"{req.ref} {req.constraint}" if req.constraint not in ("", "*") else req.ref
    action = decided.get(req.ref)
    if action is not None and action.kind in _WILL_SERVE and action.candidate is not None:
        if _satisfies(action.candidate.version, req):
            return None
        return f"needs {wanted}, but {req.ref} {action.candidate.version} is provided"
    served = actual.get(req.ref)
    if served is not None and _satisfies(served.version, req):
        return None  # the dependency's new content failed, but a good version is served
    if action is not None:
        return f"needs {wanted}, which is {action.kind.value}: {action.reason}"
    if req.ref in winners:  # not decided yet: part of a cycle
        return f"needs {wanted}, which is in a dependency cycle"
    if served is not None:
        return f"needs {wanted}, but {req.ref} {served.version} is registered"
    return f"needs {wanted}, which no source provides"


def _served(pack: ActualPack | None) -> tuple[str | None, str | None, str | None]:
    """An action's `current_*` fields: the served version, digest and source."""
    if pack is None:
        return None, None, None
    return pack.version, pack.digest, pack.source


def _removals(
    desired: Desired,
    actual: Mapping[str, ActualPack],
    memory: Memory,
    winners: Mapping[str, Candidate],
) -> list[Action]:
    sources = {s.name: s for s in desired.sources}
    invalid_refs = {(i.source, i.ref_hint) for i in desired.invalid if i.ref_hint is not None}
    keep: list[Action] = []
    removable: dict[str, ActualPack] = {}
    for ref in sorted(set(actual) - set(winners)):
        pack = actual[ref]
        reason = _why_keep(pack, sources, invalid_refs, memory)
        if reason is None:
            removable[ref] = pack
        elif pack.source is not None:  # by-hand packs are not the daemon's business
            keep.append(Action(ActionKind.KEEP, ref, reason, None, *_served(pack)))
    ordered, blocked = _removal_order(removable, actual, winners)
    return [
        *keep,
        *(
            Action(ActionKind.BLOCKED, ref, why, None, *_served(actual[ref]))
            for ref, why in blocked
        ),
        *(
            Action(
                ActionKind.REMOVE,
                ref,
                f"no longer provided by source {actual[ref].source!r}",
                None,
                *_served(actual[ref]),
            )
            for ref in ordered
        ),
    ]


def _why_keep(
    pack: ActualPack,
    sources: Mapping[str, SourceState],
    invalid_refs: set[tuple[str, str]],
    memory: Memory,
) -> str | None:
    if pack.source is None:
        return "registered by hand"
    if pack.ref in memory.suspended or pack.suspended:
        return "suspended by an operator"
    source = sources.get(pack.source)
    if source is None:
        return f"source {pack.source!r} is no longer configured"
    if not source.readable:
        return f"source {pack.source!r} is unreadable ({source.error or 'error'}); not pruning"
    if (pack.source, pack.ref) in invalid_refs:
        return "its new content is invalid; serving the last good version"
    if not source.prune:
        return f"source {pack.source!r} does not prune"
    return None


def _removal_order(
    removable: Mapping[str, ActualPack],
    actual: Mapping[str, ActualPack],
    winners: Mapping[str, Candidate],
) -> tuple[list[str], list[tuple[str, str]]]:
    """Dependents before their dependencies; a pack something staying needs is blocked."""
    staying: dict[str, Iterable[Requirement]] = {
        **{ref: p.requires for ref, p in actual.items() if ref not in removable},
        **{ref: c.requires for ref, c in winners.items()},
    }
    pending = dict(removable)
    ordered: list[str] = []
    while True:
        ready = sorted(
            ref
            for ref in pending
            if not any(
                r.ref == ref
                for other, reqs in pending.items()
                if other != ref
                for r in reqs.requires
            )
            and not _needed_by(ref, staying)
        )
        if not ready:
            break
        ordered.extend(ready)
        for ref in ready:
            del pending[ref]
    blocked = []
    for ref in sorted(pending):
        users = sorted(_needed_by(ref, staying)) or sorted(
            other for other, p in pending.items() if any(r.ref == ref for r in p.requires)
        )
        blocked.append((ref, f"not removed: needed by {', '.join(users)}"))
    return ordered, blocked


def _needed_by(ref: str, staying: Mapping[str, Iterable[Requirement]]) -> set[str]:
    return {other for other, reqs in staying.items() if any(r.ref == ref for r in reqs)}
