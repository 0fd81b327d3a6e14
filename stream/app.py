"""The composition root: every entry point builds its parts here, and they are torn down in one order.

``facestream run``, ``worker``, ``gateway`` and ``demo`` each need some of: the face analyzer, the
matcher and its gallery, a pipeline, attendance (the monitor and the feed that records off the
camera threads), outputs, the server with the HTTP API, the cluster registry, a worker, a reader.
:class:`App` builds each part from one :class:`~facestream.stream.config.Config`, shares what can be
shared (one analyzer, one gallery connection) and remembers how to stop it. :meth:`App.close` stops
everything by phase, whatever order the parts were built in:

1. inputs (pipelines, workers, stream readers): nothing new is produced;
2. outputs (the attendance feed, recorders, JSON lines): what was produced is written;
3. serving (servers, the demo, metrics): the last messages go out, then the ports close;
4. stores (matchers, galleries, attendance stores, registries): nobody uses them any more.

Within a phase, the part built last stops first. A part that fails to stop is logged and the rest still stop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TypeVar

from facestream.stream.config import Config, SourceConfig

if TYPE_CHECKING:
    from facestream.gallery.store import GalleryStore
    from facestream.stream.attendance.feed import AttendanceFeed
    from facestream.stream.attendance.monitor import AttendanceMonitor
    from facestream.stream.cluster.gateway import Gateway
    from facestream.stream.cluster.registry import SourceRegistry
    from facestream.stream.cluster.worker import Worker
    from facestream.stream.demo.service import DemoService
    from facestream.stream.engine.analyzer import FaceAnalyzer
    from facestream.stream.live.pipeline import Pipeline
    from facestream.stream.recognition.identify import Matcher
    from facestream.stream.serve.recognition_api import Recognition
    from facestream.stream.serve.server import StreamServer

log = logging.getLogger(__name__)

T = TypeVar("T")


def erase_everywhere(gallery: GalleryStore, person_id: str) -> dict[str, Any]:
    """The API's erasure: attendance first, then the gallery (the one function every path uses)."""
    from facestream.stream.attendance.erase import erase_person

    return erase_person(gallery, person_id).to_json()


class Phase(IntEnum):
    """When a part stops in :meth:`App.close` (lowest first)."""

    INPUT = 0
    OUTPUT = 1
    SERVING = 2
    STORES = 3


class App:
    """The parts of one process, built from ``config`` on demand and stopped together.

    Use as a context manager, or call :meth:`close` (idempotent). ``analyzer``: a ready analyzer to
    share instead of building one (tests pass theirs).
    """

    def __init__(self, config: Config, analyzer: FaceAnalyzer | None = None):
        self.config = config
        self._analyzer = analyzer
        self._matcher: Matcher | None = None
        self._registry: SourceRegistry | None = None
        self._parts: list[tuple[Phase, int, str, Callable[[], Any]]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def own(self, part: T, stop: Callable[[], Any], phase: Phase, name: str | None = None) -> T:
        """Stop ``part`` with ``stop`` in ``phase`` when the app closes; returns ``part``."""
        with self._lock:
            self._parts.append((phase, len(self._parts), name or type(part).__name__, stop))
        return part

    def close(self) -> None:
        """Stop every part by phase (inputs, outputs, serving, stores), the newest first within a phase."""
        with self._lock:
            parts, self._parts = self._parts, []
        for _, _, name, stop in sorted(parts, key=lambda p: (p[0], -p[1])):
            try:
                stop()
            except Exception:  # one part failing to stop must not leave the others running
                log.exception("stopping %s failed; stopping the rest", name)

    # -- models and gallery ------------------------------------------------------------------------
    @property
    def analyzer(self) -> FaceAnalyzer:
        """The face analyzer (detector, landmarks, embedder), built once."""
        if self._analyzer is None:
            from facestream.stream.engine.analyzer import FaceAnalyzer

            self._analyzer = FaceAnalyzer(self.config)
        return self._analyzer

    @property
    def matcher(self) -> Matcher:
        """The matcher over ``gallery.url`` for the analyzer's model, built once (it follows the gallery)."""
        if self._matcher is None:
            from facestream.stream.recognition.identify import open_matcher

            matcher = open_matcher(self.analyzer)
            self.own(matcher.store, matcher.store.close, Phase.STORES, "gallery")
            self._matcher = self.own(matcher, matcher.close, Phase.STORES, "matcher")
        return self._matcher

    def recognition(self, share_models: bool = True) -> Recognition:
        """What the HTTP API recognises with. ``share_models``: this process's analyzer and gallery now;
        False: opened on the API's first request (a gateway, which processes no video)."""
        from facestream.stream.serve.recognition_api import Recognition

        if share_models:
            recognition = Recognition(self.config, self.analyzer, self.matcher.store)
        else:
            recognition = Recognition(self.config)
        return self.own(recognition, recognition.close, Phase.STORES)

    # -- the live runtime --------------------------------------------------------------------------
    def _new_pipeline(self, sources: list[SourceConfig], max_frames: int = 0, dynamic: bool = False) -> Pipeline:
        from facestream.stream.live.pipeline import Pipeline

        return Pipeline(self.config, sources, analyzer=self.analyzer, matcher=self.matcher, max_frames=max_frames,
                        dynamic=dynamic)

    def pipeline(self, sources: list[SourceConfig], max_frames: int = 0) -> Pipeline:
        """The pipeline over ``sources`` (not started), sharing the app's analyzer and matcher."""
        pipeline = self._new_pipeline(sources, max_frames)
        return self.own(pipeline, pipeline.stop, Phase.INPUT)

    def output(self, out: T) -> T:
        """A result listener with ``close()`` (recorder, JSON lines), closed after the pipeline stops."""
        return self.own(out, out.close, Phase.OUTPUT)  # type: ignore[attr-defined]

    def attendance(self, cameras: list[str], session: str | None = None, record: bool = True) -> AttendanceMonitor:
        """The attendance monitor over ``gallery.url`` (names and attendance come from one store).

        Args:
            cameras: the run's source ids (a worker: none yet; it binds those it claims).
            session: record into this existing session; None: the day's session (``attendance.default_session``).
            record: False for a view that answers the dashboard and its commands but records nothing (a gateway).

        Raises:
            FacestreamError: unknown or ended session, unreachable store.
        """
        from facestream.stream.attendance import open_attendance_store
        from facestream.stream.attendance.monitor import AttendanceMonitor
        from facestream.stream.attendance.roster import gallery_people

        store = open_attendance_store(self.config.gallery.url)
        self.own(store, store.close, Phase.STORES, "attendance store")
        people = gallery_people(self.config.gallery.url)
        if not record:
            return AttendanceMonitor(store, self.config.attendance, people=people)
        monitor = AttendanceMonitor(store, self.config.attendance, people=people, threshold=self.analyzer.threshold,
                                    require_live=self.config.liveness.mode == "require")
        monitor.bind_run(cameras, session)
        return monitor

    def attendance_feed(self, monitor: AttendanceMonitor, start: bool = True) -> AttendanceFeed:
        """The feed that records ``monitor``'s attendance on its own thread (a slow store never holds a
        camera up), drained after the inputs stop."""
        from facestream.stream.attendance.feed import AttendanceFeed

        feed = AttendanceFeed(monitor)
        if start:
            feed.start()
        return self.own(feed, feed.stop, Phase.OUTPUT)

    def server(self, stats: Callable[[], dict] | None = None, monitor: AttendanceMonitor | None = None,
               recognition: Recognition | None = None) -> StreamServer:
        """The websocket/HTTP server (not started): the dashboard, ``/stats``, the HTTP API over
        ``recognition`` and, with a ``monitor``, attendance plugged in (its routes, commands and events)."""
        from facestream.stream.serve.recognition_api import build_api
        from facestream.stream.serve.server import StreamServer

        api = build_api(self.config, recognition, erase=erase_everywhere) if recognition is not None else None
        extensions = []
        if monitor is not None:
            from facestream.stream.attendance.web import AttendanceExtension

            extensions.append(AttendanceExtension(monitor))
        server = StreamServer(self.config.server, stats=stats, api=api, extensions=extensions)
        return self.own(server, server.stop, Phase.SERVING)

    # -- the cluster -------------------------------------------------------------------------------
    @property
    def registry(self) -> SourceRegistry:
        """The shared source list and leases on ``gallery.url`` (Redis), opened once."""
        if self._registry is None:
            from facestream.stream.cluster.registry import SourceRegistry

            registry = SourceRegistry(self.config.gallery.url)
            self._registry = self.own(registry, registry.close, Phase.STORES, "registry")
        return self._registry

    def worker(self, attendance: bool = True) -> Worker:
        """A worker (not started) claiming shared sources; it owns its pipeline, publisher and attendance
        feed and stops them in its own order (pipeline, feed, publisher, then the leases)."""
        from facestream.stream.attendance.feed import AttendanceFeed
        from facestream.stream.cluster.bus import LivePublisher
        from facestream.stream.cluster.worker import Worker

        registry = self.registry
        pipeline = self._new_pipeline([], dynamic=True)
        feed = AttendanceFeed(self.attendance([])) if attendance else None
        publisher = LivePublisher(registry.client, self.config.server, self.config.cluster.stream_maxlen,
                                  events_maxlen=self.config.cluster.events_maxlen)
        worker = Worker(self.config, pipeline, registry, publisher, feed)
        return self.own(worker, worker.stop, Phase.INPUT)

    def metrics(self, stats: Callable[[], dict], port: int, host: str = "127.0.0.1") -> int:
        """Prometheus metrics of ``stats`` on ``host:port`` (``/metrics``); returns the port bound."""
        from prometheus_client import start_http_server

        from facestream.stream.serve.metrics import registry_for

        httpd, _ = start_http_server(port, host, registry=registry_for(stats))

        def stop() -> None:
            httpd.shutdown()
            httpd.server_close()

        self.own(httpd, stop, Phase.SERVING, "metrics")
        return int(httpd.server_port)

    def gateway(self) -> Gateway:
        """A gateway (not started): the server with the dashboard, the API and an attendance view, fed from
        the workers' streams by a reader."""
        from facestream.stream.cluster.bus import LiveReader
        from facestream.stream.cluster.gateway import Gateway

        registry = self.registry
        monitor = self.attendance([], record=False)  # the workers record; this answers the dashboard
        built: list[Gateway] = []  # the server's /stats asks the gateway, which needs the server first
        server = self.server(stats=lambda: built[0].stats(), monitor=monitor,
                             recognition=self.recognition(share_models=False))
        reader = LiveReader(registry.client, server)
        self.own(reader, reader.stop, Phase.INPUT)
        built.append(Gateway(self.config, registry, server, reader))
        return built[0]

    # -- the demo ----------------------------------------------------------------------------------
    def demo_service(self) -> DemoService:
        """What the Gradio demo recognises and enrols with (models and gallery open on first use)."""
        from facestream.stream.demo.service import DemoService

        service = DemoService(self.config, analyzer=self._analyzer)
        return self.own(service, service.close, Phase.STORES)
