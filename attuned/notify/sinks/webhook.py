"""`webhook`: POST each event's JSON to a URL, signed (Standard Webhooks headers).

2xx is delivered. 408 and 429 (the receiver asks for patience) and 5xx, 3xx, timeouts and
connection errors are retried; any other 4xx is dead at once, since sending the same request
again cannot change the answer. Redirects are not followed: a webhook URL that moved is a
configuration to fix. The URL never appears in errors: its path is often the credential.
"""

from __future__ import annotations

import ssl
import time
from email.utils import parsedate_to_datetime

import httpx

from attuned import __version__
from attuned.notify.events import encode
from attuned.notify.signing import signature
from attuned.notify.sinks.base import Attempt
from attuned.settings.notify import WebhookSinkConfig, shown_url
from attuned.store.outbox import StoredEvent

_RETRIED_4XX = {408, 429}
_BODY_SHOWN = 200  # characters of a refusal's body kept in the delivery's last_error


class WebhookSink:
    def __init__(self, config: WebhookSinkConfig) -> None:
        self.name = config.name
        self.timeout = config.timeout
        self._url = config.resolved_url()
        self._key = config.signing_key()
        self._client = httpx.Client(
            timeout=config.timeout,
            follow_redirects=False,
            verify=ssl.create_default_context(cafile=config.ca_file)
            if config.ca_file is not None
            else True,
            headers={"user-agent": f"attuned/{__version__}"},
        )

    def deliver(self, event: StoredEvent) -> Attempt:
        body = encode(event)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "x-attuned-event": event.name,
            "idempotency-key": event.id,
        }
        if self._key is not None:
            headers["webhook-signature"] = signature(self._key, event.id, timestamp, body)
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Attempt.retry(f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt.retry(self._scrub(f"{type(exc).__name__}: {exc}"))
        return self._verdict(response)

    def _verdict(self, response: httpx.Response) -> Attempt:
        code = response.status_code
        said = f"HTTP {code} {response.reason_phrase}".rstrip()
        if 200 <= code < 300:
            return Attempt.delivered(said)
        if 300 <= code < 400:
            moved = shown_url(response.headers.get("location", "")) or "elsewhere"
            return Attempt.retry(f"{said}: redirected to {moved}; set url to where it points")
        if 400 <= code < 500 and code not in _RETRIED_4XX:
            text = " ".join(response.text.split())[:_BODY_SHOWN]
            return Attempt.dead(self._scrub(f"{said}: {text}" if text else said))
        return Attempt.retry(said, retry_after=retry_after(response.headers.get("retry-after")))

    def _scrub(self, text: str) -> str:
        return text.replace(self._url, shown_url(self._url))

    def idle(self) -> None:
        return None

    def close(self) -> None:
        self._client.close()


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds, or an HTTP date); None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
