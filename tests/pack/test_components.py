"""Components as Attune's loader reads them: kinds and order, refs, entry points, rule and
sensor references, workflows; and the files Attune would skip, refused with file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attuned.errors import ValidationFailed
from attuned.pack.components import ActionSpec, RuleSpec, SensorSpec, Workflow
from attuned.pack.loader import load_pack
from tests.conftest import EXAMPLES, PackFactory

ACTION = "ref: hello.greet\nrunner_type: shell\nentry_point: greet.sh\n"

# a pack with every kind, written as Attune's own core pack writes them (our own files)
PLATFORM = {
    "permission_sets/viewer.yaml": "ref: hello.viewer\nlabel: Viewer\ngrants:\n  - {resource: packs}\n",
    "runtimes/native.yaml": (
        "ref: hello.native\nname: Native\naliases: [Native, builtin]\n"
        "versions:\n  - {version: '1.2', is_default: true}\n"
    ),
    "triggers/tick.yaml": "ref: hello.tick\nparameters: {every: {type: integer}}\noutput: {}\n",
    "actions/greet.yaml": ACTION,
    "actions/greet.sh": "echo hi\n",
    "actions/ask.yaml": "ref: hello.ask\nrunner_type: native\nentry_point: attune-ask\n",
    "actions/deploy.yaml": "ref: hello.deploy\nworkflow_file: workflows/deploy.workflow.yaml\n",
    "actions/workflows/deploy.workflow.yaml": (
        "version: '1.0'\ntasks:\n  - name: one\n    action: hello.greet\n    on_success: two\n"
        "  - name: two\n    action: hello.ask\n"
    ),
    "workflows/nightly.yaml": "version: '1.0'\ntasks:\n  - {name: only, action: hello.ask}\n",
    "rules/on_tick.yaml": "ref: on_tick\ntrigger_ref: tick\naction_ref: hello.greet\n",
    "sensors/timer.yaml": (
        "ref: hello.timer\nrunner_type: native\nentry_point: attune-timer\ntrigger_types: [tick]\n"
    ),
}


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        load_pack(path)
    return [str(p) for p in caught.value.problems]


def test_example_components_in_attunes_load_order() -> None:
    pack = load_pack(EXAMPLES / "hello")
    assert [(c.kind, c.ref, c.file) for c in pack.components] == [
        ("trigger", "hello.arrived", "triggers/arrived.yaml"),
        ("action", "hello.greet", "actions/greet.yaml"),
    ]


def test_every_kind_attune_loads(make_pack: PackFactory) -> None:
    pack = load_pack(make_pack(files=PLATFORM))
    assert [(c.kind, c.ref) for c in pack.components] == [
        ("permission_set", "hello.viewer"),
        ("runtime", "hello.native"),
        ("trigger", "hello.tick"),
        ("action", "hello.ask"),
        ("action", "hello.deploy"),
        ("workflow", "hello.deploy"),  # from the action's workflow_file
        ("action", "hello.greet"),
        ("rule", "hello.on_tick"),  # a bare rule ref is the pack's own (Attune)
        ("sensor", "hello.timer"),
        ("workflow", "hello.nightly"),  # standalone: gets a companion action
    ]
    by_ref = {(c.kind, c.ref): c.spec for c in pack.components}
    rule = by_ref[("rule", "hello.on_tick")]
    assert isinstance(rule, RuleSpec) and rule.trigger_ref == "tick"
    sensor = by_ref[("sensor", "hello.timer")]
    assert isinstance(sensor, SensorSpec) and sensor.triggers("hello") == ["hello.tick"]
    linked = by_ref[("workflow", "hello.deploy")]
    assert isinstance(linked, Workflow) and linked.action == "hello.deploy"
    # legacy transitions are folded into `next`, as Attune stores a definition
    first = linked.definition["tasks"][0]
    assert first["next"] == [{"when": "{{ succeeded() }}", "do": ["two"]}]
    assert "on_success" not in first
    standalone = by_ref[("workflow", "hello.nightly")]
    assert isinstance(standalone, Workflow) and standalone.action is None
    assert standalone.entrypoint == "workflows/nightly.workflow.yaml"
    deploy = by_ref[("action", "hello.deploy")]
    assert isinstance(deploy, ActionSpec) and deploy.runner is None  # no runtime for it


def test_a_component_file_without_a_ref_is_refused(make_pack: PackFactory) -> None:
    path = make_pack(files={"actions/greet.yaml": "runner_type: shell\n"})
    [problem] = problems_of(path)
    assert "actions/greet.yaml" in problem and "needs its full ref, e.g. 'hello.greet'" in problem
    assert "Attune's loader skips" in problem


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("core.tick", "is in the namespace of pack 'core', not 'hello'"),
        ("Hello.Tick", "must be lower-case"),
        ("hello.tick.extra", "exactly one dot"),
        ("tick", "exactly one dot"),
        ("hello.ti ck", "no spaces"),
    ],
)
def test_refs_attune_would_not_store(make_pack: PackFactory, ref: str, why: str) -> None:
    path = make_pack(files={"triggers/t.yaml": f"ref: '{ref}'\n"})
    [problem] = problems_of(path)
    assert "triggers/t.yaml:1: ref:" in problem and why in problem


def test_action_entry_point_must_exist(make_pack: PackFactory) -> None:
    path = make_pack(files={"actions/greet.yaml": ACTION})
    [problem] = problems_of(path)
    assert problem.endswith(
        "actions/greet.yaml:3: entry_point: 'greet.sh' does not exist in the pack"
    )


def test_a_native_entry_point_is_a_platform_binary_not_a_file(make_pack: PackFactory) -> None:
    ok = make_pack(
        files={"actions/ask.yaml": "ref: hello.ask\nrunner_type: native\nentry_point: ask\n"}
    )
    assert [c.ref for c in load_pack(ok).components] == ["hello.ask"]
    bad = make_pack(
        "other",
        files={
            "actions/ask.yaml": "ref: other.ask\nrunner_type: native\nentry_point: ../bin/ask\n"
        },
    )
    [problem] = problems_of(bad)
    assert "entry_point: '../bin/ask': a native entry point names a binary" in problem


def test_entry_point_escaping_the_pack_is_refused(make_pack: PackFactory) -> None:
    path = make_pack(
        files={
            "actions/x.yaml": "ref: hello.x\nrunner_type: shell\nentry_point: ../../../etc/passwd\n"
        }
    )
    [problem] = problems_of(path)
    assert "points outside the pack" in problem


def test_an_action_without_runner_type_runs_on_shell_as_attunes_loader_says(
    make_pack: PackFactory,
) -> None:
    path = make_pack(files={"actions/a.yaml": "ref: hello.a\n"})
    [action] = load_pack(path).components
    assert isinstance(action.spec, ActionSpec) and action.spec.runner == "shell"


def test_values_attunes_columns_refuse_are_refused_with_their_line(make_pack: PackFactory) -> None:
    path = make_pack(
        files={
            "actions/a.yaml": "ref: hello.a\nparameter_delivery: env\nlog_retention_limit: 0\n",
            "permission_sets/p.yaml": "ref: hello.p\ngrants: {all: true}\n",
        }
    )
    found = problems_of(path)
    assert any("actions/a.yaml:2: parameter_delivery:" in p and "'stdin'" in p for p in found)
    assert any("actions/a.yaml:3: log_retention_limit:" in p for p in found)
    assert any("permission_sets/p.yaml:2: grants:" in p for p in found)


def test_rule_refs_must_resolve(make_pack: PackFactory) -> None:
    path = make_pack(
        files={"rules/r.yaml": "ref: hello.r\ntrigger_ref: hello.nothing\naction_ref: other.act\n"}
    )
    found = problems_of(path)
    assert any(
        "rules/r.yaml:2: trigger_ref: trigger 'hello.nothing' is not defined in this pack" in p
        for p in found
    )
    assert any(
        "rules/r.yaml:3: action_ref: 'other.act' belongs to pack 'other', which is not a "
        "declared dependency" in p
        for p in found
    )


def test_a_rule_without_trigger_ref_gets_one_message_per_missing_field(
    make_pack: PackFactory,
) -> None:
    """A StackStorm-style rule (trigger: {type}, action: {ref}) is what Attune skips."""
    path = make_pack(
        files={"rules/r.yaml": "ref: hello.r\ntrigger: {type: hello.t}\naction: {ref: hello.a}\n"}
    )
    found = problems_of(path)
    assert sorted(p.split(": ", 2)[1] for p in found) == ["action_ref", "trigger_ref"]
    assert all("required field is missing" in p for p in found)


def test_rule_may_use_declared_dependency(make_pack: PackFactory) -> None:
    path = make_pack(
        files={"rules/r.yaml": "ref: hello.r\ntrigger_ref: core.tick\naction_ref: core.echo\n"},
        dependencies=["core"],
    )
    assert [c.ref for c in load_pack(path).components] == ["hello.r"]


def test_a_sensor_naming_a_trigger_nobody_defines(make_pack: PackFactory) -> None:
    path = make_pack(
        files={"sensors/s.yaml": "ref: hello.s\nentry_point: watcher\ntrigger_types: [nope]\n"}
    )
    [problem] = problems_of(path)
    assert "sensors/s.yaml:3: trigger_types: trigger 'hello.nope' is not defined" in problem


@pytest.mark.parametrize(
    ("workflow", "where", "what"),
    [
        ("tasks:\n  - {name: a, action: hello.x}\n", ":1: version:", "required field is missing"),
        ("version: '1'\ntasks: []\n", ":2: tasks:", "at least 1 item"),
        ("version: '1'\ntasks:\n  - {name: a}\n", ":3: tasks.0.action:", "needs an action"),
        (
            "version: '1'\ntasks:\n  - {name: a, action: hello.x, on_success: b}\n",
            ":3: tasks.0:",
            "goes to 'b', which is no task",
        ),
        (
            "version: '1'\ntasks:\n  - name: a\n    action: hello.x\n    on_success: [{do: a}]\n",
            ":5: tasks.0.on_success:",
            "must be one task name",
        ),
    ],
)
def test_a_linked_workflow_attunes_parser_refuses_fails_the_pack(
    make_pack: PackFactory, workflow: str, where: str, what: str
) -> None:
    """The action would be registered without its graph: the registration is refused."""
    path = make_pack(
        files={
            "actions/w.yaml": "ref: hello.w\nworkflow_file: workflows/w.yaml\n",
            "actions/workflows/w.yaml": workflow,
        }
    )
    [problem] = problems_of(path)
    assert f"actions/workflows/w.yaml{where}" in problem and what in problem, problem


def test_a_standalone_workflow_attunes_parser_refuses_is_skipped_with_a_warning(
    make_pack: PackFactory,
) -> None:
    """As Attune's workflow sync does (its own core pack ships such a file): the rest of the
    pack registers, and the warning names file, line and field."""
    path = make_pack(
        files={
            "workflows/w.yaml": "version: '1'\ntasks:\n  - {name: a, action: hello.x, on_success: b}\n",
            "triggers/t.yaml": "ref: hello.t\n",
        }
    )
    pack = load_pack(path)
    assert [c.ref for c in pack.components] == ["hello.t"]
    [warning] = [str(w) for w in pack.warnings]
    assert "workflows/w.yaml:3: tasks.0: not registered (Attune's parser refuses it)" in warning
    assert "goes to 'b', which is no task" in warning


def test_an_action_and_a_standalone_workflow_may_not_share_a_ref(make_pack: PackFactory) -> None:
    path = make_pack(
        files={
            "actions/w.yaml": "ref: hello.w\nrunner_type: native\nentry_point: w\n",
            "workflows/w.yaml": "version: '1'\ntasks:\n  - {name: a, action: hello.w}\n",
        }
    )
    [problem] = problems_of(path)
    assert (
        "workflows/w.yaml" in problem
        and "action 'hello.w' is also defined in actions/w.yaml" in problem
    )


def test_directories_attune_does_not_read_are_kept_and_said(make_pack: PackFactory) -> None:
    path = make_pack(
        files={
            "policies/limit.yaml": "name: limit\n",
            "queues/jobs.yaml": "ref: hello.jobs\n",
            "lib/helper.yaml": "x: 1\n",  # not a component directory at all
        }
    )
    pack = load_pack(path)
    assert pack.components == []
    said = {Path(str(w).split(": ")[0]).name: str(w) for w in pack.warnings}
    assert set(said) == {"policies", "queues"}
    assert "work queues are not registered by attuned yet" in said["queues"]
    assert "policies/limit.yaml" in {f.relpath for f in pack.files}


def test_all_bad_files_reported_together(make_pack: PackFactory) -> None:
    path = make_pack(files={"actions/a.yaml": "label: a\n", "triggers/b.yaml": "[1, 2\n"})
    found = problems_of(path)
    assert len(found) == 2 and any("triggers/b.yaml" in p and "invalid YAML" in p for p in found)


def test_symlink_out_of_the_pack_is_refused(make_pack: PackFactory, tmp_path: Path) -> None:
    path = make_pack()
    os.symlink("/etc/passwd", path / "passwd")
    [problem] = problems_of(path)
    assert problem.endswith("passwd: symbolic link (to '/etc/passwd') refused")


def test_symlinked_directory_is_refused(make_pack: PackFactory, tmp_path: Path) -> None:
    path = make_pack()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", path / "actions")
    assert any("actions: symbolic link" in p for p in problems_of(path))


def test_hard_link_and_fifo_are_refused(make_pack: PackFactory, tmp_path: Path) -> None:
    path = make_pack()
    (tmp_path / "secret").write_text("x")
    os.link(tmp_path / "secret", path / "linked")
    os.mkfifo(path / "pipe")
    found = problems_of(path)
    assert any(p.endswith("linked: hard link refused") for p in found)
    assert any(p.endswith("pipe: not a regular file (device, FIFO or socket)") for p in found)


def test_digest_follows_content_and_exec_bit(make_pack: PackFactory) -> None:
    path = make_pack(files={"README.md": "one\n"})
    first = load_pack(path).digest
    assert load_pack(path).digest == first
    (path / "README.md").write_text("two\n")
    second = load_pack(path).digest
    assert second != first
    (path / "README.md").chmod(0o755)
    assert load_pack(path).digest != second


def test_a_stackstorm_exchange_pack_gets_one_message_per_missing_field(
    make_pack: PackFactory,
) -> None:
    path = make_pack(
        "st2pack",
        files={
            "actions/hello.yaml": "---\nname: hello\nrunner_type: python-script\nentry_point: hello.py\n",
            "actions/hello.py": "print(1)\n",
            "rules/on_hook.yaml": "---\nname: on_hook\ntrigger: {type: core.st2.webhook}\naction: {ref: st2pack.hello}\n",
            "sensors/watch.yaml": "---\nclass_name: W\nentry_point: w.py\ntrigger_types:\n  - {name: event}\n",
            "sensors/w.py": "x = 1\n",
        },
    )
    found = sorted(p.split("/st2pack/", 1)[1] for p in problems_of(path))
    assert found == [
        "actions/hello.yaml: every action file needs its full ref, e.g. 'st2pack.hello' "
        "(Attune's loader skips files without one)",
        "rules/on_hook.yaml: every rule file needs its full ref, e.g. 'st2pack.on_hook' "
        "(Attune's loader skips files without one)",
        "rules/on_hook.yaml:2: action_ref: required field is missing",
        "rules/on_hook.yaml:2: trigger_ref: required field is missing",
        "sensors/watch.yaml: every sensor file needs its full ref, e.g. 'st2pack.watch' "
        "(Attune's loader skips files without one)",
        "sensors/watch.yaml:5: trigger_types[0]: Input should be a valid string",
    ]
