"""One clock for the whole cluster: Redis's.

Heartbeats, watch expiries and lease decisions compare times written by one
machine with times read by another; machines' clocks drift and jump (a gateway
10 s ahead once deleted a live worker's heartbeat; one 10 s behind stopped every
JPEG). Every such time is Redis's ``TIME``, read where it is compared.
"""

from __future__ import annotations

from typing import Any


def redis_now(client: Any) -> float:
    """Seconds since the epoch by the Redis server's clock."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6
