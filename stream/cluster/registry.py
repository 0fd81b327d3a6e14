"""Sources declared once in Redis and claimed by workers with leases they renew.

Layout (all under ``facestream:``):

* ``sources`` (hash): source id -> its :class:`SourceConfig` as JSON (``facestream sources add``,
  or a worker's ``sources:`` config, registered at start);
* ``lease:<id>`` (string with a TTL): ``<worker>#<epoch>``, the worker holding the source and the
  epoch of its claim; set only when free (a Lua script, so one worker wins), renewed by its holder
  only (a compare-and-expire), deleted on a clean stop;
* ``epoch:<id>`` (counter, never expires): raised by every claim. Every message a worker publishes
  carries its epoch and is written only while its lease still holds it (:mod:`.bus`), and gateways
  drop an epoch older than one they have seen: a worker cut off or frozen past its lease can never
  write over the new holder (fencing tokens, as in Kleppmann's and Chubby's leases);
* ``workers`` (hash): worker id -> its last heartbeat (host, pid, capacity, sources, stats).

A worker that dies stops renewing; its leases run out after ``cluster.lease_seconds`` and the
other workers, polling every third of that, claim the sources.
"""

from __future__ import annotations

import json
import re
from typing import Any

import redis

from facestream import wire
from facestream.errors import FacestreamError, redact
from facestream.redis_url import connect, connection_fix, is_redis_url
from facestream.stream.cluster.clock import redis_now
from facestream.stream.config import SourceConfig

PREFIX = "facestream:"
SOURCES = PREFIX + "sources"
LEASE = PREFIX + "lease:"
EPOCH = PREFIX + "epoch:"
WORKERS = PREFIX + "workers"
_SOURCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# KEYS: lease, epoch; ARGV: worker, lease ms -> the new epoch, or 0 when someone holds it
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '#' .. epoch, 'PX', ARGV[2])
return epoch
"""
# KEYS: leases; ARGV: worker, lease ms -> per key the epoch this worker holds it at (extended), or 0
_RENEW = """
local out = {}
local mine = ARGV[1] .. '#'
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v and string.sub(v, 1, #mine) == mine then
    redis.call('PEXPIRE', key, ARGV[2]); out[i] = tonumber(string.sub(v, #mine + 1)) or 0
  else
    out[i] = 0
  end
end
return out
"""
_RELEASE = """
local n = 0
local mine = ARGV[1] .. '#'
for _, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v and string.sub(v, 1, #mine) == mine then redis.call('DEL', key); n = n + 1 end
end
return n
"""


def lease_token(worker: str, epoch: int) -> str:
    """What a lease key holds: compared, byte for byte, by every fenced write."""
    return f"{worker}#{epoch}"


def parse_lease(value: Any) -> tuple[str, int] | None:
    """A lease key's value as (worker, epoch); None for anything else (free, or not ours to read)."""
    if value is None:
        return None
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    worker, _, epoch = text.rpartition("#")
    return (worker, int(epoch)) if worker and epoch.isdigit() else None


def check_source_id(source_id: str) -> str:
    if not isinstance(source_id, str) or not _SOURCE_ID.fullmatch(source_id):
        raise FacestreamError(f"Source id {str(source_id)[:40]!r} is not valid.",
                              "Use 1-64 letters, digits, '.', '_' or '-' (--id cam-door-1).")
    return source_id


class SourceRegistry:
    """The shared list of sources and who holds each (one Redis connection; thread-safe as redis-py is)."""

    def __init__(self, url: str):
        if not is_redis_url(url):
            raise FacestreamError(f"Workers and gateways share cameras through Redis, not {redact(url)}.",
                                  "Pass --gallery redis://HOST:6379/0 (or set gallery.url / FACESTREAM_GALLERY).")
        self.url = url
        self.client = connect(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10)
        self._claim = self.client.register_script(_CLAIM)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise FacestreamError(f"Cannot reach Redis at {self.url} ({exc}).", connection_fix(
                self.url, exc, "Start Redis or fix --gallery; workers retry by themselves.")) from None

    # -- the sources -------------------------------------------------------------------------------------
    def add(self, source: SourceConfig) -> SourceConfig:
        """Declare a source (its ``id`` is required); replaces one with the same id."""
        if not source.id:
            raise FacestreamError(f"The source {redact(source.url)} needs an id.", "Pass --id NAME.")
        check_source_id(source.id)
        self._call(self.client.hset, SOURCES, source.id, wire.dumps(source.model_dump()))
        return source

    def remove(self, source_id: str) -> None:
        if not self._call(self.client.hdel, SOURCES, source_id):
            known = ", ".join(sorted(s.id or "" for s in self.sources())) or "none"
            raise FacestreamError(f"No source {source_id!r}.", f"Known sources: {known}.")

    def sources(self) -> list[SourceConfig]:
        raw = self._call(self.client.hgetall, SOURCES) or {}
        out = []
        for value in raw.values():
            try:
                out.append(SourceConfig(**json.loads(value)))
            except (ValueError, TypeError):
                continue  # a hand-edited entry: ignored rather than stopping every worker
        return sorted(out, key=lambda s: s.id or "")

    # -- leases ------------------------------------------------------------------------------------------
    def claim(self, source_id: str, worker: str, lease_s: float) -> int:
        """Take a free source: the epoch of this claim (one more than any before), or 0 if it is held."""
        return int(self._call(self._claim, keys=[LEASE + source_id, EPOCH + source_id],
                              args=[worker, int(lease_s * 1000)]))

    def renew(self, source_ids: list[str], worker: str, lease_s: float) -> dict[str, int]:
        """Extend this worker's leases: per source the epoch it holds it at, 0 for those it no longer holds
        (taken over, or expired)."""
        if not source_ids:
            return {}
        got = self._call(self._renew, keys=[LEASE + s for s in source_ids], args=[worker, int(lease_s * 1000)])
        return {s: int(epoch) for s, epoch in zip(source_ids, got, strict=True)}

    def release(self, source_ids: list[str], worker: str) -> int:
        if not source_ids:
            return 0
        return int(self._call(self._release, keys=[LEASE + s for s in source_ids], args=[worker]))

    def holders(self) -> dict[str, str | None]:
        """Every declared source and the worker holding it (None: free)."""
        ids = [s.id or "" for s in self.sources()]
        if not ids:
            return {}
        values = self._call(self.client.mget, [LEASE + i for i in ids])
        return {i: (lease[0] if (lease := parse_lease(v)) else None) for i, v in zip(ids, values, strict=True)}

    def lease(self, source_id: str) -> tuple[str, int] | None:
        """Who holds one source and at which epoch (None: free)."""
        return parse_lease(self._call(self.client.get, LEASE + source_id))

    # -- workers -----------------------------------------------------------------------------------------
    def heartbeat(self, worker: str, info: dict[str, Any]) -> None:
        seen = self._call(redis_now, self.client)  # Redis's clock: a machine's own may be off by seconds
        self._call(self.client.hset, WORKERS, worker, wire.dumps({**info, "id": worker, "seen": seen}))

    def leave(self, worker: str) -> None:
        self._call(self.client.hdel, WORKERS, worker)

    def workers(self, max_age_s: float, prune: bool = True) -> list[dict[str, Any]]:
        """Workers heard from within ``max_age_s``; older entries (dead workers) are removed unless ``prune``
        is False."""
        raw = self._call(self.client.hgetall, WORKERS) or {}
        now = self._call(redis_now, self.client)
        out: list[dict[str, Any]] = []
        dead: list[Any] = []
        for key, value in raw.items():
            try:
                info = json.loads(value)
                fresh = now - float(info.get("seen", 0)) <= max_age_s and isinstance(info.get("id"), str)
            except (ValueError, TypeError, AttributeError):  # a junk entry: not a worker
                fresh = False
            (out if fresh else dead).append(info if fresh else key)
        if dead and prune:
            self._call(self.client.hdel, WORKERS, *dead)
        return sorted(out, key=lambda w: w["id"])

    def close(self) -> None:
        self.client.close()
