"""The receiver docs/notifications.md shows works against attuned itself: its `verify` takes
the requests a real webhook sink sends and refuses a changed body, a wrong key and a replay;
the independent Standard Webhooks library accepts attuned's signatures too; and the whole
example, served, takes a delivery once however often it comes."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from attuned import __version__
from attuned.notify import events
from attuned.notify.signing import signature
from attuned.notify.sinks.base import Attempt
from attuned.notify.sinks.webhook import WebhookSink
from attuned.report.log import Event
from attuned.settings.notify import WebhookSinkConfig
from attuned.store.outbox import StoredEvent
from tests.conftest import REPO

KEY = b"attuned-docs-receiver-key-32byte"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER = "whsec_" + base64.b64encode(b"another-key-that-is-32-bytes-ok!").decode()

Request = tuple[dict[str, str], bytes]


def documented_receiver() -> dict[str, Any]:
    """The one ```python block of notifications.md that defines `verify`, executed."""
    text = (REPO / "docs/notifications.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    [block] = [b for b in blocks if "def verify(" in b]
    namespace: dict[str, Any] = {"__name__": "notifications_md"}
    exec(compile(block, "docs/notifications.md", "exec"), namespace)  # noqa: S102
    return namespace


def stored_event() -> StoredEvent:
    """A rolled-back upgrade, with text outside ASCII: the body is signed as raw UTF-8."""
    record = events.record(
        Event.PACK_ROLLED_BACK,
        {
            "pack": "hello",
            "version": "1.2.0",
            "digest": "6d83f7ee" * 8,
            "source": "packs",
            "revision": None,
            "trigger": "upgrade",
            "outcome": "rolled_back",
            "reason": "pass rate 0.5 is below min_pass_rate 1 — “grüße” failed",
        },
    )
    return StoredEvent(
        seq=1,
        id=record.id,
        name=record.name,
        severity=record.severity,
        subject=record.subject,
        ref=record.ref,
        node="attune-1",
        data=record.data,
        created_at=record.at,
    )


@contextmanager
def served(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/attuned?token=abc"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def capturing() -> Iterator[tuple[str, list[Request]]]:
    """A receiver that answers 204 and keeps each request's headers and raw body."""
    captured: list[Request] = []

    class Capture(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            captured.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return None

    with served(Capture) as url:
        yield url, captured


def sink(url: str, tmp_path: Path, secret: str | None = SECRET) -> WebhookSink:
    if secret is None:
        return WebhookSink(WebhookSinkConfig(name="docs", url=url, sign=False, timeout=5))
    key_file = tmp_path / f"key-{secret[6:12]}"
    key_file.write_text(secret + "\n")
    return WebhookSink(WebhookSinkConfig(name="docs", url=url, secret_file=key_file, timeout=5))


def deliver(event: StoredEvent, tmp_path: Path, secret: str | None = SECRET) -> Request:
    """What a real WebhookSink sends for `event`, as the receiver got it."""
    with capturing() as (url, captured):
        hook = sink(url, tmp_path, secret)
        try:
            attempt = hook.deliver(event)
        finally:
            hook.close()
    assert attempt == Attempt.delivered("HTTP 204 No Content")
    [request] = captured
    return request


@pytest.fixture
def verify() -> Any:
    return documented_receiver()["verify"]


@pytest.fixture
def request_sent(tmp_path: Path) -> Request:
    return deliver(stored_event(), tmp_path)


def test_the_request_is_what_the_page_says(tmp_path: Path) -> None:
    stored = stored_event()
    headers, body = deliver(stored, tmp_path)
    assert body == events.encode(stored)
    event = json.loads(body)
    assert headers["webhook-id"] == headers["idempotency-key"] == event["id"]
    assert headers["x-attuned-event"] == event["event"] == "pack.rolled_back"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == f"attuned/{__version__}"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-signature"] == signature(
        KEY, event["id"], int(headers["webhook-timestamp"]), body
    )
    assert set(event) == {
        "schema",
        "id",
        "event",
        "severity",
        "occurred_at",
        "node",
        "subject",
        "data",
    }
    assert "“grüße”".encode() in body  # raw UTF-8, not \\u escapes


def test_the_documented_verify_accepts_a_genuine_request(
    verify: Any, request_sent: Request
) -> None:
    headers, body = request_sent
    now = time.time()
    assert verify(SECRET, headers, body, now) is True
    # header names arrive in any case
    assert verify(SECRET, {k.title(): v for k, v in headers.items()}, body, now) is True
    # a receiver that takes several signatures (key rotation) finds the valid one
    rotated = {**headers, "webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]}
    assert verify(SECRET, rotated, body, now) is True


def test_the_documented_verify_rejects_a_tampered_body(verify: Any, request_sent: Request) -> None:
    headers, body = request_sent
    now = time.time()
    assert verify(SECRET, headers, body.replace(b"rolled_back", b"registered"), now) is False
    assert verify(SECRET, headers, body + b" ", now) is False
    assert verify(SECRET, headers, json.dumps(json.loads(body)).encode(), now) is False


def test_the_documented_verify_rejects_another_key(verify: Any, request_sent: Request) -> None:
    headers, body = request_sent
    assert verify(OTHER, headers, body, time.time()) is False


def test_the_documented_verify_rejects_changed_headers(verify: Any, request_sent: Request) -> None:
    headers, body = request_sent
    now = time.time()
    other_id = {**headers, "webhook-id": "00000000-0000-4000-8000-000000000000"}
    assert verify(SECRET, other_id, body, now) is False
    later = str(int(headers["webhook-timestamp"]) + 1)  # inside the tolerance, but not signed
    assert verify(SECRET, {**headers, "webhook-timestamp": later}, body, now) is False
    unsigned = {k: v for k, v in headers.items() if k != "webhook-signature"}
    assert verify(SECRET, unsigned, body, now) is False
    assert verify(SECRET, {**headers, "webhook-timestamp": "soon"}, body, now) is False
    v2 = {**headers, "webhook-signature": headers["webhook-signature"].replace("v1,", "v2,")}
    assert verify(SECRET, v2, body, now) is False


def test_the_documented_verify_rejects_a_replay(verify: Any, request_sent: Request) -> None:
    headers, body = request_sent
    sent = int(headers["webhook-timestamp"])
    assert verify(SECRET, headers, body, sent + 60) is True  # a slow network, a skewed clock
    assert verify(SECRET, headers, body, sent + 3600) is False  # captured, replayed an hour on
    assert verify(SECRET, headers, body, sent - 3600) is False  # from the future


def test_an_unsigned_sink_is_not_taken_for_a_signed_one(verify: Any, tmp_path: Path) -> None:
    headers, body = deliver(stored_event(), tmp_path, secret=None)
    assert "webhook-signature" not in headers
    assert headers["webhook-id"] == json.loads(body)["id"]
    assert verify(SECRET, headers, body, time.time()) is False


def test_attuned_signatures_verify_with_the_standard_webhooks_library(
    request_sent: Request,
) -> None:
    headers, body = request_sent
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body[:-1] + b" ", headers)
    # and the library's own signing gives attuned's signature, byte for byte
    event_id, sent = headers["webhook-id"], int(headers["webhook-timestamp"])
    moment = datetime.fromtimestamp(sent, UTC)
    assert Webhook(SECRET).sign(event_id, moment, body) == signature(KEY, event_id, sent, body)


def test_every_attempt_carries_the_same_id_and_body_and_a_fresh_signature(
    verify: Any, tmp_path: Path
) -> None:
    event = stored_event()
    first = deliver(event, tmp_path)
    time.sleep(1.05)  # webhook-timestamp has whole seconds
    again = deliver(event, tmp_path)
    assert first[1] == again[1]
    assert first[0]["webhook-id"] == again[0]["webhook-id"] == event.id
    assert first[0]["webhook-timestamp"] != again[0]["webhook-timestamp"]
    assert first[0]["webhook-signature"] != again[0]["webhook-signature"]
    assert verify(SECRET, again[0], again[1], time.time()) is True


def test_the_documented_receiver_served_takes_each_event_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = documented_receiver()
    handled: list[dict[str, Any]] = []
    failing = threading.Event()

    def handle(event: dict[str, Any]) -> None:
        if failing.is_set():
            raise RuntimeError("the receiver's own database is down")
        handled.append(event)

    receiver["handle"] = handle  # the handler looks it up in the block's globals
    receiver["Receiver"].log_message = lambda *_args: None
    monkeypatch.setenv("ATTUNED_WEBHOOK_SECRET", SECRET)
    event = stored_event()
    with served(receiver["Receiver"]) as url:
        hook, wrong = sink(url, tmp_path), sink(url, tmp_path, OTHER)
        try:
            failing.set()
            assert hook.deliver(event).verdict == "retry"  # 500: attuned tries again later
            failing.clear()
            assert hook.deliver(event) == Attempt.delivered("HTTP 204 No Content")
            assert hook.deliver(event) == Attempt.delivered("HTTP 204 No Content")  # a repeat
            refused = wrong.deliver(event)
        finally:
            hook.close()
            wrong.close()
    assert [e["id"] for e in handled] == [event.id]
    assert handled[0] == events.envelope(event)
    assert refused.verdict == "dead"  # 401: a 4xx other than 408/429 is not retried
    assert refused.detail.startswith("HTTP 401")
    assert "token=abc" not in refused.detail
