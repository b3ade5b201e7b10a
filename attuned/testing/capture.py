"""Bounded capture of a process's output stream: the head and the tail, never the whole.

A test that prints gigabytes must not exhaust the daemon's memory, yet both the first lines
(what started going wrong) and the last ones (the summary) are what a reader needs.
"""

from __future__ import annotations

ELISION_MARKER = "\n[... attuned: {count:,} bytes elided ...]\n"


class BoundedCapture:
    """Keeps at most `limit` bytes: the first `limit // 2` and the last `limit - limit // 2`."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self._head_limit = limit // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self.total_bytes = 0

    def append(self, chunk: bytes) -> None:
        self.total_bytes += len(chunk)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            # Trim in batches so a stream of small chunks stays linear, not quadratic.
            if len(self._tail) > 2 * self._tail_limit:
                del self._tail[: len(self._tail) - self._tail_limit]

    @property
    def truncated(self) -> bool:
        return self.total_bytes > self._head_limit + self._tail_limit

    def text(self, limit: int | None = None) -> str:
        """Decoded output (invalid UTF-8 replaced), elided to `limit` bytes when given."""
        kept_limit = self._head_limit + self._tail_limit
        limit = kept_limit if limit is None else min(limit, kept_limit)
        head_len, tail_len = limit // 2, limit - limit // 2
        if self.total_bytes == len(self._head) + len(self._tail):
            whole = bytes(self._head + self._tail)
            if len(whole) <= limit:
                return whole.decode("utf-8", "replace")
            head, tail = whole[:head_len], whole[len(whole) - tail_len :]
        else:
            head = bytes(self._head[:head_len])
            tail = bytes(self._tail[len(self._tail) - tail_len :]) if tail_len else b""
        elided = self.total_bytes - len(head) - len(tail)
        return (
            head.decode("utf-8", "replace")
            + ELISION_MARKER.format(count=elided)
            + tail.decode("utf-8", "replace")
        )
