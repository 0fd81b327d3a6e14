"""One source's frame step: track, judge quality, request embeddings, match templates, vote; return events.

The live pipeline (one :class:`Recognizer` per camera, embeddings batched across
cameras) and the Gradio webcam (one per browser, embeddings computed at once)
both call :meth:`Recognizer.step`, so a face is named the same way everywhere.
Like supervision's ``update_with_detections``: detections of one frame in, the
same faces with their track, name and quality out, plus what happened
(:class:`TrackEvent`) for the caller to publish. Nothing here emits or blocks on
a listener.

Per frame:

1. associate the boxes with the tracks (:class:`facestream.stream.live.tracker.Tracker`);
   tracks whose person was deleted or corrected forget their name;
2. score every face's quality (:func:`facestream.stream.engine.quality.face_quality`);
3. apply embeddings that are ready: each becomes a view of its track (a face that
   no longer looks like its track splits it), and the track's **template** (its
   distinct views weighted by quality) is matched against the people in scope, with
   the open-set decision read for a template of that many views (a stranger's
   template scores higher than one photo: ``bench/templates.py``);
4. request embeddings for the tracks that need one (new, uncertain, due) and are
   good enough (``tracking.min_quality``); ``wait`` applies them on this frame;
5. liveness (``liveness.mode`` not off): the face mesh of every track that is named
   or about to be and has no ``live`` verdict yet, in one batch, feeds each track's
   evidence (:mod:`facestream.stream.engine.liveness`); a track judged a picture
   raises ``spoof_suspected`` once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facestream.gallery.matcher import Matcher
from facestream.gallery.scope import Scope
from facestream.stream.config import Config
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.face_mesh import PRESENT, FaceMesher, shared_mesher
from facestream.stream.engine.faces import Faces
from facestream.stream.engine.liveness import TrackLiveness
from facestream.stream.engine.quality import face_quality
from facestream.stream.live.tracker import Track, Tracker, Vote
from facestream.stream.recognition.feedback import FaceSample

log = logging.getLogger(__name__)

# Ended tracks kept per source (with their last face) so a correction can still point at them.
RECENT_TRACKS = 200

EmbedRequest = Callable[[np.ndarray], Future]  # chips (n, S, S, 3) uint8 -> future of (n, D) embeddings


@dataclass
class TrackEvent:
    """Something happened to a track: ``track_started``, ``person_appeared``, ``person_left``, ``track_ended``,
    ``spoof_suspected``."""

    event: str
    source_id: str
    frame_index: int
    timestamp: float
    track: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": "event", "event": self.event, "source": self.source_id, "frame": self.frame_index,
                "time": round(self.timestamp, 3), **self.track}


@dataclass
class Step:
    """What one frame step produced: the faces (named), their tracks, which were embedded, the events."""

    faces: Faces
    tracks: list[Track]
    embedded: list[bool]
    events: list[TrackEvent] = field(default_factory=list)


@dataclass
class _Pending:
    """An embedding request in flight for some tracks of one frame (and their faces, kept as samples)."""

    tracks: list[Track]
    future: Future
    frame: int
    timestamp: float
    chips: np.ndarray
    landmarks: np.ndarray
    widths: np.ndarray
    quality: np.ndarray


def appearances(tracks: list[Track]) -> np.ndarray | None:
    """Each track's appearance embedding (NaN rows for tracks not embedded yet); None if none has one.

    Listeners get what each face looks like without another model call: the
    attendance monitor uses it to tell a returning stranger from a new one.
    """
    looks = [t.appearance for t in tracks]
    known = next((a for a in looks if a is not None), None)
    if known is None:
        return None
    blank = np.full_like(known, np.nan)
    return np.stack([blank if a is None else a for a in looks]).astype(np.float32)


def done_future(value: Any) -> Future:
    """A future that already holds ``value`` (an embedder called in the caller's thread)."""
    fut: Future = Future()
    fut.set_result(value)
    return fut


class Recognizer:
    """Tracks, templates and names of one source.

    Args:
        source_id: the source's id (in events).
        config: tracking and matching settings.
        analyzer: landmarks and chips (the embedder itself is behind ``embed``).
        matcher: the gallery index, or None to track only.
        embed: submits chips for embedding and returns a future (a batcher's ``submit``, or
            ``lambda chips: done_future(analyzer.embed_chips(chips))``); None = the analyzer, at once.
        scope: who may be named here (a roster, a group); None = everyone.
        mesher: the face mesh for liveness (default: one shared by every source, loaded on first use).

    Not thread-safe: one thread steps one recognizer, frames in order.
    """

    def __init__(self, source_id: str, config: Config, analyzer: FaceAnalyzer, matcher: Matcher | None,
                 embed: EmbedRequest | None = None, scope: Scope | None = None, mesher: FaceMesher | None = None):
        self.source_id = source_id
        self.config = config
        self.analyzer = analyzer
        self.matcher = matcher
        self.embed: EmbedRequest = embed or (lambda chips: done_future(analyzer.embed_chips(chips)))
        self.scope = scope if scope is not None and not scope.everyone else None
        self.tracker = Tracker(config.tracking)
        split = config.tracking.split_below
        self.split_threshold = float(analyzer.threshold if split is None else split)
        self.pending: deque[_Pending] = deque()
        self.recent: OrderedDict[int, Track] = OrderedDict()  # ended tracks a user may still correct
        self.embedded = 0
        self._scope_ids: tuple[int, frozenset[str] | None] = (-2, None)  # (gallery version, ids)
        self.liveness_on = config.liveness.mode != "off"
        self.liveness_verdicts: Counter[str] = Counter()  # final verdicts of the ended tracks that were judged
        self._mesher = mesher

    # -- the step -----------------------------------------------------------------------------
    def step(self, frame: int, timestamp: float, rgb: np.ndarray, faces: Faces, *, wait: bool = True,
             timings: dict[str, float] | None = None) -> Step:
        """Track, recognise and name one detected frame.

        Args:
            frame, timestamp: the frame's index and capture time (frames arrive in order).
            rgb: the frame (landmarks and chips are cut from it).
            faces: this frame's detections (boxes, scores, keypoints).
            wait: apply this frame's embeddings before returning (files, webcams); False: they land on a later
                frame (live cameras never wait for the model).
            timings: per-stage milliseconds are added here (``track``, ``landmarks``, ``embed``, ``match``).
        """
        timings = {} if timings is None else timings
        events: list[TrackEvent] = []
        t0 = time.perf_counter()
        update = self.tracker.update(faces, frame, timestamp)
        faces.quality = face_quality(rgb, faces)
        for track, q in zip(update.tracks, faces.quality, strict=True):
            track.quality = float(q)
            # a user corrected its name, or the person was deleted: decide again from fresh embeddings
            # (a deleted person must not come back through a track that still carries their id)
            if track.reconsider or (track.person_id is not None and self.matcher is not None
                                    and not self.matcher.knows(track.person_id)):
                self.tracker.forget_identity(track)
        timings["track"] = (time.perf_counter() - t0) * 1000
        events += [self._event("track_started", t, frame, timestamp) for t in update.started]
        tracks = list(update.tracks)
        embedded = [False] * len(faces)
        if self.matcher is not None and (len(faces) or self.pending):
            events += self._collect(frame, timestamp, faces, tracks, embedded, timings, block=False)
            events += self._request(frame, timestamp, rgb, faces, tracks, embedded, timings, wait)
        if self.liveness_on:
            events += self._liveness(frame, timestamp, rgb, faces, tracks, timings)
        for track in update.ended:
            events += self._ended(track, frame, timestamp)
        faces.identity = [t.person_id for t in tracks]
        faces.name = [t.name for t in tracks]
        faces.similarity = np.array([t.similarity for t in tracks], dtype=np.float32)
        faces.far = np.array([t.far for t in tracks], dtype=np.float32)
        faces.embedding = appearances(tracks)
        if self.liveness_on:
            verdicts = [None if t.liveness is None else t.liveness.verdict for t in tracks]
            faces.liveness = np.array([np.nan if v is None or v.score is None else v.score for v in verdicts],
                                      dtype=np.float32)
            faces.liveness_state = ["unknown" if v is None else v.state for v in verdicts]
        return Step(faces, tracks, embedded, events)

    def _liveness(self, frame: int, timestamp: float, rgb: np.ndarray, faces: Faces, tracks: list[Track],
                  timings: dict[str, float]) -> list[TrackEvent]:
        """Face meshes for the tracks that need a verdict (named or about to be, not yet live), in one batch."""
        need = [i for i, t in enumerate(tracks)
                if (t.known or any(v.person_id is not None for v in t.votes))
                and (t.liveness is None or t.liveness.verdict.state != "live")]
        if not need:
            return []
        t0 = time.perf_counter()
        mesher = self._mesher = self._mesher or shared_mesher()
        idx = np.array(need)
        mesh = mesher(rgb, faces.xyxy[idx], None if faces.kps is None else faces.kps[idx])
        events = []
        for k, i in enumerate(need):
            track = tracks[i]
            if mesh.presence[k] < PRESENT:
                continue  # the mesh does not see a face in this crop: no evidence either way
            live = track.liveness = track.liveness or TrackLiveness()
            before = live.verdict.state
            if live.add(mesh.points[k]).state == "spoof" and before != "spoof" and not live.reported:
                live.reported = True
                events.append(self._event("spoof_suspected", track, frame, timestamp))
        timings["liveness"] = (time.perf_counter() - t0) * 1000
        return events

    def end(self, frame: int, timestamp: float) -> list[TrackEvent]:
        """The source stopped: every track ends (their ``person_left``/``track_ended`` events)."""
        for p in self.pending:
            p.future.cancel()
        self.pending.clear()
        return [e for t in self.tracker.end_all() for e in self._ended(t, frame, timestamp)]

    def _request(self, frame: int, timestamp: float, rgb: np.ndarray, faces: Faces, tracks: list[Track],
                 embedded: list[bool], timings: dict[str, float], wait: bool) -> list[TrackEvent]:
        """Landmarks and chips for the tracks that need them, one embedding request; applied now if ``wait``."""
        matcher = self.matcher
        assert matcher is not None
        need = self.tracker.to_embed(tracks, np.minimum(faces.width, faces.height), frame,
                                     self.config.match.min_face, faces.quality)
        if not need or not len(matcher):
            return []
        t0 = time.perf_counter()
        sub = faces[np.array(need)]
        sub.landmarks = self.analyzer.landmarker.predict(rgb, sub.xyxy)
        chips = self.analyzer.chips(rgb, sub)
        quality = face_quality(rgb, sub)  # with dlib's 5 points: the same head-turn measure as enrolment
        t1 = time.perf_counter()
        timings["landmarks"] = (t1 - t0) * 1000
        match_before = timings.get("match", 0.0)
        for i in need:
            tracks[i].pending = True
        self.pending.append(_Pending([tracks[i] for i in need], self.embed(chips), frame, timestamp, chips,
                                     sub.landmarks, np.minimum(sub.width, sub.height), quality))
        events = self._collect(frame, timestamp, faces, tracks, embedded, timings, block=True) if wait else []
        timings["embed"] = (time.perf_counter() - t1) * 1000 - (timings.get("match", 0.0) - match_before)
        return events

    def _collect(self, frame: int, timestamp: float, faces: Faces, tracks: list[Track], embedded: list[bool],
                 timings: dict[str, float], block: bool) -> list[TrackEvent]:
        """Apply the embeddings that are ready (all of them when ``block``): appearance check, template,
        search, vote."""
        matcher = self.matcher
        assert matcher is not None
        events: list[TrackEvent] = []
        while self.pending and (block or self.pending[0].future.done()):
            p = self.pending.popleft()
            try:
                emb = p.future.result()
            finally:
                for t in p.tracks:
                    t.pending = False
            alive = {id(t) for t in self.tracker.tracks}
            here = {id(t): i for i, t in enumerate(tracks)}
            voters: list[Track] = []
            queries: list[np.ndarray] = []
            views: list[int] = []
            for k, (track, e) in enumerate(zip(p.tracks, emb, strict=True)):
                if id(track) not in alive:
                    continue  # ended or split while the model ran
                i = here.get(id(track))
                track, split = self.tracker.check_appearance(track, e, self.split_threshold, p.frame, p.timestamp)
                track.sample = FaceSample(p.chips[k], e, p.landmarks[k], float(p.widths[k]), f"frame{p.frame}")
                if split is not None:  # the box continued but the face is someone else's: a new track
                    events += self._ended(split, frame, timestamp)
                    events.append(self._event("track_started", track, frame, timestamp))
                    if i is not None:
                        tracks[i] = track
                        faces.track_id[i] = track.track_id
                if i is not None:
                    embedded[i] = True
                self.embedded += 1
                track.add_view(e, float(p.quality[k]), p.frame, track.sample)
                template = track.template if self.config.tracking.templates else None
                voters.append(track)
                queries.append(e if template is None else template)
                views.append(1 if template is None else len(track.views))
            if not voters:
                continue
            t0 = time.perf_counter()
            results = matcher.search(np.stack(queries), top_k=1, views=np.array(views), scope=self._scope_now(),
                                     outside=self.scope.outside if self.scope else "unknown")
            timings["match"] = timings.get("match", 0.0) + (time.perf_counter() - t0) * 1000
            for track, res, v in zip(voters, results, views, strict=True):
                events += self._vote(track, Vote.from_match(res, p.frame, v), frame, timestamp)
        return events

    def _scope_now(self) -> frozenset[str] | None:
        """The scope's person ids for the gallery as it is now (resolved again after every change)."""
        if self.scope is None or self.matcher is None:
            return None
        version = self.matcher.version
        if self._scope_ids[0] != version:
            self._scope_ids = (version, self.scope.resolve(self.matcher.store))
        return self._scope_ids[1]

    def _vote(self, track: Track, vote: Vote, frame: int, timestamp: float) -> list[TrackEvent]:
        before = (track.person_id, track.name)
        if not self.tracker.vote(track, vote):
            return []
        events = []
        if before[0] is not None:
            info = {**track.info(), "person_id": before[0], "name": before[1]}
            events.append(TrackEvent("person_left", self.source_id, frame, timestamp, info))
        if track.known:
            events.append(self._event("person_appeared", track, frame, timestamp))
        return events

    def _ended(self, track: Track, frame: int, timestamp: float) -> list[TrackEvent]:
        if track.liveness is not None:
            self.liveness_verdicts[track.liveness.verdict.state] += 1
        if track.sample is not None:
            self.recent[track.track_id] = track
            while len(self.recent) > RECENT_TRACKS:
                self.recent.popitem(last=False)
        events = [self._event("person_left", track, frame, timestamp)] if track.known else []
        return [*events, self._event("track_ended", track, frame, timestamp)]

    def _event(self, kind: str, track: Track, frame: int, timestamp: float) -> TrackEvent:
        return TrackEvent(kind, self.source_id, frame, timestamp, track.info())

    # -- corrections ----------------------------------------------------------------------------
    def find_track(self, track_id: int) -> Track | None:
        """A live track, or one that ended recently (the dashboard's event list points at those too)."""
        for t in list(self.tracker.tracks):
            if t.track_id == track_id:
                return t
        return self.recent.get(track_id)

    def reconsider(self) -> None:
        """The gallery changed under a correction: every live track decides again from its next frames."""
        for t in list(self.tracker.tracks):
            t.reconsider = True

    def forgive(self, person_id: str) -> None:
        """A "not this person" was undone: no track excludes them any more."""
        for t in [*self.tracker.tracks, *self.recent.values()]:
            t.excluded.discard(person_id)
