"""The live pipeline: sources -> detect -> track -> (landmarks -> align -> embed -> match) -> vote -> publish.

One worker thread per source runs the frame step; embedding requests of every
worker meet in one :class:`facestream.stream.live.batcher.Batcher`, so several cameras
share one model call. Detection runs on every frame; landmarks, alignment and
embedding only for tracks that need it (new, uncertain, or every
``tracking.embed_every`` frames), which is what makes a CPU keep up with a
camera.

Everything downstream subscribes with :meth:`Pipeline.add_listener`: the
websocket server, the JSONL and video writers (:mod:`facestream.stream.live.outputs`), the
attendance monitor, tests.
A listener is called in the source's worker thread, so it must be quick (the
server only enqueues; slow consumers buffer on their side).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facestream.errors import FacestreamError
from facestream.gallery.matcher import Matcher
from facestream.gallery.types import MatchResult
from facestream.stream.config import Config, SourceConfig
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.detect import FaceDetector, PortedEngine
from facestream.stream.engine.faces import Faces, FrameResult
from facestream.stream.live.batcher import Batcher
from facestream.stream.live.scheduler import LiveDetector, Planned
from facestream.stream.live.sources import Frame, Source, Watchdog, open_sources, source_ids
from facestream.stream.live.tracker import Track, Tracker, Vote
from facestream.stream.recognition.enroll import Enroller
from facestream.stream.recognition.feedback import FaceSample, Feedback, mark_is, mark_not, undo

log = logging.getLogger(__name__)

# A track not seen for more frames than this gets no crop: the face left or turned away, and the sweep
# finds it again if it comes back (a crop per lost track would cost a model call per frame for nothing).
CROP_MISSING = 2
# Frames of a source searched at once: while one frame is tracked and published, the next ones are searched
# (their crops cut where the tracks are predicted to be), which keeps both cores of a small machine busy.
SEARCH_DEPTH = 2
# Ended tracks kept per source (with their last face) so a correction can still point at them.
RECENT_TRACKS = 200
STAGES = ("decode", "detect", "track", "landmarks", "embed", "match", "total")


@dataclass
class LiveResult(FrameResult):
    """A :class:`FrameResult` plus what the live runtime knows per face.

    Attributes:
        tracks: per face, the track's state (see :meth:`facestream.stream.live.tracker.Track.info`).
        embedded: per face, whether an embedding of it updated its track's identity on this frame.
        t_read: ``perf_counter()`` when the frame was read (latency origin).
        image: the BGR frame (for recording and the dashboard's live view).
    """

    tracks: list[dict[str, Any]] = field(default_factory=list)
    embedded: list[bool] = field(default_factory=list)
    t_read: float = 0.0
    image: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The ``frame`` message: FrameResult's fields plus track age/votes per face."""
        msg = super().to_json()
        for face, info, emb in zip(msg["faces"], self.tracks, self.embedded, strict=True):
            face["age_frames"] = info["age_frames"]
            face["age_s"] = info["age_s"]
            face["votes"] = info["votes"]
            face["embedded"] = emb
        return msg


@dataclass
class TrackEvent:
    """Something happened to a track: ``track_started``, ``person_appeared``, ``person_left``, ``track_ended``."""

    event: str
    source_id: str
    frame_index: int
    timestamp: float
    track: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": "event", "event": self.event, "source": self.source_id, "frame": self.frame_index,
                "time": round(self.timestamp, 3), **self.track}


@dataclass
class _Pending:
    """An embedding request in flight for some tracks of one frame (and their faces, kept as samples)."""

    tracks: list[Track]
    future: Future
    frame: int
    timestamp: float
    chips: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    widths: np.ndarray | None = None


ResultListener = Callable[[LiveResult, np.ndarray], None]
EventListener = Callable[[TrackEvent], None]


def _appearances(tracks: list[Track]) -> np.ndarray | None:
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


def percentile(values, q: float) -> float | None:
    """The q-th percentile of recent timings in ms, 2 decimals; None when there are none yet."""
    return round(float(np.percentile(list(values), q)), 2) if values else None


class _Worker:
    """One source's thread: its detection schedule, tracker, counters and timings."""

    def __init__(self, pipeline: Pipeline, source: Source, detector: FaceDetector):
        self.pipeline = pipeline
        self.source = source
        self.tracker = Tracker(pipeline.config.tracking)
        self.detection = LiveDetector(detector, pipeline.config.detector)
        self.searcher = ThreadPoolExecutor(SEARCH_DEPTH, thread_name_prefix=f"detect-{source.id}")
        self.thread = threading.Thread(target=self.run, name=f"pipeline-{source.id}", daemon=True)
        self.processed = 0
        self.faces = 0
        self.embedded = 0
        self.pending: deque[_Pending] = deque()
        self.errors = 0
        self.done = threading.Event()
        self.stopping = threading.Event()  # this source alone (its lease moved, or it was removed)
        self.timings: dict[str, deque[float]] = {s: deque(maxlen=300) for s in STAGES}
        self.latency: deque[float] = deque(maxlen=1000)
        self.stamps: deque[float] = deque(maxlen=64)
        self.recent: OrderedDict[int, Track] = OrderedDict()  # ended tracks a user may still correct

    def find_track(self, track_id: int) -> Track | None:
        """A live track, or one that ended recently (the dashboard's event list points at those too)."""
        for t in list(self.tracker.tracks):
            if t.track_id == track_id:
                return t
        return self.recent.get(track_id)

    def submit(self, frame: Frame) -> Future:
        """Plan this frame's views from the tracks as they are now, and search them in the background.

        The next frame's search then runs while this thread tracks, recognises and
        publishes the current one; its crops are cut where the tracks are predicted to
        be two frames on. Returns a future of (RGB frame, faces, detection ms).
        """
        expected = [t.predict(frame.index) for t in self.tracker.tracks if t.missing <= CROP_MISSING]
        planned = self.detection.plan(frame.image, expected, self.source.fps_native)
        return self.searcher.submit(self._search, frame, planned)

    def _search(self, frame: Frame, planned: list[Planned]) -> tuple[np.ndarray, Faces, float]:
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
        faces = self.detection.search(rgb, planned)
        return rgb, faces, (time.perf_counter() - t0) * 1000

    def run(self) -> None:
        p = self.pipeline
        inflight: deque[tuple[Frame, Future]] = deque()
        try:
            while not p._stop.is_set() and not self.stopping.is_set():
                # keep SEARCH_DEPTH frames in search; wait for a frame only when none is in flight
                while len(inflight) < SEARCH_DEPTH:
                    frame = self.source.read(timeout=0.0 if inflight else 0.5)
                    if frame is None:
                        break
                    inflight.append((frame, self.submit(frame)))
                if not inflight:
                    if self.source.ended:
                        break
                    continue
                current, job = inflight.popleft()
                try:
                    p._process(self, current, *job.result())
                except FacestreamError:
                    raise
                except Exception:
                    self.errors += 1
                    if self.errors == 1 or self.errors % 100 == 0:
                        log.exception("source %s: frame %d failed (%d errors)", self.source.id, current.index,
                                      self.errors)
                if p.max_frames and self.processed >= p.max_frames:
                    break
        except FacestreamError as exc:
            p.error = exc
            log.error("source %s stopped: %s", self.source.id, exc)
        finally:
            for _, job in inflight:
                job.cancel()
            self.searcher.shutdown(wait=True, cancel_futures=True)
            for t in self.tracker.end_all():
                p._track_ended(self, t, self.processed, time.time())
            for b in p.batchers:
                b.unregister_producer()
            self.done.set()

    def stats(self) -> dict[str, Any]:
        s = list(self.stamps)
        fps = (len(s) - 1) / (s[-1] - s[0]) if len(s) >= 2 and s[-1] > s[0] else 0.0
        return {
            **self.source.stats(), "processed": self.processed, "fps": round(fps, 2), "faces": self.faces,
            "embedded": self.embedded, "errors": self.errors, "tracks": len(self.tracker.tracks),
            "timings_ms_p50": {k: percentile(v, 50) for k, v in self.timings.items()},
            "latency_ms": {"p50": percentile(self.latency, 50), "p99": percentile(self.latency, 99)},
        }


class Pipeline:
    """Recognises faces on live sources and tells listeners; start/stop in-process.

    Args:
        config: the whole configuration (tracking, match, embedder batching, sources).
        sources: the sources to read; defaults to ``config.sources``.
        analyzer: a :class:`facestream.stream.engine.analyzer.FaceAnalyzer` (detector, landmarks, embedder).
        matcher: a :class:`facestream.gallery.matcher.Matcher`, or None to detect and track only.
        max_frames: stop each source after this many processed frames (0 = no limit).
        wait_for_embeddings: True: a frame waits for its embeddings (reproducible names per frame);
            False: never (throughput; identities land a frame or two later); None: files wait, live
            sources do not.

    Example::

        with Pipeline(config, [SourceConfig(url="rtsp://cam/live")], analyzer=a, matcher=m) as p:
            p.add_listener(lambda result, rgb: print(result.to_json()))
            p.wait()
    """

    def __init__(self, config: Config, sources: list[SourceConfig] | None = None, *, analyzer: FaceAnalyzer,
                 matcher: Matcher | None = None, max_frames: int = 0, wait_for_embeddings: bool | None = None,
                 dynamic: bool = False):
        self.config = config
        self.source_configs = list(sources if sources is not None else config.sources)
        self.dynamic = dynamic  # sources come and go (add_source/remove_source): a worker's
        if not self.source_configs and not dynamic:
            raise FacestreamError("No sources to read.", "Give a camera index, file, folder or URL, or set `sources:`.")
        self.source_ids = source_ids(self.source_configs)  # for listeners attached before start()
        self.analyzer = analyzer
        self.matcher = matcher
        self.max_frames = max_frames
        self.wait_for_embeddings = wait_for_embeddings
        split = config.tracking.split_below
        self.split_threshold = float(analyzer.threshold if split is None else split)
        self.batcher: Batcher | None = None  # the embedder's
        self.batchers: list[Batcher] = []  # every batcher the workers feed (detector ranges, embedder)
        self.detector: FaceDetector | None = None
        self.sources: list[Source] = []
        self.workers: list[_Worker] = []
        self.error: FacestreamError | None = None
        self._result_listeners: list[ResultListener] = []
        self._event_listeners: list[EventListener] = []
        self._listener_errors: set[tuple[Callable, str]] = set()  # FacestreamErrors already logged
        self._listener_lock = threading.Lock()
        self._stop = threading.Event()
        self._sources_lock = threading.Lock()
        self._watchdog: Watchdog | None = None
        self._stats_thread: threading.Thread | None = None
        self.started_at = 0.0

    # -- listeners -------------------------------------------------------------
    def add_listener(self, on_result: ResultListener | None = None, on_event: EventListener | None = None) -> None:
        """Subscribe to results and/or events.

        Args:
            on_result: ``fn(result: LiveResult, rgb: np.ndarray)`` for every processed frame.
            on_event: ``fn(event: TrackEvent)`` for track/person events.
        """
        if on_result is not None:
            self._result_listeners.append(on_result)
        if on_event is not None:
            self._event_listeners.append(on_event)

    def _emit_result(self, result: LiveResult, rgb: np.ndarray) -> None:
        for fn in list(self._result_listeners):
            try:
                fn(result, rgb)
            except Exception as exc:  # one broken consumer must not stop recognition
                self._listener_failed(fn, exc)

    def _emit_event(self, event: TrackEvent) -> None:
        for fn in list(self._event_listeners):
            try:
                fn(event)
            except Exception as exc:
                self._listener_failed(fn, exc)

    def _listener_failed(self, fn: Callable, exc: Exception) -> None:
        """Log a listener's failure; a user-fixable one (FacestreamError) once, as its message.

        A listener fails the same way on every frame, and a traceback per frame would bury the fix.
        """
        if not isinstance(exc, FacestreamError):
            log.exception("listener %r failed", fn)
            return
        key = (fn, str(exc))
        with self._listener_lock:
            if key in self._listener_errors:
                return
            self._listener_errors.add(key)
        log.error("listener %r: %s", fn, exc)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Pipeline:
        """Open every source (all or none, with clear errors), then start the worker threads."""
        self.sources = open_sources(self.source_configs) if self.source_configs else []  # before models load
        try:
            self.detector = self._shared_detector()  # load the models before the workers start
            if self.matcher is not None:
                cfg = self.config.embedder
                self.batcher = Batcher(self.analyzer.embed_chips, cfg.max_batch, cfg.batch_wait_ms, name="embed")
                self.batchers.append(self.batcher)
                if len(self.matcher) == 0:
                    log.warning("the gallery is empty: every face will be 'unknown' until people are enrolled")
        except BaseException:
            for s in self.sources:
                s.stop()
            for b in self.batchers:
                b.close()
            raise
        self._stop.clear()
        self.started_at = time.time()
        self.workers = [_Worker(self, s, self.detector) for s in self.sources]
        for b in self.batchers:
            for _ in self.workers:
                b.register_producer()
        self._watchdog = Watchdog(self.sources).start()
        for w in self.workers:
            w.thread.start()
        if self.config.server.stats_every > 0:
            self._stats_thread = threading.Thread(target=self._log_stats, name="pipeline-stats", daemon=True)
            self._stats_thread.start()
        log.info("pipeline running on %d source(s): %s", len(self.sources), ", ".join(s.id for s in self.sources))
        return self

    def _shared_detector(self) -> FaceDetector:
        """The analyzer's detector with each model range behind a batcher: the views of every source share
        one model call per range (MediaPipe's reference graph cannot batch, and runs as it is)."""
        base = self.analyzer.detector
        if not isinstance(base.engine, PortedEngine):
            return base
        cfg = self.config.detector
        batchers = {kind: Batcher(run, cfg.max_batch, cfg.batch_wait_ms, name=f"detect-{kind}")
                    for kind, run in base.engine.runners.items()}
        self.batchers.extend(batchers.values())
        return FaceDetector(cfg, PortedEngine(dict(batchers), base.engine.name))

    def add_source(self, config: SourceConfig) -> str:
        """Open one more source and start its thread (a worker that claimed it); returns its id.

        Raises:
            FacestreamError: the source cannot be opened, or its id is taken.
        """
        sid = config.id or f"cam{len(self.source_ids)}"
        with self._sources_lock:
            if any(w.source.id == sid and not w.done.is_set() for w in self.workers):
                raise FacestreamError(f"Source {sid!r} is already running.", "Give each source a unique id.")
        source = open_sources([config.model_copy(update={"id": sid})])[0]
        assert self.detector is not None, "start() first"
        worker = _Worker(self, source, self.detector)
        with self._sources_lock:  # stop() takes this lock too: a source is either stopped by it or not added
            if self._stop.is_set():
                source.stop()
                raise FacestreamError(f"Source {sid!r} opened after the pipeline stopped.", "Start it again.")
            for b in self.batchers:
                b.register_producer()
            self.workers = [w for w in self.workers if w.source.id != sid] + [worker]
            self.sources = [s for s in self.sources if s.id != sid] + [source]
            if self._watchdog is not None:
                self._watchdog.sources = self.sources
            if sid not in self.source_ids:
                self.source_ids = [*self.source_ids, sid]
            worker.thread.start()
        log.info("source %s added", sid)
        return sid

    def remove_source(self, source_id: str, timeout: float = 5.0) -> None:
        """Stop one source's thread and close it; its open tracks end (listeners see the events)."""
        with self._sources_lock:
            worker = next((w for w in self.workers if w.source.id == source_id), None)
        if worker is None:
            return
        worker.stopping.set()
        worker.source.stop()
        worker.thread.join(timeout=timeout)
        with self._sources_lock:
            self.workers = [w for w in self.workers if w is not worker]
            self.sources = [s for s in self.sources if s is not worker.source]
            if self._watchdog is not None:
                self._watchdog.sources = self.sources
        log.info("source %s removed", source_id)

    def running(self) -> list[str]:
        """Ids of the sources whose threads still run."""
        return [w.source.id for w in self.workers if not w.done.is_set()]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every source is done (files ended, max_frames reached); True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for w in self.workers:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not w.done.wait(remaining):
                return False
        return True

    def stop(self) -> None:
        """Stop the workers and sources (idempotent); pending listeners see the final events."""
        with self._sources_lock:  # no source is added from here on (add_source checks under this lock)
            self._stop.set()
            sources, workers = list(self.sources), list(self.workers)
        for s in sources:
            s.stop()
        for w in workers:
            w.thread.join(timeout=5.0)
        if self._watchdog:
            self._watchdog.stop()
            self._watchdog = None
        for b in self.batchers:
            b.close()
        self.batchers.clear()
        log.info("pipeline stopped: %s", {w.source.id: w.processed for w in self.workers})

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def source(self, source_id: str) -> Source:
        return next(s for s in self.sources if s.id == source_id)

    # -- the frame step ----------------------------------------------------------
    def _process(self, w: _Worker, frame: Frame, rgb: np.ndarray, faces: Faces, detect_ms: float) -> LiveResult:
        """Track, recognise and publish one detected frame (frames of a source arrive in order)."""
        t = time.perf_counter()
        t_start = t - detect_ms / 1000
        timings = {"decode": frame.decode_ms, "detect": detect_ms}
        update = w.tracker.update(faces, frame.index, frame.timestamp)
        for track in update.tracks:
            # a user corrected its name, or the person was deleted: decide again from fresh embeddings
            # (a deleted person must not come back through a track that still carries their id)
            if track.reconsider or (track.person_id is not None and self.matcher is not None
                                    and not self.matcher.knows(track.person_id)):
                w.tracker.forget_identity(track)
        t2 = time.perf_counter()
        timings["track"] = (t2 - t) * 1000
        for track in update.started:
            self._emit_event(TrackEvent("track_started", w.source.id, frame.index, frame.timestamp, track.info()))
        embedded = [False] * len(faces)
        if self.batcher is not None and (len(faces) or w.pending):
            embedded = self._recognize(w, frame, rgb, faces, update.tracks, timings)
        for track in update.ended:
            self._track_ended(w, track, frame.index, frame.timestamp)
        faces.identity = [t.person_id for t in update.tracks]
        faces.name = [t.name for t in update.tracks]
        faces.similarity = np.array([t.similarity for t in update.tracks], dtype=np.float32)
        faces.far = np.array([t.far for t in update.tracks], dtype=np.float32)
        faces.embedding = _appearances(update.tracks)
        now = time.perf_counter()
        timings["total"] = (now - t_start) * 1000 + frame.decode_ms
        h, wd = frame.image.shape[:2]
        result = LiveResult(w.source.id, frame.index, frame.timestamp, faces, timings, wd, h,
                            tracks=[t.info() for t in update.tracks], embedded=embedded, t_read=frame.t_read,
                            image=frame.image)
        w.processed += 1
        w.faces += len(faces)
        for k, v in timings.items():
            w.timings[k].append(v)
        w.latency.append((now - frame.t_read) * 1000)
        w.stamps.append(now)
        self._emit_result(result, rgb)
        return result

    def _recognize(self, w: _Worker, frame: Frame, rgb: np.ndarray, faces: Faces, tracks: list[Track],
                   timings: dict[str, float]) -> list[bool]:
        """Landmarks and chips for the tracks that need them, one batched embedding request, the votes.

        Live sources never wait for the model: the request is queued and its
        answer applied on a later frame (usually the next), so a frame's latency
        is detection plus tracking. Files wait (unless ``wait_for_embeddings``
        says otherwise), so every run over a file names the same faces on the
        same frames.
        """
        matcher, batcher = self.matcher, self.batcher
        assert matcher is not None and batcher is not None  # only called when recognising
        embedded = [False] * len(faces)
        self._collect(w, frame, faces, tracks, embedded, timings, block=False)
        need = w.tracker.to_embed(tracks, np.minimum(faces.width, faces.height), frame.index,
                                  self.config.match.min_face)
        if not need or not len(matcher):
            return embedded
        t0 = time.perf_counter()
        sub = faces[np.array(need)]
        sub.landmarks = self.analyzer.landmarker.predict(rgb, sub.xyxy)
        chips = self.analyzer.chips(rgb, sub)
        t1 = time.perf_counter()
        timings["landmarks"] = (t1 - t0) * 1000
        match_before = timings.get("match", 0.0)
        for i in need:
            tracks[i].pending = True
        w.pending.append(_Pending([tracks[i] for i in need], batcher.submit(chips), frame.index,
                                  frame.timestamp, chips, sub.landmarks, np.minimum(sub.width, sub.height)))
        wait = (not w.source.live) if self.wait_for_embeddings is None else self.wait_for_embeddings
        if wait:
            self._collect(w, frame, faces, tracks, embedded, timings, block=True)
        timings["embed"] = (time.perf_counter() - t1) * 1000 - (timings.get("match", 0.0) - match_before)
        return embedded

    def _collect(self, w: _Worker, frame: Frame, faces: Faces, tracks: list[Track], embedded: list[bool],
                 timings: dict[str, float], block: bool) -> None:
        """Apply the embeddings that are ready (all of them when ``block``): appearance check, search, vote."""
        matcher = self.matcher
        assert matcher is not None  # embeddings are only requested when recognising
        while w.pending and (block or w.pending[0].future.done()):
            p = w.pending.popleft()
            try:
                emb = p.future.result()
            finally:
                for t in p.tracks:
                    t.pending = False
            t0 = time.perf_counter()
            results = matcher.search(emb, top_k=1)
            timings["match"] = timings.get("match", 0.0) + (time.perf_counter() - t0) * 1000
            alive = {id(t) for t in w.tracker.tracks}
            here = {id(t): i for i, t in enumerate(tracks)}
            for k, (track, e, res) in enumerate(zip(p.tracks, emb, results, strict=True)):
                if id(track) not in alive:
                    continue  # ended or split while the model ran
                i = here.get(id(track))
                track, split = w.tracker.check_appearance(track, e, self.split_threshold, p.frame, p.timestamp)
                if p.chips is not None:
                    track.sample = FaceSample(p.chips[k], e, None if p.landmarks is None else p.landmarks[k],
                                              float(p.widths[k]) if p.widths is not None else 0.0,
                                              f"frame{p.frame}")
                if split is not None:  # the box continued but the face is someone else's: a new track
                    self._track_ended(w, split, frame.index, frame.timestamp)
                    self._emit_event(TrackEvent("track_started", w.source.id, frame.index, frame.timestamp,
                                                track.info()))
                    if i is not None:
                        tracks[i] = track
                        faces.track_id[i] = track.track_id
                if i is not None:
                    embedded[i] = True
                w.embedded += 1
                self._vote(w, track, res, p.frame, frame)

    def _vote(self, w: _Worker, track: Track, res: MatchResult, embed_frame: int, frame: Frame) -> None:
        before = (track.person_id, track.name)
        if w.tracker.vote(track, Vote.from_match(res, embed_frame)):
            if before[0] is not None:
                info = {**track.info(), "person_id": before[0], "name": before[1]}
                self._emit_event(TrackEvent("person_left", w.source.id, frame.index, frame.timestamp, info))
            if track.known:
                self._emit_event(TrackEvent("person_appeared", w.source.id, frame.index, frame.timestamp,
                                            track.info()))

    def _track_ended(self, w: _Worker, track: Track, frame_index: int, timestamp: float) -> None:
        if track.sample is not None:
            w.recent[track.track_id] = track
            while len(w.recent) > RECENT_TRACKS:
                w.recent.popitem(last=False)
        info = track.info()
        if track.known:
            self._emit_event(TrackEvent("person_left", w.source.id, frame_index, timestamp, info))
        self._emit_event(TrackEvent("track_ended", w.source.id, frame_index, timestamp, info))

    # -- corrections -------------------------------------------------------------------
    def feedback(self, source_id: str, track_id: int, verdict: str, person: str | None = None) -> Feedback:
        """A user's correction of a live (or recently ended) face: ``not`` (it is not the person it is named
        as, or ``person``) or ``is`` (it is ``person``). The gallery changes for every worker (a negative, or
        a new photo of the person); this face's track forgets its votes and is decided again from its next
        frames, and after ``not`` it is never named that person again (until undone).

        Raises:
            FacestreamError: unknown source or track, a face not embedded yet, no person to mark, or the
                face failed enrolment's checks (``is``).
        """
        if self.matcher is None:
            raise FacestreamError("This run does not recognise faces.", "Run with a gallery to correct names.")
        worker = next((w for w in self.workers if w.source.id == source_id), None)
        if worker is None:
            raise FacestreamError(f"No source {source_id!r} in this run.",
                                  f"Use one of: {', '.join(w.source.id for w in self.workers)}.")
        track = worker.find_track(int(track_id))
        if track is None or track.sample is None:
            raise FacestreamError(f"Track {track_id} of {source_id} is not known here (or was never embedded).",
                                  "Correct a face while it is on screen or shortly after it left.")
        sample = track.sample
        source = f"camera:{source_id}#track{track.track_id}@{sample.where}"
        if verdict == "not":
            who = person or track.person_id
            if not who:
                raise FacestreamError("The face is not named; there is nobody to say it is not.",
                                      "Pass the person it must not be named as.")
            result = mark_not(self.matcher.store, who, sample, self.analyzer.model_id, source)
            track.excluded.add(result.person_id)  # this face is not them, whatever later views look like
        elif verdict == "is":
            if not person:
                raise FacestreamError("Whom is the face? No person given.", "Pass the person's name.")
            enroller = Enroller(self.analyzer, self.matcher.store, progress=False)
            result = mark_is(enroller, person, sample, source)
        else:
            raise FacestreamError(f"Unknown verdict {verdict!r}.", "Use 'not' or 'is'.")
        self._reconsider()
        log.info("correction %s on %s track %d: %s", verdict, source_id, track.track_id, result.name)
        return result

    def undo_feedback(self, feedback_id: str) -> Feedback:
        """Take a correction back; every live track is decided again from its next frames."""
        if self.matcher is None:
            raise FacestreamError("This run does not recognise faces.", "Run with a gallery to correct names.")
        result = undo(self.matcher.store, self.analyzer.model_id, feedback_id)
        if result.verdict == "not":
            for w in self.workers:
                for t in [*w.tracker.tracks, *w.recent.values()]:
                    t.excluded.discard(result.person_id)
        self._reconsider()
        return result

    def _reconsider(self) -> None:
        """The gallery changed: reload now (not at the next event) and let every live track decide again."""
        if self.matcher is not None:
            try:
                self.matcher.refresh(force=True)
            except FacestreamError as exc:
                log.warning("matcher reload after a correction failed (%s)", exc)
        for w in self.workers:
            for t in list(w.tracker.tracks):
                t.reconsider = True

    # -- statistics ------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per-source fps, drops, reconnects, per-stage timings (p50) and latency; the batcher's counters."""
        return {
            "uptime_s": round(time.time() - self.started_at, 1) if self.started_at else 0.0,
            "sources": {w.source.id: w.stats() for w in self.workers},
            "batcher": self.batcher.stats() if self.batcher else None,
            "gallery": {"people": len(self.matcher)} if self.matcher is not None else None,
        }

    def _log_stats(self) -> None:
        every = self.config.server.stats_every
        while not self._stop.wait(every):
            for sid, s in self.stats()["sources"].items():
                t = s["timings_ms_p50"]
                log.info("%s: %s %.1f fps, %d processed, %d dropped, %d reconnects, latency p50 %s ms; "
                         "p50 ms decode %s detect %s landmarks %s embed %s match %s total %s",
                         sid, s["state"], s["fps"], s["processed"], s["dropped"], s["reconnects"],
                         s["latency_ms"]["p50"], t["decode"], t["detect"], t["landmarks"], t["embed"], t["match"],
                         t["total"])
