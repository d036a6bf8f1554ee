"""Sign webhook deliveries to Stepwise: what a sender puts in the Stepwise-* headers.

Example::

    import httpx
    from stepwise.webhooks import webhook_headers

    body = b'{"order": 7}'
    headers = webhook_headers("whsec_...", body)  # a fresh delivery id and the current time
    httpx.post("https://stepwise.example.com/api/webhooks/process-order", content=body,
               headers={**headers, "Content-Type": "application/json"})
"""
from __future__ import annotations

import hashlib
import hmac
import time
import uuid


def webhook_sign(secret: str, timestamp: str, delivery_id: str, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of "timestamp.delivery_id.body" (what a sender puts after ``v1=``)."""
    message = timestamp.encode() + b"." + delivery_id.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_headers(secret: str, body: bytes, *, delivery_id: str | None = None,
                    timestamp: int | None = None) -> dict[str, str]:
    """Return the Stepwise-Timestamp, Stepwise-Delivery and Stepwise-Signature headers of one delivery.

    Send a retry of the same delivery with the same ``delivery_id``: Stepwise runs it once.
    """
    delivery_id = delivery_id or uuid.uuid4().hex
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Stepwise-Timestamp": stamp,
        "Stepwise-Delivery": delivery_id,
        "Stepwise-Signature": f"v1={webhook_sign(secret, stamp, delivery_id, body)}",
    }
