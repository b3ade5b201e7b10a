"""Webhook signatures as Standard Webhooks defines them (https://www.standardwebhooks.com):
HMAC-SHA256 over `<id>.<timestamp>.<body>`, sent as `webhook-signature: v1,<base64>` beside
`webhook-id` and `webhook-timestamp`, so receivers can use any Standard Webhooks library (or
the dozen lines in docs/notifications.md) and reject replays by the timestamp and the id."""

from __future__ import annotations

import base64
import hashlib
import hmac


def signature(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{event_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
