"""JUnit XML as pytest writes it (--junitxml), read from the runner's report, from files a
script writes under result_path, and from stdout."""

from __future__ import annotations

import subprocess
import sys

import pytest

from attuned.testing import CaseStatus
from attuned.testing.formats import ResultFormatError
from attuned.testing.formats.junit import parse_junit

MIXED_TESTS = """
import pytest

def test_passes():
    pass

def test_fails():
    print("some captured output")
    assert 1 == 2, "one is not two"

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

def test_error_in_fixture(broken):
    pass

class TestGroup:
    def test_in_class(self):
        pass
"""


@pytest.fixture(scope="module")
def pytest_report(tmp_path_factory) -> str:
    """A real report from a real pytest run."""
    root = tmp_path_factory.mktemp("junit")
    (root / "test_mixed.py").write_text(MIXED_TESTS)
    report = root / "report.xml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            str(root / "test_mixed.py"),
            f"--junitxml={report}",
            "-o",
            "junit_logging=system-out",
        ],
        cwd=root,
        capture_output=True,
        check=False,
    )
    return report.read_text()


def test_every_pytest_outcome_maps_to_a_case_status(pytest_report):
    cases = {case.name: case for case in parse_junit(pytest_report, "report.xml")}

    assert {name: case.status for name, case in cases.items()} == {
        "test_mixed.test_passes": CaseStatus.PASSED,
        "test_mixed.test_fails": CaseStatus.FAILED,
        "test_mixed.test_skipped": CaseStatus.SKIPPED,
        "test_mixed.test_xfail": CaseStatus.SKIPPED,
        "test_mixed.test_error_in_fixture": CaseStatus.ERROR,
        "test_mixed.TestGroup.test_in_class": CaseStatus.PASSED,
    }
    assert "one is not two" in (cases["test_mixed.test_fails"].error_message or "")
    assert "some captured output" in (cases["test_mixed.test_fails"].stdout or "")
    assert "fixture exploded" in (cases["test_mixed.test_error_in_fixture"].error_message or "")
    assert "not today" in (cases["test_mixed.test_skipped"].error_message or "")


def test_pytest_runner_report_gives_per_case_counts(run_pack):
    result = run_pack(
        {"tests/test_mixed.py": MIXED_TESTS},
        {"py": {"type": "pytest", "entry_point": "tests/test_mixed.py", "result_format": "junit"}},
    )

    (suite,) = result.test_suites
    assert (suite.total, suite.passed, suite.failed, suite.skipped) == (6, 2, 2, 2)
    assert suite.exit_code == 1
    assert len(suite.test_cases) == 6  # no extra error case: exit 1 matches the failures


def test_reports_written_by_the_runner_are_read_and_stale_ones_ignored(run_pack):
    script = f"""
        {sys.executable} -m pytest -p no:cacheprovider -q tests/test_a.py --junitxml=reports/a.xml
        {sys.executable} -m pytest -p no:cacheprovider -q tests/test_b.py --junitxml=reports/b.xml
        exit 0
    """
    result = run_pack(
        {
            "tests/run.sh": script,
            "tests/test_a.py": "def test_one():\n    pass\n",
            "tests/test_b.py": "def test_two():\n    assert False\n",
            "reports/stale.xml": '<testsuite><testcase name="old"><failure/></testcase></testsuite>',
        },
        {"sh": {"type": "script", "entry_point": "tests/run.sh", "result_format": "junit"}},
        testing={"result_path": "reports"},
    )

    (suite,) = result.test_suites
    assert [(c.name, c.status) for c in suite.test_cases] == [
        ("tests.test_a.test_one", CaseStatus.PASSED),
        ("tests.test_b.test_two", CaseStatus.FAILED),
    ]


def test_junit_printed_on_stdout(run_pack, pytest_report):
    result = run_pack(
        {"tests/report.xml": pytest_report, "tests/run.sh": "cat tests/report.xml"},
        {"sh": {"type": "script", "entry_point": "tests/run.sh", "result_format": "junit"}},
    )

    assert result.test_suites[0].total == 6


def test_missing_report_is_an_error_case(run_pack):
    result = run_pack(
        {"tests/run.sh": "echo 'no xml here'"},
        {"sh": {"type": "script", "entry_point": "tests/run.sh", "result_format": "junit"}},
    )

    (case,) = result.test_suites[0].test_cases
    assert case.status is CaseStatus.ERROR
    assert (case.error_message or "").startswith("could not read junit results: no JUnit XML")


def test_broken_xml_is_an_error_case(run_pack):
    result = run_pack(
        {"tests/run.sh": "mkdir -p out; echo '<testsuite><testcase' > out/r.xml"},
        {"sh": {"type": "script", "entry_point": "tests/run.sh", "result_format": "junit"}},
        testing={"result_path": "out"},
    )

    (case,) = result.test_suites[0].test_cases
    assert "r.xml is not valid XML" in (case.error_message or "")


def test_other_xml_is_refused():
    with pytest.raises(ResultFormatError, match="root element <html> is not JUnit"):
        parse_junit("<html/>", "page.xml")


def test_nested_testsuites_and_missing_attributes():
    xml = """<testsuites><testsuite name="outer"><testsuite name="inner">
        <testcase name="deep" time="0.25"/></testsuite>
        <testcase classname="c" name="odd" time="not-a-number"/></testsuite></testsuites>"""

    cases = parse_junit(xml, "x.xml")

    assert [(c.name, c.duration_ms) for c in cases] == [("deep", 250), ("c.odd", 0)]


def test_entity_expansion_bomb_is_refused():
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
            for i in range(1, 10)
        )
        + ']><testsuite><testcase name="&lol9;"/></testsuite>'
    )

    with pytest.raises(ResultFormatError):
        parse_junit(bomb, "bomb.xml")


def test_report_file_bigger_than_the_read_limit_is_refused(tmp_path):
    from attuned.testing.formats.base import read_report

    big = tmp_path / "big.xml"
    big.write_bytes(b"x" * (2 * 1024 * 1024 + 1))

    with pytest.raises(ResultFormatError, match="larger than 2 MiB"):
        read_report(big, 2 * 1024 * 1024)
    assert read_report(big, 3 * 1024 * 1024).startswith("xxx")
