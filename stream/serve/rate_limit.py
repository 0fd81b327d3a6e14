"""Per-client limits over a sliding window: wrong tokens, and the API's model work (429 with Retry-After)."""

from __future__ import annotations

import threading
import time
from collections import deque

MAX_CLIENTS = 10000  # addresses remembered at once (bounded memory, whoever knocks)


class WindowLimit:
    """At most ``limit`` events per ``window`` seconds per client address; 0 = no limit."""

    def __init__(self, limit: int, window: float):
        self.limit = int(limit)
        self.window = float(window)
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, client: str) -> None:
        """Count one event of ``client``."""
        if self.limit <= 0:
            return
        with self._lock:
            self._count(client)

    def wait(self, client: str) -> int:
        """Seconds ``client`` must wait before its next event counts (0: it may go now)."""
        if self.limit <= 0:
            return 0
        with self._lock:
            return self._left(client)

    def take(self, client: str) -> int:
        """Count one event of ``client`` if it may go now (returns 0); else the seconds to wait, counting nothing."""
        if self.limit <= 0:
            return 0
        with self._lock:
            left = self._left(client)
            if not left:
                self._count(client)
            return left

    def _left(self, client: str) -> int:  # under the lock
        times = self._times.get(client)
        if times is None or len(times) < self.limit:
            return 0
        left = times[0] + self.window - time.monotonic()
        return int(left) + 1 if left > 0 else 0

    def _count(self, client: str) -> None:  # under the lock
        if client not in self._times and len(self._times) >= MAX_CLIENTS:
            self._times.pop(next(iter(self._times)))
        self._times.setdefault(client, deque(maxlen=self.limit)).append(time.monotonic())
