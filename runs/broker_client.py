"""One redis-py client per kombu Redis channel, instead of one per command.

kombu's Redis transport (5.5) makes a new redis-py client for every command it sends outside a
worker's event loop: each publish makes two (the exchange's bindings, then the message), each
ack one. Making a client fills its table of response callbacks, some eighty entries, which
costs more CPU than the command's round trip; a hint paid it twice. A client is only a handle on
the channel's connection pool, safe to share between threads, so a channel keeps one for as long
as its pool lives (a reconnection makes a new pool, and so a new client).
"""
from __future__ import annotations

from typing import Any


def redis_client_reuse_install() -> bool:
    """Make kombu's Redis channels keep their synchronous client; tell whether it was installed now."""
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:  # redis-py missing: no Redis broker in this process
        return False
    channel = kombu_redis.Channel
    make = channel.__dict__.get("_create_client")
    if make is None or getattr(make, "reuses_client", False):  # another kombu, or installed already
        return False

    def create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's, bound to its event loop: as kombu makes it
            return make(self, asynchronous=True)
        pool = self.pool
        client = self.__dict__.get("_kept_client")
        if client is None or client.connection_pool is not pool:
            client = self.__dict__["_kept_client"] = make(self)
        return client

    create_client.reuses_client = True
    channel._create_client = create_client
    return True
