"""Prometheus metrics, read from the statistics every process already keeps (``/stats``, a worker's
heartbeat) at scrape time: nothing is counted twice and the frame path gains no work.

One collector serves ``facestream run``, a gateway (``/metrics`` beside ``/stats``, behind the same
token) and a worker (``--metrics-port``). Every name starts with ``facestream_``; counters end in
``_total``. The README lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["CONTENT_TYPE_LATEST", "StatsCollector", "metrics_text", "registry_for"]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class _Family:
    """One metric family filled from many stats dicts (a label set each)."""

    def __init__(self, kind: type, name: str, doc: str, labels: list[str]):
        self.metric = kind(name, doc, labels=labels)
        self.n = 0

    def add(self, labels: list[str], value: Any) -> None:
        v = _num(value)
        if v is not None:
            self.metric.add_metric(labels, v)
            self.n += 1


# (stats key, metric name, help, counter?) per source, per publisher, per reader ...
_SOURCE = [("fps", "source_fps", "Frames recognised per second (recent).", False),
           ("fps_in", "source_fps_in", "Frames read from the camera per second.", False),
           ("processed", "source_frames_processed", "Frames recognised.", True),
           ("dropped", "source_frames_dropped", "Frames read but skipped (the pipeline was behind).", True),
           ("reconnects", "source_reconnects", "Times the camera was reopened.", True),
           ("faces", "source_faces", "Faces detected.", True),
           ("errors", "source_errors", "Frames that failed.", True),
           ("tracks", "source_tracks", "Tracks alive now.", False)]
_PUBLISHER = [("sent", "publisher_messages_sent", "Messages written to the live stream.", True),
              ("dropped", "publisher_messages_dropped", "Messages lost (Redis away, queue full).", True),
              ("fenced", "publisher_messages_fenced", "Messages refused: their lease epoch was no longer held.", True),
              ("queued", "publisher_queue", "Messages waiting to be written.", False)]
_READER = [("received", "reader_messages_received", "Live-stream messages delivered to clients.", True),
           ("rejected", "reader_entries_rejected", "Stream entries that were not a worker's message.", True),
           ("stale", "reader_messages_stale", "Messages dropped: an older lease epoch than one seen.", True),
           ("gaps", "reader_messages_missed", "Messages workers published that this gateway never got.", True),
           ("redis_failures", "reader_redis_failures", "Failed reads of the live stream.", True),
           ("streams", "reader_streams", "Streams read: the live one and the frames of the sources watched.", False),
           ("hop_ms_p50", "reader_hop_ms_p50", "Worker-to-gateway delay, median (ms).", False),
           ("hop_ms_p99", "reader_hop_ms_p99", "Worker-to-gateway delay, 99th percentile (ms).", False)]
_ATTENDANCE = [("queued", "attendance_queue", "Frames waiting for the attendance thread.", False),
               ("dropped", "attendance_frames_dropped", "Frames attendance skipped (the store too slow).", True),
               ("outbox_waiting", "attendance_outbox", "Sightings kept while the store was away.", False),
               ("outbox_written", "attendance_outbox_written", "Kept sightings written since.", True)]


class StatsCollector(Collector):
    """Metrics from ``stats()``: a run's or a gateway's ``/stats``, or a worker's ``info()``."""

    def __init__(self, stats: Callable[[], dict[str, Any]]):
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        try:
            s = self.stats() or {}
        except Exception:  # a scrape never fails because one statistic did
            s = {}
        fams: dict[str, _Family] = {}

        def fam(name: str, doc: str, labels: list[str], counter: bool = False) -> _Family:
            if name not in fams:
                kind = CounterMetricFamily if counter else GaugeMetricFamily
                fams[name] = _Family(kind, "facestream_" + name, doc, labels)
            return fams[name]

        pipeline: dict[str, Any] = s["pipeline"] if isinstance(s.get("pipeline"), dict) else s  # a worker nests it
        for sid, src in (pipeline.get("sources") or {}).items():
            if not isinstance(src, dict):
                continue
            for key, name, doc, counter in _SOURCE:
                fam(name, doc, ["source"], counter).add([sid], src.get(key))
            latency = src.get("latency_ms") or {}
            for q in ("p50", "p99"):
                fam(f"source_latency_ms_{q}", f"Capture-to-result latency, {q} (ms).", ["source"]).add(
                    [sid], latency.get(q))
            if src.get("worker"):
                fam("source_held", "1 for the worker holding the source.", ["source", "worker"]).add(
                    [sid, src["worker"]], 1)
        for sid, epoch in (s.get("epochs") or {}).items():
            fam("lease_epoch", "The lease epoch this worker holds the source at.", ["source"]).add([sid], epoch)
        fam("lease_fenced_stops", "Sources stopped because the lease was not renewed in time.", [], True).add(
            [], s.get("fenced_stops"))
        fam("redis_ms", "The last heartbeat's round trip to Redis (ms).", []).add([], s.get("redis_ms"))
        fam("load_fps", "Frames per second of the sources this worker holds (assignment by load).", []).add(
            [], s.get("load_fps"))
        fam("budget_fps", "Frames per second this worker may take on (cluster.budget_fps).", []).add(
            [], s.get("budget_fps"))
        publishers = [(s.get("id") or "", s["publisher"])] if isinstance(s.get("publisher"), dict) else []
        publishers += [(w.get("id") or "", w["publisher"]) for w in s.get("workers") or []
                       if isinstance(w, dict) and isinstance(w.get("publisher"), dict)]
        for worker, pub in publishers:
            for key, name, doc, counter in _PUBLISHER:
                fam(name, doc, ["worker"], counter).add([worker], pub.get(key))
        if isinstance(s.get("workers"), list):
            fam("workers", "Workers heard from recently.", []).add([], len(s["workers"]))
        if isinstance(s.get("bus"), dict):
            for key, name, doc, counter in _READER:
                fam(name, doc, [], counter).add([], s["bus"].get(key))
            reading = int(bool(s["bus"].get("reading")))
            fam("reader_up", "1 while the gateway's stream reader runs.", []).add([], reading)
        if isinstance(s.get("attendance"), dict):
            for key, name, doc, counter in _ATTENDANCE:
                fam(name, doc, [], counter).add([], s["attendance"].get(key))
        server = s.get("server") or {}
        fam("clients", "Websocket clients connected.", []).add([], server.get("clients"))
        fam("client_messages_dropped", "Messages dropped for slow clients (their gap), summed.", [], True).add(
            [], server.get("dropped"))
        fam("requests_rejected", "Requests refused (token, limits).", [], True).add([], server.get("rejected"))
        for f in fams.values():
            if f.n:
                yield f.metric


def registry_for(stats: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats))
    return registry


def metrics_text(registry: CollectorRegistry) -> bytes:
    """The exposition format Prometheus scrapes."""
    return generate_latest(registry)
