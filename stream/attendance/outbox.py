"""Attendance the store could not take yet (Redis away, a disk locked): kept, merged, written later.

A person seen only while the store was unreachable used to be lost: the write failed and the
track left before the store came back. Each failed write waits here, one entry per (session,
person), merged the way the store itself merges a sighting (earliest first-seen, latest
last-seen, best similarity), so writing it late, or twice, changes nothing the store would
not. The monitor retries after a pause (``RETRY_S``) instead of on every frame, so a store
that times out costs one timeout per pause, not one per face.

The outbox lives in memory: it rides out an outage of the store for as long as this process
runs, not a crash of the process itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

RETRY_S = 2.0  # after a failure, writes go straight to the outbox for this long
LIMIT = 20_000  # (session, person) entries kept at most; beyond that the newest is refused, counted


@dataclass
class Unsent:
    """One person's sighting in one session, as :meth:`AttendanceStore.upsert` takes it."""

    session: str
    person_id: str
    name: str
    on_roster: bool
    first_seen: float
    last_seen: float
    camera: str
    similarity: float
    snapshot: bytes | None

    def merge(self, newer: Unsent) -> None:
        if newer.first_seen < self.first_seen:
            self.first_seen, self.camera = newer.first_seen, newer.camera
        self.last_seen = max(self.last_seen, newer.last_seen)
        if newer.similarity > self.similarity or self.snapshot is None:
            self.similarity = max(self.similarity, newer.similarity)
            self.snapshot = newer.snapshot or self.snapshot
        self.name, self.on_roster = newer.name, newer.on_roster


class Outbox:
    def __init__(self, limit: int = LIMIT, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.clock = clock
        self._unsent: dict[tuple[str, str], Unsent] = {}
        self._pause_until = float("-inf")
        self.kept = 0  # writes that waited here
        self.written = 0  # of those, written since
        self.refused = 0  # not kept: the outbox was full

    def __len__(self) -> int:
        return len(self._unsent)

    def paused(self) -> bool:
        """True while the store failed within ``RETRY_S``: skip trying, keep the write."""
        return self.clock() < self._pause_until

    def failed(self) -> None:
        self._pause_until = self.clock() + RETRY_S

    def keep(self, item: Unsent) -> None:
        key = (item.session, item.person_id)
        if key in self._unsent:
            self._unsent[key].merge(item)
        elif len(self._unsent) < self.limit:
            self._unsent[key] = item
            self.kept += 1
        else:
            self.refused += 1

    def drain(self, write: Callable[[Unsent], None]) -> int:
        """Write what waits, oldest first, until one write fails (``write`` raises; the rest stay, and the
        outbox pauses). Returns how many were written."""
        if not self._unsent or self.paused():
            return 0
        done = 0
        for key in list(self._unsent):
            item = self._unsent[key]
            try:
                write(item)
            except Exception:
                self.failed()
                raise
            del self._unsent[key]
            done += 1
            self.written += 1
        return done

    def stats(self) -> dict[str, int]:
        return {"waiting": len(self._unsent), "kept": self.kept, "written": self.written, "refused": self.refused}
