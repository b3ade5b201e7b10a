"""One way to say how long ago: status text, the systemd STATUS line and `envs list` agree."""

from __future__ import annotations

import pytest

from attuned.durations import ago


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (-0.2, "0.0 s"),  # a clock a little behind is not "in the future"
        (0.31, "0.3 s"),
        (42, "42 s"),
        (300, "5 min"),
        (5400, "90 min"),
        (3 * 3600 + 1440, "3.4 h"),
        (3 * 86400, "3 d"),
    ],
)
def test_each_range_has_its_unit(seconds: float, said: str) -> None:
    assert ago(seconds) == said
