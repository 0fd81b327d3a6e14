"""Track and attendance events, delivered at least once, through Redis consumer groups.

The live stream (:mod:`.bus`) is for dashboards: lossy by design (a gateway that falls behind
jumps to the present, a slow client loses its oldest frames). An integration that opens a door,
posts to a time sheet or audits spoof attempts must see every event, also across its own crash
or restart. Workers therefore write every message that is not a frame (``track_started``,
``track_ended``, ``spoof_suspected``, ``attendance``, ``unknown``, ``session``...) to a second
stream, ``facestream:events`` (``cluster.events_maxlen`` entries, about a day of a busy site),
in the same fenced script call as the live stream.

Readers join a consumer group (``XREADGROUP``): each event goes to one consumer of the group
and stays pending until acknowledged (``XACK``). A consumer that restarts under its name gets
its pending events again first; events pending on a consumer that vanished are claimed by the
others after ``claim_idle_s`` (``XAUTOCLAIM``). Several integrations each use their own group
and each sees every event. ``facestream events --group NAME`` prints them as JSON lines.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import redis

from facestream.errors import FacestreamError, redact
from facestream.stream.attendance.redis_backend import EVENTS_STREAM

log = logging.getLogger(__name__)

EVENTS = EVENTS_STREAM  # named where erasure rewrites it (the attendance store, below this package)
EVENTS_MAXLEN = 100_000  # entries kept (XADD MAXLEN ~): what a consumer that was away can still catch up on
CLAIM_IDLE_S = 30.0


def is_durable(message: dict[str, Any]) -> bool:
    """Everything but frames (frames are many, and only their latest matters)."""
    return message.get("type") != "frame"


class EventConsumer:
    """One consumer of one group on the events stream.

    Args:
        client: a redis-py client.
        group: the integration's name; created at ``start`` ("$": events from now on; "0": all kept).
        consumer: this process's name in the group; a restart under the same name resumes its pending.
        claim_idle_s: take over events another consumer has held unacknowledged for this long.
    """

    def __init__(self, client: redis.Redis, group: str, consumer: str, start: str = "$",
                 claim_idle_s: float = CLAIM_IDLE_S):
        self.client = client
        self.group = group
        self.consumer = consumer
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.rejected = 0  # entries that are not an event a worker writes: acknowledged and skipped
        self._own_pending = True  # first read our own pending entries (a restart), then new ones
        try:
            self.client.xgroup_create(EVENTS, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise FacestreamError(f"Cannot join the events group {group!r} ({exc}).",
                                      "Check the Redis URL and the group name.") from None

    def read(self, count: int = 100, block_ms: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        """The next events for this consumer (its own unacknowledged ones first, then others' abandoned
        ones, then new ones); each must be passed to :meth:`ack` once handled."""
        try:
            if self._own_pending:
                got = self._decode(self.client.xreadgroup(self.group, self.consumer, {EVENTS: "0"}, count=count))
                if got:
                    return got
                self._own_pending = False
            claimed = self.client.xautoclaim(EVENTS, self.group, self.consumer, self.claim_idle_ms, "0-0", count=count)
            got = self._entries(claimed[1] if len(claimed) > 1 else [])
            if got:
                return got
            return self._decode(self.client.xreadgroup(self.group, self.consumer, {EVENTS: ">"}, count=count,
                                                  block=block_ms))
        except redis.RedisError as exc:
            raise FacestreamError(f"Cannot read events from Redis ({redact(str(exc))}).",
                                  "Check that Redis runs; unacknowledged events wait there.") from None

    def ack(self, *entry_ids: str) -> None:
        if entry_ids:
            self.client.xack(EVENTS, self.group, *entry_ids)

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events forever (``block_ms`` at a time); acknowledge each with :meth:`ack`."""
        while True:
            yield from self.read()

    def _decode(self, reply: Any) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        for _, entries in reply or []:
            out += self._entries(entries)
        return out

    def _entries(self, entries: list) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for entry_id, fields in entries:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            if fields is None:  # deleted since it was delivered (an erasure): nothing to hand over
                self.ack(eid)
                continue
            try:
                raw = fields.get(b"m") or fields.get("m")
                message = json.loads(raw)
                if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                    raise ValueError("not an event")
            except (ValueError, TypeError, AttributeError):
                self.rejected += 1
                self.ack(eid)  # junk never comes back
                continue
            out.append((eid, message))
        return out
