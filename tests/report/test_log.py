"""The log stream: JSON lines with stable event names; a log file that follows logrotate."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import structlog

from attuned.report.log import Event, ReopeningFile, configure_logging, get_logger


def test_json_lines_with_event_level_and_timestamp() -> None:
    stream = io.StringIO()
    configure_logging("info", stream, json=True)
    get_logger().info(Event.PACK_REGISTERED, pack="hello", version="1.0.0")
    get_logger().debug(Event.PACK_PLANNED, pack="hidden")
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert (record["event"], record["level"], record["pack"]) == (
        "pack.registered",
        "info",
        "hello",
    )
    assert record["timestamp"].endswith("Z")


def test_library_warnings_become_json_lines_with_a_stable_event() -> None:
    """watchdog and APScheduler log through `logging`; their lines must not break the
    one-object-per-line stream."""
    stream = io.StringIO()
    configure_logging("info", stream, json=True)
    logging.getLogger("watchdog.observers.inotify_c").warning("queue %s", "overflowed")
    logging.getLogger("apscheduler").info("below the threshold: dropped")
    configure_logging("info", stream, json=True)  # a reload must not double the lines
    logging.getLogger("alembic").error("boom")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["event"], r["level"], r["logger"], r["message"]) for r in records] == [
        ("library.log", "warning", "watchdog.observers.inotify_c", "queue overflowed"),
        ("library.log", "error", "alembic", "boom"),
    ]


def test_file_is_reopened_after_logrotate_moves_it(tmp_path: Path) -> None:
    path = tmp_path / "log/attuned.log"
    stream = io.StringIO()
    configure_logging("info", stream, file=path)
    log = get_logger()
    log.info(Event.DAEMON_STARTED, n=1)
    path.rename(tmp_path / "log/attuned.log.1")  # what logrotate does (without copytruncate)
    log.info(Event.DAEMON_STOPPING, n=2)
    assert [
        json.loads(x)["n"] for x in (tmp_path / "log/attuned.log.1").read_text().splitlines()
    ] == [1]
    assert [json.loads(x)["n"] for x in path.read_text().splitlines()] == [2]
    assert len(stream.getvalue().splitlines()) == 2  # stdout still gets every line
    structlog.reset_defaults()


def test_reopening_file_recreates_a_deleted_file(tmp_path: Path) -> None:
    handle = ReopeningFile(tmp_path / "a.log")
    handle.write("one\n")
    handle.flush()
    (tmp_path / "a.log").unlink()
    handle.write("two\n")
    handle.flush()
    assert (tmp_path / "a.log").read_text() == "two\n"
