"""Live results and events from workers to gateways through one capped Redis stream.

Each entry is one message already encoded as JSON (``m``), its source (``s``, empty for
messages to every client, such as attendance) and, for frames some viewer watches, the
frame as base64 JPEG (``j``). Workers ``XADD ... MAXLEN ~ N``; every gateway reads the
whole stream with its own cursor (plain ``XREAD``, no consumer group), so two gateways
each get every message once: nothing lost or doubled on either. A gateway starts at the
stream's end (``$``), so a restart never replays stale frames; a gateway that lost
Redis for a moment resumes where it was unless that is older than ``STALE_S``.

JPEGs cost bandwidth, so a worker encodes them only while a gateway says someone
watches: gateways keep entries of the ``facestream:watch`` hash (source, or ``*``,
to an expiry time) fresh; one small hash, never a scan of the keyspace.
Per-source order holds: one worker thread publishes a source's messages, in order, and
a source has one worker at a time (its lease). Across a failover the lease's epoch keeps
it: a worker's messages carry ``worker`` and ``epoch``, are written by a script only while
the lease key still holds that worker and epoch (so one cut off or frozen past its lease
writes nothing after the new holder's first message), are dropped on the worker itself
once its lease is 2/3 gone without a renewal, and a gateway drops any epoch older than one
it has seen for that source.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from facestream import wire
from facestream.errors import redact
from facestream.stream.attendance.redis_backend import FRAME_SOURCES, LIVE_STREAM, frame_stream
from facestream.stream.cluster.clock import redis_now
from facestream.stream.cluster.events import EVENTS, EVENTS_MAXLEN, is_durable
from facestream.stream.cluster.registry import LEASE, lease_token
from facestream.stream.config import ServerConfig
from facestream.stream.live.pipeline import LiveResult, Pipeline, TrackEvent, percentile
from facestream.stream.serve.fanout import hide_unknown_faces, jpeg_base64, with_jpeg
from facestream.stream.serve.server import StreamServer

log = logging.getLogger(__name__)

STREAM = LIVE_STREAM
WATCH = "facestream:watch"  # hash: source id (or "*" for every source) -> until when someone watches it
WATCH_TTL_S = 6.0
STALE_S = 2.0  # a reader further behind than this jumps to the present
PENDING_MAX = 2000  # messages a worker holds while Redis is away (oldest dropped)
FRAME_MAXLEN = 600  # entries each source's frame stream keeps: 20 s at 30 fps, far beyond STALE_S

# KEYS: the live stream, the events stream, the frame-sources set, then the frame streams and lease keys
# the batch names; ARGV: the live and events maxlens, the frame streams' maxlen, then 7 per message: stream
# key index, lease key index (0: not fenced), token, source, message, jpeg ('' for none), durable ('1': also
# onto the events stream) -> {written, fenced}
_PUBLISH = """
local ok = {}
local sent, fenced = 0, 0
for i = 4, #ARGV, 7 do
  local k = tonumber(ARGV[i + 1])
  local allowed = true
  if k > 0 then
    if ok[k] == nil then ok[k] = (redis.call('GET', KEYS[k]) == ARGV[i + 2]) end
    allowed = ok[k]
  end
  if allowed then
    local key = KEYS[tonumber(ARGV[i])]
    local maxlen = ARGV[1]
    if key ~= KEYS[1] then
      maxlen = ARGV[3]
      redis.call('SADD', KEYS[3], ARGV[i + 3])
    end
    if ARGV[i + 5] ~= '' then
      redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 's', ARGV[i + 3], 'm', ARGV[i + 4], 'j', ARGV[i + 5])
    else
      redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 's', ARGV[i + 3], 'm', ARGV[i + 4])
    end
    if ARGV[i + 6] == '1' then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 's', ARGV[i + 3], 'm', ARGV[i + 4])
    end
    sent = sent + 1
  else
    fenced = fenced + 1
  end
end
return {sent, fenced}
"""


@dataclass(frozen=True)
class Held:
    """A source this worker holds: its lease's epoch and until when (monotonic) it may publish for it."""

    worker: str
    epoch: int
    until: float

    @property
    def token(self) -> str:
        return lease_token(self.worker, self.epoch)


@dataclass(frozen=True)
class _Outgoing:
    source: str
    text: str
    jpeg: str | None
    token: str | None  # the lease token it was published under (None: not fenced)
    durable: bool  # an event (not a frame): also onto the events stream, for consumer groups
    frame: bool  # a frame of a source: onto that source's own stream


def _until(value: Any) -> float:
    """A watch entry's expiry; anything that is not a finite time (a junk entry) is long past."""
    try:
        until = float(value)
    except (TypeError, ValueError):
        return float("-inf")
    return until if until == until and until != float("inf") else float("-inf")


def watch(client: redis.Redis, sources: list[str], seconds: float = WATCH_TTL_S) -> None:
    """Say that viewers watch ``sources`` ("*": all) for the next ``seconds``; expired entries are dropped."""
    now = redis_now(client)  # Redis's clock, which every worker compares with: machines' clocks differ
    stale = [k for k, until in (client.hgetall(WATCH) or {}).items() if _until(until) <= now]  # junk counts as stale
    pipe = client.pipeline(transaction=False)
    if stale:
        pipe.hdel(WATCH, *stale)
    pipe.hset(WATCH, mapping={s: f"{now + seconds:.3f}" for s in sources})
    pipe.execute()


class LivePublisher:
    """A worker's side: messages into the stream from a background thread (the pipeline never waits on Redis)."""

    def __init__(self, client: redis.Redis, server: ServerConfig, maxlen: int = 5000, fencing: bool = False,
                 events_maxlen: int = EVENTS_MAXLEN):
        self.client = client
        self.server = server
        self.maxlen = maxlen
        self.events_maxlen = events_maxlen
        self._seq: dict[str, int] = {}  # per source: messages published, so gateways can count gaps
        # fencing (a worker's publisher): a source's messages go out only while this worker holds its lease
        self.fencing = fencing
        self._held: dict[str, Held] = {}
        self._script = client.register_script(_PUBLISH)
        self._pending: deque[_Outgoing] = deque(maxlen=PENDING_MAX)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._watched: tuple[float, set[str] | None] = (0.0, set())
        self._last_jpeg: dict[str, float] = {}
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self.fenced = 0  # messages not written: their lease was gone (here or in Redis)
        self._thread = threading.Thread(target=self._run, name="bus-publisher", daemon=True)

    def hold(self, source: str, held: Held) -> None:
        """This worker holds ``source`` at ``held.epoch`` until ``held.until`` (renewed by each lease renewal)."""
        self._held[source] = held

    def let_go(self, source: str) -> None:
        """The lease is lost or released: nothing more of ``source`` goes out, queued messages included."""
        self._held.pop(source, None)

    def _lease_ok(self, source: str, token: str | None) -> bool:
        if token is None:
            return True
        held = self._held.get(source)
        return held is not None and held.token == token and time.monotonic() <= held.until

    def start(self) -> LivePublisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def attach(self, pipeline: Pipeline) -> LivePublisher:
        pipeline.add_listener(self._on_result, self._on_event)
        return self

    def _on_result(self, result: LiveResult, rgb: np.ndarray) -> None:
        self.publish(result.to_json(), result.source_id, image=getattr(result, "image", None))

    def _on_event(self, event: TrackEvent) -> None:
        self.publish(event.to_json(), event.source_id)

    def publish(self, message: dict, source: str | None = None, t_read: float | None = None,
                image: np.ndarray | None = None) -> None:
        """Queue one message (the same signature as :meth:`StreamServer.publish`, so monitors can call either).

        With fencing, a source's message carries this worker's id and lease epoch, and is dropped (counted
        in ``fenced``) when the lease is not held; messages for everyone (``source`` None) are not fenced.
        """
        token = None
        if self.fencing and source:
            held = self._held.get(source)
            if held is None or time.monotonic() > held.until:
                self.fenced += 1
                return
            message = {**message, "worker": held.worker, "epoch": held.epoch}
            if message.get("type") == "frame":  # numbered, so a gateway can count the frames it missed
                message["seq"] = self._seq[source] = self._seq.get(source, 0) + 1
            token = held.token
        text = wire.dumps(message, separators=(",", ":"))
        jpeg = None
        if image is not None and source is not None and self._jpeg_due(source):
            if self.server.blur_unknown:
                image = hide_unknown_faces(image, message.get("faces") or [])
            jpeg = jpeg_base64(image, self.server.jpeg_quality)
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(_Outgoing(source or "", text, jpeg, token, is_durable(message),
                                       bool(source) and message.get("type") == "frame"))
        self._wake.set()

    def _jpeg_due(self, source: str) -> bool:
        if self.server.jpeg_fps <= 0:
            return False
        watched = self._watchers()
        if watched is not None and source not in watched:
            return False
        now = time.monotonic()
        if now - self._last_jpeg.get(source, 0.0) < 1.0 / self.server.jpeg_fps:
            return False
        self._last_jpeg[source] = now
        return True

    def _watchers(self) -> set[str] | None:
        """Sources a gateway's viewer watches (None: all), as the publisher thread last read them: the
        pipeline thread that asks never waits on Redis."""
        return self._watched[1]

    def _refresh_watchers(self) -> set[str] | None:
        """Read the watch hash (the publisher thread, at most once a second)."""
        try:
            entries = self.client.hgetall(WATCH) or {}
            wall = redis_now(self.client)
        except redis.RedisError:
            entries, wall = {}, 0.0
        names = {(k.decode(errors="replace") if isinstance(k, bytes) else k) for k, until in entries.items()
                 if _until(until) > wall}  # a junk entry is ignored, never a reason to stop sending frames
        watched = None if "*" in names else names
        self._watched = (time.monotonic(), watched)
        return watched

    def _run(self) -> None:
        while not self._stop.is_set() or self._pending:
            self._wake.wait(0.5)
            self._wake.clear()
            if time.monotonic() - self._watched[0] >= 1.0 and not self._stop.is_set():
                self._refresh_watchers()
            batch: list[_Outgoing] = []
            while self._pending and len(batch) < 500:
                out = self._pending.popleft()
                if self._lease_ok(out.source, out.token):
                    batch.append(out)
                else:  # the lease ran out while it waited (Redis away, or this process frozen)
                    self.fenced += 1
            if not batch:
                continue
            try:
                sent, fenced = self._send(batch)
                self.sent += sent
                self.fenced += fenced
            except redis.RedisError as exc:  # Redis away: drop this batch, keep recognising, say so once a while
                self.failures += 1
                self.dropped += len(batch)
                if self.failures == 1 or self.failures % 50 == 0:
                    log.error("cannot publish to Redis (%s); %d message(s) dropped so far", redact(str(exc)),
                              self.dropped)
                if self._stop.wait(1.0):
                    return

    def _send(self, batch: list[_Outgoing]) -> tuple[int, int]:
        """One script call: each message written only if its lease key still holds its token; frames onto
        their source's stream, the rest onto the live stream (and events onto the events stream)."""
        keys: list[str] = [STREAM, EVENTS, FRAME_SOURCES]
        index: dict[str, int] = {}

        def key(name: str) -> int:
            if name not in index:
                keys.append(name)
                index[name] = len(keys)  # Lua's KEYS count from 1
            return index[name]

        args: list[Any] = [self.maxlen, self.events_maxlen, FRAME_MAXLEN]
        for out in batch:
            stream = key(frame_stream(out.source)) if out.frame else 1
            lease = key(LEASE + out.source) if out.token is not None else 0
            args += [stream, lease, out.token or "", out.source, out.text, out.jpeg or "", "1" if out.durable else "0"]
        sent, fenced = self._script(keys=keys, args=args)
        return int(sent), int(fenced)

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "dropped": self.dropped, "fenced": self.fenced, "queued": len(self._pending)}


class LiveReader:
    """A gateway's side: the stream into a :class:`StreamServer`'s client queues; keeps viewers' watch keys alive."""

    def __init__(self, client: redis.Redis, server: StreamServer):
        self.client = client
        self.server = server
        self.received = 0
        self.rejected = 0  # entries that are not a message a worker writes (junk, non-UTF-8, not JSON)
        self.stale = 0  # messages of a lease epoch older than one already seen for their source
        self.gaps = 0  # messages a worker published that this gateway never got (lost in between, or skipped)
        self._epochs: dict[str, int] = {}
        self._seqs: dict[str, tuple[int, int]] = {}  # source -> (epoch, last seq seen)
        self._offset, self._offset_at = 0.0, float("-inf")
        self.hop_ms: deque[float] = deque(maxlen=5000)
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-reader", daemon=True)
        self._watch_at = 0.0
        self._cursors: dict[str, str] = {}  # stream key -> the last entry id read (or the moment to read from)
        self._follow_at = float("-inf")
        self._known: set[str] | None = None  # the sources with a frame stream at the last check
        self._wanted: set[str] | None = set()  # what the clients watched at the last check
        self.streams = 1  # streams read: the live one and the watched sources' frames

    def start(self) -> LiveReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._cursors and not self._stop.is_set():
            try:
                self._cursors[STREAM] = self._now_id()  # from the moment this gateway starts: nothing stale
            except redis.RedisError:
                self._stop.wait(1.0)
        while not self._stop.is_set():
            try:
                self._keep_watch()
            except Exception:  # a junk watch entry or the like: reading goes on
                log.exception("cannot renew this gateway's watch entries")
            try:
                self._follow_sources()
                streams: dict[Any, Any] = dict(self._cursors)
                reply: Any = self.client.xread(streams, count=1000, block=500)
            except redis.RedisError as exc:
                self.failures += 1
                if self.failures == 1 or self.failures % 30 == 0:
                    log.error("cannot read the live stream from Redis (%s); retrying", redact(str(exc)))
                self._stop.wait(1.0)
                continue
            now_ms = (time.time() + self._clock_offset()) * 1000  # entry ids are Redis's time: compare in it
            got: set[str] = set()
            for name, entries in list(reply or []):  # [[stream, [(id, fields), ...]], ...]
                key = name.decode() if isinstance(name, bytes) else str(name)
                got.add(key)
                for entry_id, fields in entries:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    if key in self._cursors:
                        self._cursors[key] = last
                    try:
                        self._deliver(fields, now_ms - int(last.split("-")[0]))
                    except Exception:  # one bad entry must never stop the reader (and with it every dashboard)
                        self._reject(last)
            for key, cursor in list(self._cursors.items()):
                if key not in got and now_ms - int(cursor.split("-")[0]) > STALE_S * 1000:
                    self._cursors[key] = self._now_id()  # quiet for a while: never replay what is old once back

    def _follow_sources(self) -> None:
        """Read the frame streams of the sources this gateway's clients watch (all declared ones when some
        client watches everything): re-checked every second, and at once when the clients' choice changes;
        the live stream (events, attendance) always."""
        now = time.monotonic()
        wanted = self.server.watched()
        if now - self._follow_at < 1.0 and wanted == self._wanted:  # a viewer's new choice counts at once
            return
        self._follow_at, self._wanted = now, wanted
        declared = {(m.decode(errors="replace") if isinstance(m, bytes) else str(m))
                    for m in self.client.smembers(FRAME_SOURCES) or ()}
        appeared = declared - self._known if self._known is not None else set()
        self._known = declared
        keys = {frame_stream(sid): sid for sid in (declared if wanted is None else wanted)}
        for key in list(self._cursors):
            if key != STREAM and key not in keys:
                del self._cursors[key]
                self._seqs.pop(keys.get(key, key[len(frame_stream("")):]), None)  # unwatched gaps are no loss
        # a source that starts publishing after this gateway (a camera claimed): its last STALE_S seconds, so
        # its first frames are not lost to this one-second check; any other stream from now on (never stale)
        for key, sid in keys.items():
            self._cursors.setdefault(key, self._now_id(STALE_S if sid in appeared else 0.0))
        self.streams = len(self._cursors)

    def _now_id(self, ago_s: float = 0.0) -> str:
        """A stream id for "from this moment" (by Redis's clock): every stream of an XREAD keeps its own place;
        '$' would lose what arrives on one stream while another's entries are being handed out."""
        return f"{int((time.time() + self._clock_offset() - ago_s) * 1000)}-0"

    def problem(self) -> str | None:
        """What ``/health`` should report: the reader thread dead (no dashboard would get anything)."""
        if self._thread.ident is not None and not self._thread.is_alive() and not self._stop.is_set():
            return "the live-stream reader has stopped; restart the gateway"
        return None

    def _clock_offset(self) -> float:
        """Redis's clock minus this machine's, measured every 10 s (one TIME call)."""
        if time.monotonic() - self._offset_at > 10.0:
            try:
                self._offset = redis_now(self.client) - time.time()
                self._offset_at = time.monotonic()
            except redis.RedisError:
                pass
        return self._offset

    def _reject(self, entry_id: str) -> None:
        self.rejected += 1
        if self.rejected == 1 or self.rejected % 100 == 0:
            log.warning("skipped a live-stream entry that is not a worker's message (%s; %d so far)", entry_id,
                        self.rejected)

    def _deliver(self, fields: dict, hop_ms: float) -> None:
        get = lambda k: (fields.get(k.encode()) or fields.get(k) or b"")  # noqa: E731 - bytes or str keys
        raw_text, raw_source, raw_jpeg = get("m"), get("s"), get("j")
        text = raw_text.decode() if isinstance(raw_text, bytes) else raw_text
        source = (raw_source.decode() if isinstance(raw_source, bytes) else raw_source) or None
        jpeg = raw_jpeg.decode("ascii") if isinstance(raw_jpeg, bytes) else raw_jpeg
        if not text:
            raise ValueError("no message")
        message = json.loads(text)  # what a worker writes is one JSON object with a type
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ValueError("not a message")
        epoch = message.get("epoch")
        if source and type(epoch) is int:
            if epoch < self._epochs.get(source, 0):  # a worker that lost the source: the new holder speaks
                self.stale += 1
                return
            self._epochs[source] = epoch
            seq = message.get("seq")
            if type(seq) is int:
                last_epoch, last = self._seqs.get(source, (epoch, seq - 1))
                if last_epoch == epoch and seq > last + 1:
                    self.gaps += seq - last - 1
                self._seqs[source] = (epoch, seq)
        self.received += 1
        self.hop_ms.append(max(0.0, hop_ms))
        self.server.publish_encoded(text, with_jpeg(text, jpeg) if jpeg else None, source)

    def _keep_watch(self) -> None:
        """Tell workers which sources viewers on this gateway watch (renewed every 2 s, valid WATCH_TTL_S)."""
        now = time.monotonic()
        if now - self._watch_at < 2.0:
            return
        self._watch_at = now
        watched = self.server.jpeg_watched()
        names = ["*"] if watched is None else sorted(watched)
        if not names:
            return
        try:
            watch(self.client, names)
        except redis.RedisError:
            pass  # the read loop reports Redis trouble

    def stats(self) -> dict[str, Any]:
        hop = list(self.hop_ms)
        return {"received": self.received, "rejected": self.rejected, "stale": self.stale, "gaps": self.gaps,
                "streams": self.streams, "hop_ms_p50": percentile(hop, 50),
                "hop_ms_p99": percentile(hop, 99), "redis_failures": self.failures,
                "reading": self._thread.is_alive()}
