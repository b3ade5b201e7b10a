"""One daemon per state directory: the second is refused, naming the holder and the folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attuned.reconcile.daemon.statelock import AlreadyRunning, StateLock


def test_a_second_holder_is_refused_with_the_absolute_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = StateLock(Path("var"))  # relative, as the example config says
    first.acquire()
    try:
        with pytest.raises(AlreadyRunning) as refused:
            StateLock(Path("var")).acquire()
        assert str(refused.value) == (
            f"another attuned (pid {os.getpid()}) is running on {tmp_path / 'var'}"
        )
    finally:
        first.release()
    second = StateLock(Path("var"))
    second.acquire()  # free again once released
    second.release()
