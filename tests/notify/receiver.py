"""A real HTTP receiver on loopback for webhook tests: it records every request, verifies
signatures with the Standard Webhooks library (an implementation independent of attuned's),
and answers as the test scripts it (status codes in turn, delays)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    signature_ok: bool

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """`answers`: status codes to give, one per request, then `default`."""

    answers: list[int] = field(default_factory=list)
    default: int = 200
    delay: float = 0.0
    secret: str = SECRET
    received: list[Received] = field(default_factory=list)
    extra_headers: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/attuned"

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def ids(self) -> list[str]:
        with self.lock:
            return [r.id for r in self.received]

    def wait_for(self, count: int, timeout: float = 15) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            accepted = self.accepted()
            if len(accepted) >= count:
                return accepted
            time.sleep(0.02)
        raise AssertionError(f"{len(self.accepted())} of {count} events arrived: {self.ids()}")

    def _answer(self, headers: dict[str, str], body: bytes) -> int:
        try:
            Webhook(self.secret).verify(body, headers)
            ok = True
        except WebhookVerificationError:
            ok = False
        with self.lock:
            status = self.answers.pop(0) if self.answers else self.default
            if not ok:
                status = 401
            self.received.append(Received(headers, body, status, ok))
        return status


@contextmanager
def serve(receiver: Receiver, port: int = 0) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if receiver.delay:
                time.sleep(receiver.delay)
            status = receiver._answer(headers, body)
            self.send_response(status)
            for key, value in receiver.extra_headers.items():
                self.send_header(key, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
