"""Two stored runs of one pack compared, case by case: what `attuned compare` shows.

The runs are picked by selector (`#ID`, `serving`, `latest` or a version) among the runs
`attuned.store.runs` selects; the comparison itself is `attuned.testing.regressions.compare`,
fed exactly as the regression gate feeds it, so `compare` and the gate agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from attuned.store import cases, registered_packs
from attuned.store.models import TestRun
from attuned.store.runs import RunFilter, RunNotFound, has_runs, newest, run_by_id
from attuned.testing.regressions import Comparison, Thresholds, compare, flaky_cases, medians

SERVING = "serving"
LATEST = "latest"


@dataclass(frozen=True)
class RunComparison:
    """Two runs of one pack and what changed from `before` to `after`, case by case."""

    ref: str
    before: TestRun
    after: TestRun
    serving_digest: str | None
    comparison: Comparison


def serving_digest(session: Session, ref: str) -> str | None:
    """The content digest of the version attuned serves of `ref`, if it serves one."""
    pack = registered_packs.get_pack(session, ref)
    return pack.digest if pack is not None and pack.managed and pack.digest else None


def pick(session: Session, ref: str, selector: str, serving: str | None) -> TestRun:
    """The run a selector names: `#ID`, `serving` (the newest run of the served content),
    `latest` (the newest run) or a version (its newest run)."""
    if selector.startswith("#"):
        number = selector[1:]
        if not number.isdigit():
            raise RunNotFound(f"bad run selector {selector!r}: #ID takes a number")
        return run_by_id(session, ref, int(number))
    if selector == SERVING:
        if serving is None:
            raise RunNotFound(f"attuned serves no version of {ref!r}: name a run to compare")
        where, what = RunFilter(ref, digest=serving), "of the serving version"
    elif selector == LATEST:
        where, what = RunFilter(ref), "at all"
    else:
        where, what = RunFilter(ref, versions=(selector,)), f"at version {selector}"
    found = newest(session, where)
    if found is None:
        raise RunNotFound(f"no test run of {ref!r} {what}")
    return found


def compare_runs(
    session: Session,
    ref: str,
    before: str | None,
    after: str | None,
    *,
    window: int,
    thresholds: Thresholds,
) -> RunComparison:
    """Compare two runs of `ref`. Default `before`: the serving version's newest run;
    default `after`: the newest run whose content differs from `before`'s (the latest
    candidate). Flaky: cases that flip within the newest `window` runs of either digest;
    durations are judged against the medians of `before`'s digest, as the gate does."""
    if not has_runs(session, ref):
        raise RunNotFound(f"no test runs recorded for {ref!r}")
    serving = serving_digest(session, ref)
    old = pick(session, ref, before or SERVING, serving)
    if after is not None:
        new = pick(session, ref, after, serving)
    else:
        found = newest(session, RunFilter(ref, other_than=old.pack_digest))
        if found is None:
            raise RunNotFound(
                f"no run of {ref!r} tested content other than {old.pack_version} "
                f"(#{old.id}, digest {old.pack_digest[:12] or 'unknown'}): nothing to compare "
                "it with; name both runs"
            )
        new = found
    return RunComparison(ref, old, new, serving, _comparison(session, old, new, window, thresholds))


def _comparison(
    session: Session, before: TestRun, after: TestRun, window: int, thresholds: Thresholds
) -> Comparison:
    old_window = _window(session, before, window)
    new_window = _window(session, after, window)
    return compare(
        cases.run_cases(session, before),
        cases.run_cases(session, after),
        # per content: a case passing in one digest and failing in the other is a change
        flaky=flaky_cases(old_window.statuses()) | flaky_cases(new_window.statuses()),
        baseline_ms=medians(old_window.durations()),
        thresholds=thresholds,
    )


def _window(session: Session, run: TestRun, window: int) -> cases.DigestRuns:
    """The newest `window` runs of `run`'s content; a run stored without a digest stands
    alone (runs of unknown content say nothing about each other)."""
    if run.pack_digest:
        return cases.digest_runs(session, run.pack_ref, run.pack_digest, window)
    own = tuple(cases.run_cases(session, run))
    assert run.id is not None
    return cases.DigestRuns("", (run.pack_version,), (run.id,), (own,) if own else ())
