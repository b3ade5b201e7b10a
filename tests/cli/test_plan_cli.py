"""`attuned plan` as a user runs it: a real database, a real watched folder and a real git
server (the command in-process through `main()`; a pull request's plan also as a real
subprocess). The plan is the next pass's, and making it writes nothing."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, inspect, text

from tests.cli.test_cli import Cli
from tests.conftest import EXAMPLES, PASSING_TEST, PackFactory
from tests.reconcile.sources.git_servers import GitDaemon, PackRepo, git


class PlanCli(Cli):
    """The CLI with a config that watches one folder (or serves the given sources)."""

    def __init__(
        self,
        tmp_path: Path,
        db_url: str,
        sources: list[dict[str, Any]],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        super().__init__(tmp_path, db_url, capsys)
        self.state = tmp_path / "state"
        self.db_url = db_url
        config = {
            "state_dir": str(self.state),
            "database": {"url": db_url},
            "testing": {"kill_grace": 0.5},
            "sources": sources,
        }
        self.config.write_text(yaml.safe_dump(config))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "packs.d"
    path.mkdir()
    return path


@pytest.fixture
def cli(tmp_path: Path, db_url: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> PlanCli:
    return PlanCli(tmp_path, db_url, [{"name": "local", "path": str(folder)}], capsys)


def row_counts(db_url: str) -> dict[str, int]:
    """Rows of every table, attuned's and Attune's (both schemas on PostgreSQL)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            found = inspect(connection)
            sqlite = engine.dialect.name == "sqlite"
            counts = {}
            for schema in [None] if sqlite else ["attune", "attuned"]:
                for table in found.get_table_names(schema=schema):
                    name = f'"{schema}"."{table}"' if schema else f'"{table}"'
                    counts[name] = connection.execute(text(f"SELECT count(*) FROM {name}")).scalar()
            return counts
    finally:
        engine.dispose()


def files_under(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and link below `root` with its mode, size and mtime; directories by name."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        mtime = 0 if path.is_dir() and not path.is_symlink() else info.st_mtime_ns
        found[str(path.relative_to(root))] = (info.st_mode, info.st_size, mtime)
    return found


def normalized(output: str) -> list[str]:
    """Lines with runs of spaces made one, indentation kept as one space."""
    return [
        (" " if line.startswith(" ") else "") + " ".join(line.split())
        for line in output.splitlines()
    ]


APP_V1 = {
    "actions/a.yaml": "ref: app.a\nrunner_type: shell\nentry_point: a.sh\n",
    "actions/a.sh": "echo a\n",
    "actions/b.yaml": "ref: app.b\nrunner_type: shell\nentry_point: a.sh\n",
    "triggers/t.yaml": "ref: app.t\nlabel: T\n",
}


def test_plan_shows_the_next_pass_and_writes_nothing(
    cli: PlanCli, folder: Path, make_pack: PackFactory
) -> None:
    make_pack("app", parent=folder, files=APP_V1)
    make_pack("gone", parent=folder, files={"actions/x.yaml": "ref: gone.x\n"})
    make_pack("broken", parent=folder)
    cli("reconcile", "--once")
    # the next pass: one new pack, one upgrade, one removal, one broken pack.yaml
    make_pack("newp", parent=folder)
    make_pack(
        "app",
        parent=folder,
        version="1.1.0",
        files={
            "actions/a.yaml": "ref: app.a\nlabel: A\nrunner_type: shell\nentry_point: a.sh\n",
            "actions/c.yaml": "ref: app.c\nrunner_type: shell\nentry_point: a.sh\n",
        },
    )
    (folder / "app/triggers/t.yaml").unlink()
    shutil.rmtree(folder / "gone")
    (folder / "broken/pack.yaml").write_text("ref: broken\nversion: [\n")
    rows, files = row_counts(cli.db_url), files_under(cli.state)
    assert rows['"pack"' if '"pack"' in rows else '"attune"."pack"'] == 3

    shown = cli("plan", "--exit-code", code=1).stdout
    out = cli.json("plan")

    assert row_counts(cli.db_url) == rows
    assert files_under(cli.state) == files
    lines = normalized(shown)
    assert lines[:5] == [
        "upgrade app 1.0.0 -> 1.1.0 tests: run",
        " + action app.c",
        " ~ action app.a (label)",
        " - trigger app.t",
        "install newp 1.0.0 tests: run",
    ]
    assert "remove gone 1.0.0 no longer provided by source 'local'" in lines
    assert " - action gone.x" in lines
    [invalid] = [line for line in lines if line.startswith("invalid ")]
    assert "broken (local:broken)" in invalid and "broken/pack.yaml:3: invalid YAML" in invalid
    assert "(serving 1.0.0 until it is fixed)" in invalid
    assert (
        lines[-1]
        == "1 to install, 1 to upgrade, 0 to reinstall, 1 to remove, 1 blocked, 0 unchanged"
    )

    assert out["changes"] is True
    assert out["summary"] == {
        "install": 1,
        "upgrade": 1,
        "reinstall": 0,
        "remove": 1,
        "blocked": 1,
        "unchanged": 0,
    }
    packs = {p["ref"]: p for p in out["packs"]}
    assert {k: packs["app"][k] for k in ("action", "from_version", "to_version", "source")} == {
        "action": "upgrade",
        "from_version": "1.0.0",
        "to_version": "1.1.0",
        "source": "local",
    }
    assert packs["app"]["components"] == {
        "added": [{"kind": "action", "ref": "app.c"}],
        "changed": [{"kind": "action", "ref": "app.a", "fields": ["label"]}],
        "removed": [{"kind": "trigger", "ref": "app.t"}],
        "compared": "definitions",
    }
    assert packs["gone"]["components"]["removed"] == [{"kind": "action", "ref": "gone.x"}]
    assert packs["gone"]["tests"] is None and packs["newp"]["tests"] == "run"
    assert packs["broken"]["action"] == "invalid" and packs["broken"]["components"] is None
    assert out["sources"] == [{"name": "local", "readable": True, "error": None, "revision": None}]

    cli("reconcile", "--once", code=4)  # invalid: exit 4; the served version is kept
    after = cli("plan", "--exit-code").stdout.splitlines()
    assert after[-1] == (
        "0 to install, 0 to upgrade, 0 to reinstall, 0 to remove, 1 blocked, 2 unchanged"
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_rolled_back_content_is_failed_and_no_change(cli: PlanCli, folder: Path) -> None:
    shutil.copytree(EXAMPLES / "failing", folder / "failing")
    cli("reconcile", "--once", code=4)
    rows = row_counts(cli.db_url)
    out = cli.json("plan", "--exit-code")
    assert row_counts(cli.db_url) == rows
    [failing] = out["packs"]
    assert (failing["ref"], failing["action"], failing["tests"]) == ("failing", "failed", None)
    assert failing["reason"].startswith("tests of 0.1.0 failed at ")
    assert failing["reason"].endswith("(waiting for new content)")
    assert out["changes"] is False


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_source_filter_suspended_packs_and_tests_verdicts(
    tmp_path: Path, db_url: str, make_pack: PackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    cli = PlanCli(
        tmp_path,
        db_url,
        [
            {"name": "one", "path": str(one)},
            {"name": "two", "path": str(two), "skip_tests": True},
        ],
        capsys,
    )
    make_pack("alpha", parent=one)
    make_pack("beta", parent=two, test_script=None)
    make_pack("gamma", parent=one, test_script=None)
    cli("db", "upgrade")
    cli("suspend", "alpha")
    out = cli.json("plan")
    packs = {p["ref"]: p for p in out["packs"]}
    assert packs["alpha"]["action"] == "suspended"
    assert packs["beta"]["tests"] == "skipped (source 'two' sets skip_tests)"
    assert packs["gamma"]["tests"].startswith("refused (the pack has no testing section")
    only = cli.json("plan", "--source", "two")
    assert [p["ref"] for p in only["packs"]] == ["beta"]
    assert [s["name"] for s in only["sources"]] == ["two"]
    assert "no source named 'nope'" in cli("plan", "--source", "nope", code=2).stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_errors_exit_2_with_exit_code(cli: PlanCli, tmp_path: Path) -> None:
    missing = cli("plan", "--exit-code", code=2)
    assert "no database at" in missing.stderr
    assert not Path(cli.db_url.removeprefix("sqlite:///")).exists()  # not created either
    cli("plan", code=2)  # not migrated: plan never migrates
    Path(cli.db_url.removeprefix("sqlite:///")).write_bytes(b"not a database at all" * 100)
    unreadable = cli("plan", code=1)
    assert "cannot read the database" in unreadable.stderr
    cli("plan", "--exit-code", code=2)
    assert "--revision: needs --source" in cli("plan", "--revision", "main", code=2).stderr
    folder = cli("plan", "--source", "local", "--revision", "main", code=2)
    assert "source 'local' is a folder, not a git source" in folder.stderr
    cli.config.write_text(cli.config.read_text() + "no_such_key: 1\n")
    assert "no_such_key" in cli("plan", "--exit-code", code=2).stderr


# -- git: the last fetched commit, and a candidate revision ----------------------------------------

TESTED_MANIFEST = textwrap.dedent("""\
    testing:
      enabled: true
      runners:
        shell: {type: script, entry_point: tests/run_tests.sh, result_format: simple}
    """)


def git_pack(ref: str, version: str, actions: list[str]) -> dict[str, str | None]:
    manifest = yaml.safe_dump({"ref": ref, "label": ref.title(), "version": version})
    files: dict[str, str | None] = {
        f"packs/{ref}/pack.yaml": manifest + TESTED_MANIFEST,
        f"packs/{ref}/tests/run_tests.sh": PASSING_TEST,
        f"packs/{ref}/actions/run.sh": "echo run\n",
    }
    for name in actions:
        files[f"packs/{ref}/actions/{name}.yaml"] = (
            f"ref: {ref}.{name}\nrunner_type: shell\nentry_point: run.sh\n"
        )
    return files


@pytest.fixture
def repo(tmp_path: Path) -> PackRepo:
    return PackRepo(tmp_path)


def test_git_source_plans_the_cached_commit_or_a_candidate_revision(
    tmp_path: Path, repo: PackRepo, git_daemon: GitDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    main = repo.commit("alpha 1.0.0", git_pack("alpha", "1.0.0", ["one"]))
    repo.push("main")
    source = {
        "name": "repo",
        "type": "git",
        "url": git_daemon.url("packs.git"),
        "ref": {"branch": "main"},
        "path": "packs",
        "skip_tests": True,
        "interval": 3600,
    }
    cli = PlanCli(tmp_path, f"sqlite:///{tmp_path / 'attuned.db'}", [source], capsys)
    cli("db", "upgrade")
    nothing = cli.json("plan")  # never polled: no cache, nothing known, nothing pruned
    assert nothing["packs"] == [] and nothing["sources"][0]["readable"] is False
    assert "not fetched yet" in nothing["sources"][0]["error"]
    cli("reconcile", "--once")
    # a pull request: alpha gets an action, beta is new; main does not move
    git("checkout", "-q", "-b", "feature", cwd=repo.work)
    feature = repo.commit(
        "alpha 1.1.0, beta",
        {**git_pack("alpha", "1.1.0", ["one", "two"]), **git_pack("beta", "0.1.0", [])},
    )
    repo.push("feature")
    requests, files = git_daemon.requests, files_under(cli.state)

    cached = cli.json("plan", "--exit-code")  # what the cache holds: main, as served
    assert [(p["ref"], p["action"]) for p in cached["packs"]] == [("alpha", "noop")]
    assert cached["sources"][0]["revision"] == main
    assert git_daemon.requests == requests and files_under(cli.state) == files

    candidate = json.loads(  # as a pull request's CI runs it: a real process
        cli(
            "plan",
            "--source",
            "repo",
            "--revision",
            "feature",
            "--exit-code",
            "--json",
            code=1,
            real=True,
        ).stdout
    )
    assert git_daemon.requests > requests  # a branch is asked of the server
    assert candidate["sources"] == [
        {"name": "repo", "readable": True, "error": None, "revision": feature}
    ]
    packs = {p["ref"]: p for p in candidate["packs"]}
    assert (packs["alpha"]["action"], packs["alpha"]["to_version"]) == ("upgrade", "1.1.0")
    assert packs["alpha"]["components"]["added"] == [{"kind": "action", "ref": "alpha.two"}]
    assert packs["alpha"]["tests"] == "skipped (source 'repo' sets skip_tests)"
    assert packs["beta"]["action"] == "install"
    assert packs["beta"]["entry"] == "packs/beta"

    requests = git_daemon.requests
    by_sha = cli.json("plan", "--source", "repo", "--revision", feature[:12], "--exit-code", code=1)
    assert git_daemon.requests == requests  # a commit the cache holds: no network
    assert by_sha["packs"] == candidate["packs"]

    unknown = cli("plan", "--source", "repo", "--revision", "no-such-branch", code=2)
    assert "'no-such-branch' names no commit, branch or tag" in unknown.stderr
