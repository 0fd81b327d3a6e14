"""Attendance in Redis: shared by every worker that uses the same gallery URL.

Keys (all under ``facestream:attendance:``): ``sessions`` (hash name -> JSON), ``ends`` (sorted set name -> end),
``rec:<session>`` (hash person -> JSON), ``snap:<session>`` (hash person -> JPEG),
``unknown:<session>`` (counter), ``unknownsnap:<session>`` (list). A record
update is one Lua script, so two workers seeing the same person at once still
leave one record with the earliest first sighting.
"""

from __future__ import annotations

import json

from facestream import wire
from facestream.errors import FacestreamError
from facestream.redis_url import connect, connection_fix
from facestream.stream.attendance.model import Record, Session, strip_person
from facestream.stream.attendance.store import AttendanceStore

PREFIX = "facestream:attendance:"
LIVE_STREAM = "facestream:live"  # the cluster's live stream (stream/cluster/bus.py): erasing purges it too
EVENTS_STREAM = "facestream:events"  # its durable events (stream/cluster/events.py): purged too
FRAME_SOURCES = "facestream:frames"  # set: the sources that have a frame stream
FRAME_STREAM = "facestream:frames:"  # + source id: that source's frames (faces, names): purged too


def frame_stream(source: str) -> str:
    return FRAME_STREAM + source

# KEYS: rec hash, snap hash. ARGV: person, record JSON (a new sighting), snapshot or "".
_UPSERT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local new = cjson.decode(ARGV[2])
local created = 0
local better = 0
if not old then
  created = 1
  better = 1
else
  local o = cjson.decode(old)
  if new.first_seen < o.first_seen then o.first_seen = new.first_seen; o.camera = new.camera end
  if new.last_seen > o.last_seen then o.last_seen = new.last_seen end
  if new.best_similarity > o.best_similarity then o.best_similarity = new.best_similarity; better = 1 end
  if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then better = 1 end
  new = o
end
if ARGV[3] ~= '' and better == 1 then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
new.has_snapshot = redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1
local out = cjson.encode(new)
redis.call('HSET', KEYS[1], ARGV[1], out)
return {created, out}
"""


class RedisAttendanceStore(AttendanceStore):
    def __init__(self, url: str):
        import redis

        self.url = url
        self._redis_errors = (redis.ConnectionError, redis.TimeoutError)
        try:
            self._r = connect(url, socket_timeout=10, socket_connect_timeout=5)
            self._r.ping()
        except self._redis_errors as exc:
            raise FacestreamError(f"Cannot reach Redis at {url} ({exc}).",
                                  connection_fix(url, exc, "Start redis-server or fix gallery.url.")) from None
        self._upsert = self._r.register_script(_UPSERT)

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except self._redis_errors as exc:
            raise FacestreamError(f"Lost the connection to Redis at {self.url} ({exc}).",
                                  "Check that redis-server is running; attendance resumes when it is back.") from None

    def add_session(self, session: Session) -> bool:
        created = bool(self._call(self._r.hsetnx, PREFIX + "sessions", session.name, wire.dumps(session.to_dict())))
        if created:
            self._call(self._r.zadd, PREFIX + "ends", {session.name: _score(session.end)})
        return created

    def open_sessions(self, since: float) -> list[Session]:
        names = self._call(self._r.zrangebyscore, PREFIX + "ends", f"({since}", "+inf")
        if not names:
            return []
        raw = self._call(self._r.hmget, PREFIX + "sessions", names)
        return sorted((Session.from_dict(json.loads(v)) for v in raw if v), key=lambda s: (s.start, s.name))

    def get_session(self, name: str) -> Session | None:
        raw = self._call(self._r.hget, PREFIX + "sessions", name)
        return Session.from_dict(json.loads(raw)) if raw else None

    def sessions(self) -> list[Session]:
        raw = self._call(self._r.hvals, PREFIX + "sessions")
        return sorted((Session.from_dict(json.loads(v)) for v in raw), key=lambda s: (s.start, s.name))

    def set_end(self, name: str, end: float | None) -> None:
        key = PREFIX + "sessions"

        def update(pipe):
            raw = pipe.hget(key, name)
            if raw:
                data = json.loads(raw)
                data["end"] = end
                pipe.multi()
                pipe.hset(key, name, wire.dumps(data))
                pipe.zadd(PREFIX + "ends", {name: _score(end)})

        self._call(self._r.transaction, update, key)

    def delete_session(self, name: str) -> None:
        pipe = self._r.pipeline()
        pipe.hdel(PREFIX + "sessions", name)
        pipe.zrem(PREFIX + "ends", name)
        for part in ("rec:", "snap:", "unknown:", "unknownsnap:"):
            pipe.delete(PREFIX + part + name)
        self._call(pipe.execute)

    def upsert(self, session, person_id, name, on_roster, first_seen, last_seen, camera, similarity,
               snapshot=None):
        rec = {"session": session, "person_id": person_id, "name": name, "on_roster": bool(on_roster),
               "first_seen": first_seen, "last_seen": last_seen, "camera": camera, "best_similarity": float(similarity)}
        created, out = self._call(self._upsert, [PREFIX + "rec:" + session, PREFIX + "snap:" + session],
                                  [person_id, wire.dumps(rec), snapshot or b""])
        return _record(json.loads(out)), bool(created)

    def records(self, session: str) -> list[Record]:
        raw = self._call(self._r.hvals, PREFIX + "rec:" + session)
        return sorted((_record(json.loads(v)) for v in raw), key=lambda r: r.first_seen)

    def snapshot(self, session: str, person_id: str) -> bytes | None:
        return self._call(self._r.hget, PREFIX + "snap:" + session, person_id)

    def add_unknown(self, session, seen, camera, snapshot=None):
        if snapshot:
            self._call(self._r.rpush, PREFIX + "unknownsnap:" + session,
                       wire.dumps({"seen": seen, "camera": camera}).encode() + b"\n" + snapshot)
        return int(self._call(self._r.incr, PREFIX + "unknown:" + session))

    def unknown_count(self, session: str) -> int:
        return int(self._call(self._r.get, PREFIX + "unknown:" + session) or 0)

    def unknown_snapshots(self, session: str) -> list[tuple[float, str, bytes]]:
        out = []
        for item in self._call(self._r.lrange, PREFIX + "unknownsnap:" + session, 0, -1):
            head, _, jpeg = item.partition(b"\n")
            meta = json.loads(head)
            out.append((meta["seen"], meta["camera"], jpeg))
        return out

    def forget_person(self, person_id: str, person_name: str = "") -> int:
        self._forget_in_live_stream(person_id)
        touched = 0
        key = PREFIX + "sessions"
        for s in self.sessions():
            pipe = self._r.pipeline()
            pipe.hdel(PREFIX + "rec:" + s.name, person_id)
            pipe.hdel(PREFIX + "snap:" + s.name, person_id)
            had_record = self._call(pipe.execute)[0]
            on_roster = strip_person(s.to_dict(), person_id, person_name)
            if on_roster:

                def update(p, name=s.name, key=key):
                    raw = p.hget(key, name)
                    if raw:
                        d = json.loads(raw)
                        strip_person(d, person_id, person_name)
                        p.multi()
                        p.hset(key, name, wire.dumps(d))

                self._call(self._r.transaction, update, key)
            touched += bool(had_record or on_roster)
        return touched

    def _forget_in_live_stream(self, person_id: str) -> None:
        """Rewrite the cluster's live and events streams without the entries that name the person (frames, faces,
        events).

        XDEL only marks entries deleted: their bytes stay in the stream's nodes (and so in RDB/AOF) until every
        entry of a node is gone. One script copies the rest into a fresh stream with the same ids and last id,
        atomically (workers adding meanwhile wait for it: a few ms for the 5,000 entries the stream keeps).
        """
        sources = sorted(s.decode() if isinstance(s, bytes) else str(s)
                         for s in self._call(self._r.smembers, FRAME_SOURCES) or ())
        for stream in (LIVE_STREAM, EVENTS_STREAM, *(frame_stream(s) for s in sources)):
            self._call(self._r.eval, _REWRITE_WITHOUT, 1, stream, person_id)

    def purge_snapshots(self, ended_before: float) -> int:
        names = self._call(self._r.zrangebyscore, PREFIX + "ends", "-inf", f"({ended_before}")
        if names:
            pipe = self._r.pipeline()
            for raw in names:
                name = raw.decode() if isinstance(raw, bytes) else raw
                pipe.delete(PREFIX + "snap:" + name, PREFIX + "unknownsnap:" + name)
            self._call(pipe.execute)
            for raw in names:  # records say a snapshot exists: they no longer do
                name = raw.decode() if isinstance(raw, bytes) else raw
                for person_id, rec in (self._call(self._r.hgetall, PREFIX + "rec:" + name) or {}).items():
                    d = json.loads(rec)
                    if d.pop("has_snapshot", None):
                        self._call(self._r.hset, PREFIX + "rec:" + name, person_id, wire.dumps(d))
        for raw in self._call(self._r.zrangebyscore, PREFIX + "ends", "+inf", "+inf") or []:
            self._purge_open(raw.decode() if isinstance(raw, bytes) else raw, ended_before)
        return len(names)

    def _purge_open(self, name: str, cut: float) -> None:
        """An open session (no end) keeps only the snapshots of faces seen since ``cut``."""
        for person_id, rec in (self._call(self._r.hgetall, PREFIX + "rec:" + name) or {}).items():
            d = json.loads(rec)
            if d.get("has_snapshot") and float(d.get("last_seen", 0.0)) < cut:
                d.pop("has_snapshot")
                pipe = self._r.pipeline()
                pipe.hdel(PREFIX + "snap:" + name, person_id)
                pipe.hset(PREFIX + "rec:" + name, person_id, wire.dumps(d))
                self._call(pipe.execute)
        key = PREFIX + "unknownsnap:" + name
        for item in self._call(self._r.lrange, key, 0, -1) or []:
            if float(json.loads(item.partition(b"\n")[0])["seen"]) < cut:
                self._call(self._r.lrem, key, 1, item)

    def close(self) -> None:
        self._r.close()


_REWRITE_WITHOUT = """
local key, needle = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local entries = redis.call('XRANGE', key, '-', '+')
local keep, dropped = {}, 0
for _, e in ipairs(entries) do
  local hit = false
  for i = 2, #e[2], 2 do
    if string.find(e[2][i], needle, 1, true) then hit = true end
  end
  if hit then dropped = dropped + 1 else keep[#keep + 1] = e end
end
if dropped == 0 then return 0 end
local info = redis.call('XINFO', 'STREAM', key)
local last = nil
for i = 1, #info, 2 do if info[i] == 'last-generated-id' then last = info[i + 1] end end
local groups = redis.call('XINFO', 'GROUPS', key)
redis.call('DEL', key)
for _, e in ipairs(keep) do redis.call('XADD', key, e[1], unpack(e[2])) end
for _, g in ipairs(groups) do  -- consumer groups keep their place (their pending lists are lost)
  local name, delivered
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then delivered = g[i + 1] end
  end
  redis.call('XGROUP', 'CREATE', key, name, delivered, 'MKSTREAM')
end
if (#keep > 0 or #groups > 0) and last then redis.call('XSETID', key, last) end
return dropped
"""


def _score(end: float | None) -> float:
    return float("inf") if end is None else float(end)


def _record(d: dict) -> Record:
    return Record(session=d["session"], person_id=d["person_id"], name=d["name"], on_roster=bool(d["on_roster"]),
                  first_seen=float(d["first_seen"]), last_seen=float(d["last_seen"]), camera=d["camera"],
                  best_similarity=float(d["best_similarity"]), has_snapshot=bool(d.get("has_snapshot")))
