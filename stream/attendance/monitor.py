"""The live attendance monitor: a pipeline listener that turns recognised tracks into attendance.

It keeps the sessions of the store in view (re-reading them every
``refresh_seconds``, so sessions started from the CLI or the dashboard of
another process take effect), opens timetable sessions and the day's session,
applies the presence rule per track, writes sightings through to the store
(throttled) and tells its listeners (the dashboard) what changed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.attendance.marker import PresenceRule, Sighting
from facestream.stream.attendance.model import Attendance, Session
from facestream.stream.attendance.outbox import Outbox, Unsent
from facestream.stream.attendance.roster import PersonLike
from facestream.stream.attendance.sessions import create_session, day_bounds, stop_session
from facestream.stream.attendance.store import AttendanceStore
from facestream.stream.config import AttendanceConfig
from facestream.stream.engine.faces import Faces, FrameResult

log = logging.getLogger(__name__)

# Strangers' looks kept per session to tell a returning stranger from a new one (4096 x 128 floats: 2 MB).
MAX_STRANGER_LOOKS = 4096
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

Listener = Callable[[dict[str, Any]], None]


def face_snapshot(frame_rgb: np.ndarray | None, box: Iterable[float], max_side: int = 192) -> bytes | None:
    """A JPEG of the face with some context around it, small enough to keep per person."""
    if frame_rgb is None:
        return None
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    H, W = frame_rgb.shape[:2]
    a, b = int(max(0, x1 - 0.3 * w)), int(max(0, y1 - 0.3 * h))
    c, d = int(min(W, x2 + 0.3 * w)), int(min(H, y2 + 0.3 * h))
    if c <= a or d <= b:
        return None
    crop = frame_rgb[b:d, a:c]
    scale = max_side / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, (max(1, int(crop.shape[1] * scale)), max(1, int(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else None


class _Looks:
    """The looks of the strangers counted in one session: at most ``MAX_STRANGER_LOOKS``, the oldest forgotten
    first, in one preallocated matrix, so a long session's memory and the time per departing stranger stay
    bounded (a stranger who comes back after that many others is counted again)."""

    def __init__(self, capacity: int = 0):
        self.capacity = capacity or MAX_STRANGER_LOOKS
        self.matrix: np.ndarray | None = None
        self.count = 0

    def add(self, look: np.ndarray) -> None:
        look = np.asarray(look, np.float32).reshape(-1)
        if self.matrix is None or self.matrix.shape[1] != len(look):
            self.matrix, self.count = np.zeros((self.capacity, len(look)), np.float32), 0
        self.matrix[self.count % self.capacity] = look
        self.count += 1

    def best(self, look: np.ndarray) -> float:
        """The highest similarity of ``look`` to a kept look (-inf when none)."""
        n = min(self.count, self.capacity)
        if self.matrix is None or not n or self.matrix.shape[1] != np.size(look):
            return float("-inf")
        return float((self.matrix[:n] @ np.asarray(look, np.float32).reshape(-1)).max())

    def __len__(self) -> int:
        return min(self.count, self.capacity)


@dataclass
class _Stranger:
    """An unknown track confirmed in some sessions, counted when it leaves still nameless."""

    first_ts: float
    sessions: list[str]
    snapshot: bytes | None
    look: np.ndarray | None = None  # its latest appearance embedding, when the pipeline gave one


def _row(embedding: np.ndarray | None, i: int) -> np.ndarray | None:
    """Face ``i``'s embedding, or None when there is none (no matrix, or a NaN row: not embedded yet)."""
    if embedding is None:
        return None
    row = np.asarray(embedding[i], np.float32)
    return row if np.isfinite(row).all() else None


def _person_of(event: dict[str, Any]) -> str | None:
    """The person an attendance event names (None for sessions, strangers' counts)."""
    record = event.get("record")
    return record.get("person_id") if isinstance(record, dict) else None


class AttendanceMonitor:
    """Marks attendance from live results.

    Args:
        store: where sessions and records live (same URL as the gallery).
        config: the ``attendance`` config section.
        people: returns the enrolled people (for rosters of the day's and timetable sessions).
        threshold: similarity a frame needs to count (None: trust the tracker's identity); also
            what makes two unknown tracks one stranger (see :meth:`_unknown`).
        clock: wall time source (tests pass their own).
        require_live: ``liveness.mode: require``: a named face counts only while its track is judged live.
    """

    def __init__(self, store: AttendanceStore, config: AttendanceConfig | None = None,
                 people: Callable[[], Iterable[PersonLike]] | None = None, threshold: float | None = None,
                 clock: Callable[[], float] = time.time, require_live: bool = False):
        self.store = store
        self.require_live = require_live  # liveness.mode require: a named face counts only once its track is live
        self.config = config or AttendanceConfig()
        self.people = people or (lambda: [])
        self.clock = clock
        self.rule = PresenceRule(self.config.min_frames, self.config.min_seconds, threshold)
        self.threshold = threshold
        self.sessions: dict[str, Session] = {}
        self._states: dict[str, str] = {}
        self._written: dict[tuple[str, str], tuple[float, float]] = {}
        self._listeners: list[Listener] = []
        self._recent: deque[dict[str, Any]] = deque(maxlen=100)
        # unknown tracks confirmed but not counted yet: counted when they leave still nameless
        self._pending_unknown: dict[tuple[str, int], _Stranger] = {}
        # per session, the look of every stranger counted by this process (memory only: strangers'
        # faces are not enrolled, so their embeddings are never written anywhere)
        self._strangers: dict[str, _Looks] = {}
        self._next_purge = 0.0
        self._lock = threading.RLock()
        self._next_refresh = 0.0
        self._next_forget = 0.0
        self._opened: set[str] = set()  # timetable/day sessions this process has tried to open
        self._day_session = False
        self._last_error = 0.0
        self.outbox = Outbox()  # sightings the store could not take yet, written when it is back

    # -- listeners -------------------------------------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        """``fn(event_dict)`` for every attendance/session/unknown event (called from the pipeline thread)."""
        self._listeners.append(fn)

    def recent(self) -> list[dict[str, Any]]:
        """The last attendance events, oldest first (a page that connects late still sees the story), without
        those of people erased since (an erased person must not reach a new dashboard)."""
        events = list(self._recent)
        if not any(_person_of(e) for e in events):
            return events
        try:
            enrolled = {p.id for p in self.people()}
        except FacestreamError:  # the gallery is away: show nobody rather than maybe someone erased
            return [e for e in events if _person_of(e) is None]
        kept = [e for e in events if _person_of(e) is None or _person_of(e) in enrolled]
        if len(kept) < len(events):
            with self._lock:
                self._recent = deque((e for e in self._recent if _person_of(e) is None or _person_of(e) in enrolled),
                                     maxlen=self._recent.maxlen)
        return kept

    def _emit(self, event: dict[str, Any]) -> None:
        event.setdefault("at", round(self.clock(), 3))
        self._recent.append(event)
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception:  # a broken listener must not stop attendance
                log.exception("attendance listener failed")

    # -- sessions ----------------------------------------------------------------------------------
    def start_session(self, name: str, **kwargs: Any) -> Session:
        """Create a session now (see :func:`facestream.stream.attendance.sessions.create_session`) and announce it."""
        kwargs.setdefault("late_after_s", self.config.late_after_minutes * 60)
        session = create_session(self.store, self.people, name, now=self.clock(), **kwargs)
        self.refresh(force=True)
        return session

    def stop_session(self, name: str | None = None) -> Session:
        session = stop_session(self.store, name, now=self.clock())
        self.refresh(force=True)
        return session

    def bind_run(self, cameras: Iterable[str], session: str | None = None) -> None:
        """Set up for a live run reading ``cameras``: check the named session, or open the day's one.

        A named session must exist, must not have ended and must watch one of the cameras. Without
        one, the run records into the day's session (``attendance.default_session``). Either way,
        sessions started elsewhere or by the timetable are recorded too when they watch these cameras.

        Raises:
            FacestreamError: unknown, ended or elsewhere-watching session.
        """
        cameras = list(cameras)
        if session is not None:
            s = self.store.require_session(session)
            if s.state(self.clock()) == "closed":
                raise FacestreamError(f"Session {s.name!r} has already ended.",
                                      "Start a new one with `facestream attendance start NAME ...`.")
            if s.cameras and not set(s.cameras) & set(cameras):
                raise FacestreamError(
                    f"Session {s.name!r} watches {', '.join(s.cameras)}, which this run does not read "
                    f"(sources: {', '.join(cameras)}).", "Give the sources the session's ids, or another session.")
            self.refresh(force=True)
        elif self.config.default_session:
            self.record_day_session()
        else:
            self.refresh(force=True)

    def record_day_session(self) -> None:
        """Keep a session for the day open while this process runs (``facestream run`` without --session)."""
        self._day_session = True
        self.refresh(force=True)

    def _ensure_day_session(self, now: float) -> None:
        name, midnight = day_bounds(now)
        if name in self.sessions or name in self._opened:
            return
        try:
            create_session(self.store, self.people, name, roster=self.config.default_roster, end=midnight,
                           late_after_s=self.config.late_after_minutes * 60, kind="default", now=now)
            log.info("attendance: recording into the day's session %r", name)
        except FacestreamError as exc:
            if self.store.get_session(name) is None:  # raises while the store is down: retried next time
                log.error("attendance: cannot open the day's session: %s", exc)
        self._opened.add(name)  # once per process: a day's session stopped by hand stays stopped

    def _ensure_scheduled(self, now: float) -> None:
        today = datetime.fromtimestamp(now)
        # yesterday too: a night shift that started yesterday evening may still be running
        occurrences = [(entry, day) for entry in self.config.schedule
                       for day in (today, today - timedelta(days=1)) if _DAYS[day.weekday()] in entry.days]
        for entry, day in occurrences:
            start, end = entry.window(day)
            name = f"{entry.name} {day:%Y-%m-%d}"  # named after the day it starts
            if not (start.timestamp() <= now < end.timestamp()) or name in self.sessions or name in self._opened:
                continue
            late = entry.late_after_minutes if entry.late_after_minutes is not None else self.config.late_after_minutes
            try:
                create_session(self.store, self.people, name, cameras=entry.cameras, roster=entry.roster,
                               names=entry.people, start=start.timestamp(), end=end.timestamp(),
                               late_after_s=late * 60, kind="scheduled", now=now)
                log.info("attendance: timetable opened %r", name)
            except FacestreamError as exc:
                if self.store.get_session(name) is None:  # else another worker opened it first
                    log.error("attendance: timetable session %r not opened: %s", name, exc)
            self._opened.add(name)  # tried once per process (a store outage raises above and retries)

    def refresh(self, now: float | None = None, force: bool = False) -> None:
        """Re-read sessions from the store; open timetable/day sessions; announce state changes."""
        now = self.clock() if now is None else now
        with self._lock:
            if not force and now < self._next_refresh:
                return
            self._next_refresh = now + self.config.refresh_seconds
            since = now - 3600.0  # sessions that ended within the hour stay in view (their "closed" is announced)
            try:
                self.sessions = {s.name: s for s in self.store.open_sessions(since)}
                self._ensure_scheduled(now)
                if self._day_session and self.config.default_session:
                    self._ensure_day_session(now)
                self.sessions = {s.name: s for s in self.store.open_sessions(since)}
                for gone in set(self._strangers) - set(self.sessions):
                    del self._strangers[gone]
                if self.config.retention_days and now >= self._next_purge:
                    self._next_purge = now + 3600.0  # hourly: the rule holds within an hour
                    purged = self.store.purge_snapshots(now - self.config.retention_days * 86400.0)
                    if purged:
                        log.info("attendance: deleted the snapshots of %d session(s) older than %g days", purged,
                                 self.config.retention_days)
            except FacestreamError as exc:
                self._store_error(exc, now)
                return
            events = []
            for name, s in self.sessions.items():
                state = s.state(now)
                old = self._states.get(name)
                if old != state:
                    self._states[name] = state
                    if old is not None or state == "active":
                        events.append({"type": "session", "action": state, "session": s.to_json(now)})
            for name in set(self._states) - set(self.sessions):
                del self._states[name]
                events.append({"type": "session", "action": "gone", "session": {"name": name}})
        for e in events:
            self._emit(e)

    def active(self, camera: str | None = None, ts: float | None = None) -> list[Session]:
        """Sessions running at ``ts`` (default now), optionally only those watching ``camera``."""
        ts = self.clock() if ts is None else ts
        return [s for s in self.sessions.values()
                if s.covers(ts) and (camera is None or s.watches(camera))]

    def attendance(self, name: str | None = None) -> Attendance:
        """The full picture of one session (default: the latest)."""
        return self.store.attendance(self.store.require_session(name))

    def current(self) -> list[dict[str, Any]]:
        """``attendance_state`` messages for what a newly connected dashboard should show."""
        now = self.clock()
        self.refresh(now)
        sessions = self.active(ts=now)
        if not sessions:
            latest = self.store.latest_session()
            sessions = [latest] if latest else []
        out = []
        for s in sorted(sessions, key=lambda s: (s.kind == "default", -s.start)):
            out.append(self.store.attendance(s).to_json(now))
        return out

    # -- frames ------------------------------------------------------------------------------------
    def on_result(self, result: FrameResult, frame: np.ndarray | None = None) -> None:
        """Pipeline listener: one :class:`facestream.stream.engine.faces.FrameResult` (and its RGB frame, for
        snapshots)."""
        self.observe(result.source_id, result.timestamp, result.faces, frame)

    def observe(self, camera: str, ts: float, faces: Faces, frame: np.ndarray | None = None) -> None:
        """Apply the presence rule to every face of one frame and record what it confirms."""
        self.refresh()
        self.retry_unsent()
        with self._lock:
            sessions = self.active(camera, ts)
            n = len(faces)
            for i in range(n):
                pid = faces.identity[i] if faces.identity is not None else None
                name = faces.name[i] if faces.name is not None else (pid or "unknown")
                sim = float(faces.similarity[i]) if faces.similarity is not None else float("nan")
                if pid is not None and self.require_live and (
                        faces.liveness_state is None or faces.liveness_state[i] != "live"):
                    continue  # a picture held up, or not judged yet: no frame of it counts toward a mark
                sighting = self.rule.observe(camera, int(faces.track_id[i]), ts, pid, name, sim)
                if sighting is None or not sighting.state.confirmed or not sessions:
                    continue
                box = faces.xyxy[i]
                try:
                    if pid is None:
                        key = (camera, int(faces.track_id[i]))
                        if sighting.newly_confirmed and not sighting.state.ever_named:
                            snap = face_snapshot(frame, box) if self.config.keep_unknown_snapshots else None
                            self._pending_unknown[key] = _Stranger(ts, [s.name for s in sessions], snap)
                        stranger = self._pending_unknown.get(key)
                        look = _row(faces.embedding, i)
                        if stranger is not None and look is not None:
                            stranger.look = look  # the track's latest appearance (a running mean)
                    else:
                        for s in sessions:
                            self._record(s, sighting, pid, camera, ts, frame, box)
                except FacestreamError as exc:
                    self._store_error(exc, ts)
            if ts >= self._next_forget:
                self._next_forget = ts + 1.0
                for state in self.rule.forget(ts):
                    pending = self._pending_unknown.pop((state.camera, state.track_id), None)
                    if pending is not None and not state.ever_named:
                        try:
                            self._unknown(state.camera, pending)
                        except FacestreamError as exc:
                            self._store_error(exc, ts)

    def _record(self, s: Session, sighting: Sighting, person_id: str, camera: str, ts: float,
                frame: np.ndarray | None, box: np.ndarray) -> None:
        st = sighting.state
        key = (s.name, person_id)
        last = self._written.get(key)
        best = st.best_similarity if math.isfinite(st.best_similarity) else 0.0
        improved = last is not None and best > last[1] + 0.01
        if last is not None and ts - last[0] < self.config.flush_seconds and not improved:
            return
        snap = face_snapshot(frame, box) if self.config.keep_snapshots and (last is None or improved) else None
        item = Unsent(s.name, person_id, st.name, person_id in s.roster_ids(), max(st.first_ts, s.start), ts, camera,
                      best, snap)
        if self.outbox.paused():  # the store failed a moment ago: keep it for later rather than wait on it again
            self.outbox.keep(item)
            return
        try:
            self._write(item, s)
        except FacestreamError:
            self.outbox.keep(item)
            self.outbox.failed()
            raise

    def _write(self, item: Unsent, s: Session | None = None) -> None:
        """One sighting into the store; announces the record (new, or better)."""
        s = s or self.sessions.get(item.session) or self.store.get_session(item.session)
        if s is None:  # the session was deleted while the sighting waited
            return
        rec, created = self.store.upsert(item.session, item.person_id, item.name, item.on_roster, item.first_seen,
                                         item.last_seen, item.camera, item.similarity, item.snapshot)
        self._written[(item.session, item.person_id)] = (item.last_seen, max(item.similarity, rec.best_similarity))
        if created:
            log.info("attendance: %s %s in %r (camera %s, similarity %.3f)", rec.name, rec.status(s), s.name,
                     item.camera, item.similarity)
        self._emit({"type": "attendance", "session": s.name, "new": created, "record": rec.to_json(s)})

    def retry_unsent(self) -> int:
        """Write the sightings the store could not take (called for each frame, and when idle); how many."""
        if not len(self.outbox) or self.outbox.paused():
            return 0
        with self._lock:
            try:
                done = self.outbox.drain(self._write)
            except FacestreamError as exc:
                self._store_error(exc, self.clock())
                return 0
        if done:
            log.info("attendance: %d sighting(s) kept while the store was away are written", done)
        return done

    def _unknown(self, camera: str, stranger: _Stranger) -> None:
        """Count one unknown face (a track that left without a name) in the sessions it was seen in.

        A stranger who walks out and comes back starts a new track; when the new
        track looks like a stranger already counted in that session (similarity
        at the match threshold), it is the same person and is not counted again.
        """
        for name in stranger.sessions:
            seen = self._strangers.setdefault(name, _Looks())
            if stranger.look is not None and self.threshold is not None and seen.best(stranger.look) >= self.threshold:
                log.debug("attendance: an unknown face in %r came back; not counted again", name)
                continue
            count = self.store.add_unknown(name, stranger.first_ts, camera, stranger.snapshot)
            if stranger.look is not None:
                seen.add(stranger.look)
            self._emit({"type": "unknown", "session": name, "camera": camera, "time": stranger.first_ts,
                        "count": count})

    def _store_error(self, exc: FacestreamError, now: float) -> None:
        if now - self._last_error > 10:
            self._last_error = now
            log.warning("attendance: %s (retrying)", exc)
