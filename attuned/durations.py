"""How long ago something happened, as every output of attuned says it (status text, the
systemd STATUS line, `attuned envs list`): one formatter, so they agree."""

from __future__ import annotations


def ago(seconds: float) -> str:
    """`0.3 s`, `42 s`, `5 min`, `3.4 h`, `2 d` (the caller adds "ago"): tenths under 10 s,
    where a fresh pass is told from one a few seconds old; whole units above."""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"
