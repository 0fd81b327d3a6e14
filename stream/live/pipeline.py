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
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facestream.errors import FacestreamError
from facestream.gallery.matcher import Matcher
from facestream.gallery.scope import Scope
from facestream.stream.config import Config, SourceConfig
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.detect import FaceDetector, PortedEngine
from facestream.stream.engine.faces import Faces, FrameResult
from facestream.stream.live.batcher import Batcher
from facestream.stream.live.recognizer import Recognizer, TrackEvent
from facestream.stream.live.scheduler import LiveDetector, Planned
from facestream.stream.live.sources import Frame, Source, Watchdog, open_sources, source_ids
from facestream.stream.live.tracker import Track, Tracker
from facestream.stream.recognition.enroll import EnrollReport
from facestream.stream.recognition.feedback import Feedback, correct, enrol_track, undo

log = logging.getLogger(__name__)

# A track not seen for more frames than this gets no crop: the face left or turned away, and the sweep
# finds it again if it comes back (a crop per lost track would cost a model call per frame for nothing).
CROP_MISSING = 2
# Frames of a source searched at once: while one frame is tracked and published, the next ones are searched
# (their crops cut where the tracks are predicted to be), which keeps both cores of a small machine busy.
SEARCH_DEPTH = 2
STAGES = ("decode", "detect", "track", "landmarks", "embed", "match", "liveness", "total")


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


ResultListener = Callable[[LiveResult, np.ndarray], None]
EventListener = Callable[[TrackEvent], None]


def percentile(values, q: float) -> float | None:
    """The q-th percentile of recent timings in ms, 2 decimals; None when there are none yet."""
    return round(float(np.percentile(list(values), q)), 2) if values else None


class _Worker:
    """One source's thread: its detection schedule, tracker, counters and timings."""

    def __init__(self, pipeline: Pipeline, source: Source, detector: FaceDetector):
        self.pipeline = pipeline
        self.source = source
        self.recognizer = Recognizer(source.id, pipeline.config, pipeline.analyzer, pipeline.matcher,
                                     pipeline.batcher.submit if pipeline.batcher is not None else None,
                                     pipeline.scope_for(source.config))
        self.detection = LiveDetector(detector, pipeline.config.detector)
        self.searcher = ThreadPoolExecutor(SEARCH_DEPTH, thread_name_prefix=f"detect-{source.id}")
        self.thread = threading.Thread(target=self.run, name=f"pipeline-{source.id}", daemon=True)
        self.processed = 0
        self.faces = 0
        self.errors = 0
        self.done = threading.Event()
        self.stopping = threading.Event()  # this source alone (its lease moved, or it was removed)
        self.timings: dict[str, deque[float]] = {s: deque(maxlen=300) for s in STAGES}
        self.latency: deque[float] = deque(maxlen=1000)
        self.stamps: deque[float] = deque(maxlen=64)

    @property
    def tracker(self) -> Tracker:
        return self.recognizer.tracker

    def find_track(self, track_id: int) -> Track | None:
        """A live track, or one that ended recently (the dashboard's event list points at those too)."""
        return self.recognizer.find_track(track_id)

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
                    self.process(current, *job.result())
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
            for event in self.recognizer.end(self.processed, time.time()):
                p._emit_event(event)
            for b in p.batchers:
                b.unregister_producer()
            self.done.set()

    def process(self, frame: Frame, rgb: np.ndarray, faces: Faces, detect_ms: float) -> LiveResult:
        """Recognise one detected frame (the recognizer's step), publish its events and result."""
        p = self.pipeline
        t_start = time.perf_counter() - detect_ms / 1000
        timings = {"decode": frame.decode_ms, "detect": detect_ms}
        wait = (not self.source.live) if p.wait_for_embeddings is None else p.wait_for_embeddings
        step = self.recognizer.step(frame.index, frame.timestamp, rgb, faces, wait=wait, timings=timings)
        for event in step.events:
            p._emit_event(event)
        now = time.perf_counter()
        timings["total"] = (now - t_start) * 1000 + frame.decode_ms
        h, wd = frame.image.shape[:2]
        result = LiveResult(self.source.id, frame.index, frame.timestamp, step.faces, timings, wd, h,
                            tracks=[t.info() for t in step.tracks], embedded=step.embedded, t_read=frame.t_read,
                            image=frame.image)
        self.processed += 1
        self.faces += len(faces)
        for k, v in timings.items():
            self.timings.setdefault(k, deque(maxlen=300)).append(v)  # a stage no source has used yet joins in
        self.latency.append((now - frame.t_read) * 1000)
        self.stamps.append(now)
        p._emit_result(result, rgb)
        return result

    def stats(self) -> dict[str, Any]:
        s = list(self.stamps)
        fps = (len(s) - 1) / (s[-1] - s[0]) if len(s) >= 2 and s[-1] > s[0] else 0.0
        return {
            **self.source.stats(), "processed": self.processed, "fps": round(fps, 2), "faces": self.faces,
            "embedded": self.recognizer.embedded, "errors": self.errors, "tracks": len(self.tracker.tracks),
            "timings_ms_p50": {k: percentile(v, 50) for k, v in self.timings.items()},
            "latency_ms": {"p50": percentile(self.latency, 50), "p99": percentile(self.latency, 99)},
            "liveness": dict(self.recognizer.liveness_verdicts) if self.recognizer.liveness_on else None,
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

    def scope_for(self, source: SourceConfig) -> Scope | None:
        """Who may be named on a source: its own ``people``/``groups``, else the run's ``match`` scope."""
        m = self.config.match
        people, groups = (source.people, source.groups) if source.people or source.groups else (m.people, m.groups)
        if not people and not groups:
            return None
        return Scope(tuple(people), tuple(groups), m.outside_scope)

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
        track = self._embedded_track(source_id, track_id)
        assert self.matcher is not None and track.sample is not None
        sample = track.sample
        source = f"camera:{source_id}#track{track.track_id}@{sample.where}"
        result = correct(self.analyzer, self.matcher.store, verdict, person, sample, source, named=track.person_id)
        if result.verdict == "not":
            track.excluded.add(result.person_id)  # this face is not them, whatever later views look like
        self._reconsider()
        log.info("correction %s on %s track %d: %s", verdict, source_id, track.track_id, result.name)
        return result

    def enrol_track(self, source_id: str, track_id: int, name: str) -> EnrollReport:
        """Enrol a stranger's live (or recently ended) track as the new person ``name`` from its sharpest,
        most different views, through enrolment's checks; the track is decided again from its next frames.

        Raises:
            FacestreamError: unknown source or track, the name taken, or no view passed the checks (the
                report's verdicts say why).
        """
        track = self._embedded_track(source_id, track_id)
        assert self.matcher is not None
        views = [(v.frame, v.quality, v.sample) for v in track.views if v.sample is not None]
        report = enrol_track(self.analyzer, self.matcher.store, name, views,
                             f"camera:{source_id}#track{track.track_id}")
        if not report.people:
            reasons = "; ".join(f"{v.verdict.replace('_', ' ')}: {v.detail}" for v in report.verdicts)
            raise FacestreamError(f"No view of track {track.track_id} passed enrolment's checks ({reasons}).",
                                  "Wait for the person to face the camera up close, then try again.")
        self._reconsider()
        log.info("enrolled %s from %s track %d: %d of %d views", name, source_id, track.track_id,
                 sum(v.enrolled for v in report.verdicts), len(report.verdicts))
        return report

    def _embedded_track(self, source_id: str, track_id: int) -> Track:
        """A live (or recently ended) track of ``source_id`` that has been embedded."""
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
        return track

    def undo_feedback(self, feedback_id: str) -> Feedback:
        """Take a correction back; every live track is decided again from its next frames."""
        if self.matcher is None:
            raise FacestreamError("This run does not recognise faces.", "Run with a gallery to correct names.")
        result = undo(self.matcher.store, self.analyzer.model_id, feedback_id)
        if result.verdict == "not":
            for w in self.workers:
                w.recognizer.forgive(result.person_id)
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
            w.recognizer.reconsider()

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
