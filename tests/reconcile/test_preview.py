"""The preview behind `attuned plan`: the component diff and the report are pure functions of
plain values."""

from __future__ import annotations

from pathlib import Path

from attuned.pack.loader import Pack, load_pack
from attuned.reconcile.inplace import Scanned, desired_of
from attuned.reconcile.model import (
    ActualPack,
    Candidate,
    Failure,
    FailureKind,
    InvalidCandidate,
    Memory,
    SourceState,
)
from attuned.reconcile.planner import plan
from attuned.reconcile.preview import (
    ComponentChange,
    PackPreview,
    Policy,
    Preview,
    Served,
    SourceView,
    as_rows,
    build,
    components_map,
    diff_components,
    rows_map,
    served_components,
    verdict_on_tests,
)
from attuned.store.attune.reader import ComponentRow
from tests.attune_packs import BASE, write_pack
from tests.conftest import PackFactory

ACTION_A = {"ref": "p.a", "runner_type": "shell", "entry_point": "a.sh"}
TRIGGER_T = {"ref": "p.t", "label": "T"}


# -- the diff ----------------------------------------------------------------------------------


def test_diff_tells_added_changed_and_removed_in_attunes_load_order() -> None:
    old = {
        ("action", "p.a"): ACTION_A,
        ("action", "p.b"): {"ref": "p.b"},
        ("trigger", "p.t"): TRIGGER_T,
        ("rule", "p.r"): {"ref": "p.r"},
    }
    new = {
        ("action", "p.a"): {**ACTION_A, "entry_point": "a2.sh", "label": "A"},
        ("action", "p.b"): {"ref": "p.b"},
        ("sensor", "p.s"): {"ref": "p.s"},
        ("permission_set", "p.ps"): {"ref": "p.ps"},
    }
    diff = diff_components(old, new)
    assert diff.added == (
        ComponentChange("permission_set", "p.ps"),
        ComponentChange("sensor", "p.s"),
    )
    assert diff.changed == (ComponentChange("action", "p.a", ("entry_point", "label")),)
    assert diff.removed == (ComponentChange("trigger", "p.t"), ComponentChange("rule", "p.r"))
    assert diff.as_dict() == {
        "added": [{"kind": "permission_set", "ref": "p.ps"}, {"kind": "sensor", "ref": "p.s"}],
        "changed": [{"kind": "action", "ref": "p.a", "fields": ["entry_point", "label"]}],
        "removed": [{"kind": "trigger", "ref": "p.t"}, {"kind": "rule", "ref": "p.r"}],
        "compared": "definitions",
    }


def test_same_ref_under_another_kind_is_one_removed_and_one_added() -> None:
    diff = diff_components({("trigger", "p.x"): {}}, {("action", "p.x"): {}})
    assert (diff.added, diff.changed, diff.removed) == (
        (ComponentChange("action", "p.x"),),
        (),
        (ComponentChange("trigger", "p.x"),),
    )


def test_an_unknown_definition_is_not_called_a_change() -> None:
    diff = diff_components(
        {("action", "p.a"): None}, {("action", "p.a"): ACTION_A}, compared="refs"
    )
    assert (diff.added, diff.changed, diff.removed, diff.compared) == ((), (), (), "refs")


def test_a_removed_pack_lists_every_component_as_removed() -> None:
    diff = diff_components({("action", "p.a"): ACTION_A, ("trigger", "p.t"): TRIGGER_T}, {})
    assert [c.ref for c in diff.removed] == ["p.t", "p.a"]
    assert diff.added == diff.changed == ()


def test_database_rows_compare_with_the_rows_a_pack_will_make(tmp_path: Path) -> None:
    """A standalone workflow makes a companion action of its ref; Attune's table for
    workflows is `workflow_definition`: neither is a difference."""
    pack = load_pack(write_pack(BASE, tmp_path / "base"))
    rows = [
        ComponentRow(kind, 1, ref, None, {})
        for kind, ref in as_rows(pack.components)
        if kind != "workflow"
    ]
    rows += [
        ComponentRow("workflow_definition", 1, ref, None, {})
        for kind, ref in as_rows(pack.components)
        if kind == "workflow"
    ]
    assert ("action", "base.nightly") in as_rows(pack.components)
    assert ("action", "base.nightly") not in components_map(pack.components)
    diff = diff_components(rows_map(rows), as_rows(pack.components), compared="refs")
    assert (diff.added, diff.changed, diff.removed) == ((), (), ())


# -- whether tests would run -------------------------------------------------------------------


def test_the_verdict_on_tests_follows_the_source_and_the_pack(make_pack: PackFactory) -> None:
    tested = load_pack(make_pack("tested"))
    untested = load_pack(make_pack("untested", test_script=None))
    disabled = load_pack(
        make_pack("disabled", testing={"enabled": False, "runners": {}}, test_script=None)
    )
    assert verdict_on_tests(tested, "f", Policy()) == "run"
    assert verdict_on_tests(tested, "f", Policy(force=True)).startswith("run (source 'f' forces")
    assert verdict_on_tests(untested, "f", Policy(skip_tests=True)) == (
        "skipped (source 'f' sets skip_tests)"
    )
    assert verdict_on_tests(untested, "f", Policy()).startswith(
        "refused (the pack has no testing section"
    )
    assert "has testing.enabled: false" in verdict_on_tests(disabled, "f", Policy())


# -- the report --------------------------------------------------------------------------------


FOLDER = SourceState("folder", readable=True, prune=True)


def candidate(pack: Pack, entry: str) -> Candidate:
    return Candidate(pack.ref, pack.version, pack.digest, "folder", pack.path, entry)


def test_build_reports_each_action_with_its_diff_and_tests(make_pack: PackFactory) -> None:
    new = load_pack(make_pack("newp"))
    served_app = load_pack(
        make_pack(
            "app", files={"actions/a.yaml": "ref: app.a\n", "triggers/t.yaml": "ref: app.t\n"}
        )
    )
    app = load_pack(
        make_pack(
            "app",
            version="2.0.0",
            parent=new.path.parent.parent / "next",
            files={"actions/a.yaml": "ref: app.a\nlabel: A\n", "actions/b.yaml": "ref: app.b\n"},
        )
    )
    same = load_pack(make_pack("same"))
    broken = InvalidCandidate("folder", "broken", "", ("pack.yaml:1: bad",), "broken")
    scan = Scanned(
        FOLDER,
        (candidate(new, "newp"), candidate(app, "app"), candidate(same, "same")),
        (broken,),
        {"newp": new, "app": app, "same": same},
    )
    actual = {
        "app": ActualPack("app", "1.0.0", served_app.digest, "folder"),
        "same": ActualPack("same", "1.0.0", same.digest, "folder"),
        "gone": ActualPack("gone", "0.1.0", "d", "folder"),
        "broken": ActualPack("broken", "1.0.0", "d2", "folder"),
    }
    desired = desired_of([scan])
    planned = plan(desired, actual, Memory(), 0.0)
    served = {
        "app": Served(components_map(served_app.components)),
        "gone": Served({("action", "gone.x"): None}, compared="refs"),
    }
    found = build(planned, [scan], actual, {}, served.get, desired)
    by_ref = {p.ref: p for p in found.packs}
    assert [p.action for p in found.packs].count("keep") == 0  # told as the invalid entry
    assert by_ref["newp"].action == "install" and by_ref["newp"].tests == "run"
    upgrade = by_ref["app"]
    assert (upgrade.action, upgrade.from_version, upgrade.to_version) == (
        "upgrade",
        "1.0.0",
        "2.0.0",
    )
    assert upgrade.components is not None
    assert upgrade.components.added == (ComponentChange("action", "app.b"),)
    assert upgrade.components.changed == (ComponentChange("action", "app.a", ("label",)),)
    assert upgrade.components.removed == (ComponentChange("trigger", "app.t"),)
    removal = by_ref["gone"]
    assert (removal.action, removal.from_version, removal.tests) == ("remove", "0.1.0", None)
    assert removal.components is not None and removal.components.compared == "refs"
    assert removal.components.removed == (ComponentChange("action", "gone.x"),)
    assert by_ref["same"].action == "noop" and by_ref["same"].components is None
    invalid = by_ref["broken"]
    assert invalid.action == "invalid" and invalid.from_version == "1.0.0"
    assert invalid.reason == "pack.yaml:1: bad (serving 1.0.0 until it is fixed)"
    assert found.changes
    assert found.summary() == {
        "install": 1,
        "upgrade": 1,
        "reinstall": 0,
        "remove": 1,
        "blocked": 1,
        "unchanged": 1,
    }
    data = found.as_dict()
    assert data["changes"] is True and data["summary"] == found.summary()
    assert set(data["packs"][0]) == {
        "ref",
        "action",
        "from_version",
        "to_version",
        "source",
        "entry",
        "reason",
        "tests",
        "components",
    }


def test_a_remembered_failure_of_the_same_content_is_failed_not_a_change(
    make_pack: PackFactory,
) -> None:
    pack = load_pack(make_pack("flaky"))
    scan = Scanned(FOLDER, (candidate(pack, "flaky"),), (), {"flaky": pack})
    failure = Failure("flaky", pack.digest, FailureKind.DETERMINISTIC, "tests of 1.0.0 failed", 0)
    planned = plan(desired_of([scan]), {}, Memory(failures={"flaky": failure}), 1.0)
    found = build(planned, [scan], {}, {}, lambda ref: None)
    [entry] = found.packs
    assert (entry.action, entry.tests, entry.components) == ("failed", None, None)
    assert "tests of 1.0.0 failed" in entry.reason
    assert not found.changes and found.summary()["blocked"] == 1


def test_only_source_keeps_that_sources_packs() -> None:
    found = Preview(
        (PackPreview("a", "install", source="one"), PackPreview("b", "remove", source="two")),
        (SourceView("one", True, None, None), SourceView("two", True, None, None)),
    )
    mine = found.only_source("two")
    assert [p.ref for p in mine.packs] == ["b"] and [s.name for s in mine.sources] == ["two"]


def test_served_components_come_from_the_store_else_from_the_rows(
    tmp_path: Path, make_pack: PackFactory
) -> None:
    pack_dir = make_pack("app", files={"actions/a.yaml": "ref: app.a\n"})
    rows = [ComponentRow("action", 1, "app.a", None, {})]
    from_store = served_components(pack_dir, lambda: rows)
    assert from_store is not None and from_store.compared == "definitions"
    assert from_store.components == {("action", "app.a"): {"ref": "app.a"}}
    from_rows = served_components(tmp_path / "gone", lambda: rows)
    assert from_rows == Served({("action", "app.a"): None}, compared="refs")
    assert served_components(None, None) is None
