"""Packs written for Attune the way Attune's own packs are (our own files, not copies): a
platform pack with every kind of component, and an application pack that uses it.

`base` is shaped like Attune's core pack: `system: true`, runtimes (one with versions),
permission sets, triggers, a native sensor firing two of them, shell and native actions, an
action with a `workflow_file`, a standalone workflow, a rule with short refs, and pack.yaml
in the register route's spellings (`name`, `config_schema`, `metadata`, `keywords`).
`app` depends on it: its actions run on base's runtimes, its rule uses base's trigger.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

PASSING = '#!/bin/sh\necho "Total Tests: 1"\necho "Passed: 1"\necho "Failed: 0"\n'
FAILING = '#!/bin/sh\necho "Total Tests: 1"\necho "Passed: 0"\necho "Failed: 1"\nexit 1\n'

TESTING = """\
testing:
  enabled: true
  runners:
    shell: {type: script, entry_point: tests/run_tests.sh, timeout: 30, result_format: simple}
"""

BASE = {
    "pack.yaml": textwrap.dedent("""\
        ref: base
        name: Base Platform
        description: Runtimes, timers and tools
        version: "{version}"
        system: true
        config_schema:
          max_timeout: {type: integer, default: 300, minimum: 1}
        config:
          max_timeout: 300
        metadata: {category: system}
        keywords: [base, system]
        runtime_deps: [shell, native]
        """)
    + TESTING,
    "runtimes/shell.yaml": """\
        ref: base.shell
        name: Shell
        aliases: [Shell, sh, bash]
        description: POSIX shell
        distributions: {verification: {commands: [{binary: sh, args: ["-c", "true"]}]}}
        execution_config: {interpreter: {binary: /bin/sh, args: [], file_extension: ".sh"}}
        """,
    "runtimes/native.yaml": """\
        ref: base.native
        name: Native
        aliases: [native, builtin, standalone]
        distributions: {verification: {always_available: true}}
        installation: {build_required: false}
        execution_config: {}
        versions:
          - {version: "1.2.3", is_default: true, meta: {eol: never}}
          - {version: "2"}
        """,
    "permission_sets/viewer.yaml": """\
        ref: base.viewer
        label: Viewer
        grants:
          - {resource: packs, actions: [read]}
        """,
    "triggers/tick.yaml": """\
        ref: base.tick
        label: Tick
        parameters: {interval: {type: integer, required: true}}
        output: {type: object}
        """,
    "triggers/cron_timer.yaml": "ref: base.cron_timer\nparameters: {expression: {type: string}}\n",
    "actions/echo.yaml": """\
        ref: base.echo
        label: Echo
        runner_type: shell
        entry_point: echo.sh
        parameter_delivery: FILE
        parameter_format: dotenv
        output_format: json
        parameters: {message: {type: string, default: hi}}
        log_retention_policy: days
        log_retention_limit: 7
        default_execution_permission_set_refs: [base.viewer]
        """,
    "actions/echo.sh": 'echo "$message"\n',
    "actions/ask.yaml": "ref: base.ask\nrunner_type: native\nentry_point: attune-ask\n",
    "actions/deploy.yaml": """\
        ref: base.deploy
        label: Deploy
        description: Deploy in two steps
        workflow_file: workflows/deploy.workflow.yaml
        parameters: {target: {type: string}}
        tags: [deploy]
        """,
    "actions/workflows/deploy.workflow.yaml": """\
        version: "1.0.0"
        tasks:
          - name: first
            action: base.echo
            on_success: second
          - name: second
            action: base.echo
        """,
    "workflows/nightly.yaml": """\
        version: "1.0.0"
        description: Nightly run
        tasks:
          - {name: only, action: base.ask}
        """,
    "sensors/timer.yaml": """\
        ref: base.timer
        label: Timer sensor
        runner_type: native
        entry_point: attune-timer-sensor
        trigger_types: [base.tick, cron_timer]
        """,
    "rules/every_tick.yaml": """\
        ref: every_tick
        trigger_ref: tick
        action_ref: base.echo
        action_params: {message: tick}
        """,
}

APP = {
    "pack.yaml": textwrap.dedent("""\
        ref: app
        label: App
        description: Uses the platform
        version: "{version}"
        dependencies: ["base>=1.0.0,<3"]
        """)
    + TESTING,
    "actions/greet.yaml": "ref: app.greet\nrunner_type: SHELL\nentry_point: greet.sh\n",
    "actions/greet.sh": "echo hi\n",
    "actions/wave.yaml": "ref: app.wave\nrunner_type: shell\nentry_point: greet.sh\n",
    "rules/greet_on_tick.yaml": """\
        ref: app.greet_on_tick
        trigger_ref: base.tick
        action_ref: app.greet
        conditions: [{field: payload.x, op: eq, value: 1}]
        """,
}


def write_pack(
    files: dict[str, str],
    root: Path,
    *,
    version: str = "1.0.0",
    passing: bool = True,
    drop: tuple[str, ...] = (),
    changes: dict[str, str] | None = None,
) -> Path:
    """Write the pack `files` (minus `drop`, plus `changes`) into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in {**files, **(changes or {})}.items():
        if rel in drop:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        body = textwrap.dedent(text)
        path.write_text(body.replace("{version}", version) if rel == "pack.yaml" else body)
    tests = root / "tests/run_tests.sh"
    tests.parent.mkdir(parents=True, exist_ok=True)
    tests.write_text(PASSING if passing else FAILING)
    tests.chmod(0o755)
    return root
